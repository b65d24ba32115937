"""The image's build steps, run for real in a clean copy of the build context.

Like `docker build`: only what .dockerignore lets through is copied, scripts/setup.sh
runs (the installed environment is shared, so it finds everything in place, as a
cached image layer would), then `python -m carmenta build` compiles the interface from
scratch. The runtime stage's files alone must then hold a current build, so the
container serves without Node.js or bun.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
import subprocess
import sys
from pathlib import Path

from carmenta.settings import PROJECT_ROOT
from tests.unit.test_dockerfile import copied_paths, parse_dockerfile

BUILD_TIMEOUT_SECONDS = 900
PUBLIC_URL = "https://carmenta.example.com"


def _ignored(relative: str, patterns: list[str]) -> bool:
    parts = relative.split("/")
    for pattern in patterns:
        bare = pattern.removeprefix("**/")
        for depth in range(1, len(parts) + 1):
            if fnmatch.fnmatch("/".join(parts[:depth]), pattern) or fnmatch.fnmatch(
                parts[depth - 1], bare
            ):
                return True
    return False


def _build_context(target: Path) -> None:
    """The files `COPY . .` would see: tracked and new files minus .dockerignore."""
    patterns = [
        line.strip()
        for line in (PROJECT_ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    for relative in listed:
        source = PROJECT_ROOT / relative
        if _ignored(relative, patterns) or not source.is_file():
            continue
        destination = target / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, destination)


def _shared_installs(target: Path) -> None:
    for name in (".venv", ".tools"):
        (target / name).symlink_to((PROJECT_ROOT / name).resolve())


def test_the_image_build_steps_produce_an_interface_the_runtime_stage_can_serve(tmp_path):
    context = tmp_path / "build"
    _build_context(context)
    assert not (context / ".web").exists() and not (context / ".env").exists()
    _shared_installs(context)
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DATA_DIR")},
        "PUBLIC_URL": PUBLIC_URL,
        "CARMENTA_ENV": "development",
        "DATA_DIR": str(tmp_path / "data"),
        "PYTHON": sys.executable,
    }

    setup = subprocess.run(
        ["scripts/setup.sh"], cwd=context, env=env, capture_output=True, text=True, timeout=300
    )
    assert setup.returncode == 0, setup.stdout + setup.stderr

    build = subprocess.run(
        [".venv/bin/python", "-m", "carmenta", "build"],
        cwd=context,
        env=env,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_SECONDS,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    assert "The interface was built." in build.stdout
    assert (context / ".web" / "build" / "client" / "index.html").is_file()

    # The runtime stage: exactly the paths it copies, without the build's node_modules.
    runtime = tmp_path / "runtime"
    [_, runtime_stage] = parse_dockerfile((PROJECT_ROOT / "Dockerfile").read_text())
    for path in copied_paths(runtime_stage):
        relative = path.removeprefix("/app/")
        source = context / relative
        if relative == ".venv":
            continue  # the shared environment stands in for the copied one
        if source.is_dir():
            shutil.copytree(
                source, runtime / relative, ignore=shutil.ignore_patterns("node_modules")
            )
        else:
            shutil.copy2(source, runtime / relative)
    (runtime / ".venv").symlink_to((PROJECT_ROOT / ".venv").resolve())
    check = subprocess.run(
        [
            ".venv/bin/python",
            "-c",
            "from carmenta import frontend_build as b;"
            f"print(b.is_current(api_url={PUBLIC_URL!r}), b.PROJECT_ROOT)",
        ],
        cwd=runtime,
        env={**env, "PATH": "/usr/bin:/bin"},  # no bun, no node: nothing could rebuild
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert check.returncode == 0, check.stderr
    assert check.stdout.split() == ["True", str(runtime)]
