"""Clerk mode compiles: its pages are drawn by Clerk's own React components.

Clerk's script is served from Clerk's servers, so Clerk mode cannot be driven in a
browser here; its server side is tested in tests/integration/test_clerk_sessions.py.
This builds the interface with Clerk keys set, in a copy of the project, and checks
what the compiled pages render.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from carmenta.settings import PROJECT_ROOT


def _copy_project(destination) -> None:
    # Tracked files and new ones not yet committed; never ignored ones (.venv, .data).
    tracked = (
        subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .split("\0")
    )
    for relative in filter(None, tracked):
        source = PROJECT_ROOT / relative
        if source.is_file():
            target = destination / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    (destination / ".tools").mkdir(exist_ok=True)
    (destination / ".tools" / "js").symlink_to(PROJECT_ROOT / ".tools" / "js")


def test_the_interface_builds_with_clerk_components_in_clerk_mode(tmp_path):
    project = tmp_path / "clerk-mode"
    _copy_project(project)
    env = {
        **os.environ,
        "CLERK_PUBLISHABLE_KEY": "pk_test_Y2xlcmsuY2FybWVudGEudGVzdCQ",
        "CLERK_SECRET_KEY": "sk_test_offline",
        "DATA_DIR": str(tmp_path / "data"),
        "PORT": "3000",
    }
    env.pop("PUBLIC_URL", None)
    result = subprocess.run(
        [sys.executable, "-m", "carmenta", "build"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    routes = project / ".web" / "app" / "routes"
    sign_in = (routes / "[sign-in]._index.jsx").read_text()
    home = (routes / "_index.jsx").read_text()
    # Shared pieces are compiled once into app_components and imported by the pages.
    shared = "\n".join(
        path.read_text() for path in (project / ".web" / "app_components").rglob("*.jsx")
    )
    assert "@clerk/clerk-react" in sign_in and "SignIn" in sign_in
    assert "ClerkProvider" in home and "UserButton" in home
    assert 'from "$/public/clerk_session_sync.jsx' in shared
    assert "set_clerk_token" in shared
    # Built-in account forms are not part of a Clerk build.
    assert "Create account" not in (routes / "[sign-up]._index.jsx").read_text()
    assert (project / ".web" / "build" / "client" / "index.html").exists()
