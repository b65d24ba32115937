"""Building the compiled frontend only when something it depends on changed.

A production build takes a while; `make run` must be serving again within seconds
when nothing changed, so the build is keyed by a fingerprint of its inputs.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys

from carmenta.errors import StartupError
from carmenta.settings import PROJECT_ROOT

WEB_DIR = PROJECT_ROOT / ".web"
BUILD_INDEX = WEB_DIR / "build" / "client" / "index.html"
FINGERPRINT_FILE = WEB_DIR / "carmenta-build.fingerprint"
JS_TOOLS_BIN = PROJECT_ROOT / ".tools" / "js" / "node_modules" / ".bin"

_INPUT_GLOBS = ("carmenta/**/*.py", "assets/**/*", "rxconfig.py", "requirements.txt")


def fingerprint(*, api_url: str) -> str:
    import reflex

    digest = hashlib.sha256()
    digest.update(f"reflex={reflex.__version__ if hasattr(reflex, '__version__') else ''}".encode())
    digest.update(f"api_url={api_url}".encode())
    for pattern in _INPUT_GLOBS:
        for path in sorted(PROJECT_ROOT.glob(pattern)):
            if path.is_file() and "__pycache__" not in path.parts:
                digest.update(str(path.relative_to(PROJECT_ROOT)).encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()


def is_current(*, api_url: str) -> bool:
    if not BUILD_INDEX.exists() or not FINGERPRINT_FILE.exists():
        return False
    return FINGERPRINT_FILE.read_text().strip() == fingerprint(api_url=api_url)


def build_environment() -> dict[str, str]:
    """The environment Reflex's build needs: bun from the npm registry, no other download."""
    env = dict(os.environ)
    if JS_TOOLS_BIN.is_dir():
        env["PATH"] = f"{JS_TOOLS_BIN}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("REFLEX_USE_SYSTEM_BUN", "1")
    env.setdefault("REFLEX_TELEMETRY_ENABLED", "false")
    if "NPM_CONFIG_REGISTRY" not in env and shutil.which("npm", path=env["PATH"]):
        # Use the registry npm itself is configured with, instead of probing mirrors.
        try:
            registry = subprocess.run(
                [shutil.which("npm", path=env["PATH"]) or "npm", "config", "get", "registry"],
                capture_output=True,
                text=True,
                timeout=20,
                env=env,
                check=True,
            ).stdout.strip()
            if registry.startswith("http"):
                env["NPM_CONFIG_REGISTRY"] = registry
        except (subprocess.SubprocessError, OSError):
            pass
    return env


def ensure_built(*, api_url: str, force: bool = False, quiet: bool = False) -> bool:
    """Build the frontend if needed. Returns True when a build ran."""
    if not force and is_current(api_url=api_url):
        return False
    env = build_environment()
    if shutil.which("bun", path=env["PATH"]) is None:
        raise StartupError(
            "The JavaScript runtime used to build the interface (bun) is missing. "
            "Run `make run`, which installs it from the npm registry."
        )
    if not quiet:
        print("Building the interface (only when the code changed)…", flush=True)
    env["REFLEX_API_URL"] = api_url
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "reflex",
            "export",
            "--frontend-only",
            "--no-zip",
            "--env",
            "prod",
            "--loglevel",
            "warning",
        ],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0 or not BUILD_INDEX.exists():
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-25:])
        raise StartupError(f"Building the interface failed:\n{tail}")
    FINGERPRINT_FILE.write_text(fingerprint(api_url=api_url))
    return True
