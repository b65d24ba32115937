"""Bad set-up stops with one clear message, never a bare stack trace."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from carmenta.settings import PROJECT_ROOT


def run_carmenta(*args: str, env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess:
    full_env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DATABASE_URL", "CARMENTA_ENV", "PORT")
    }
    full_env.update({"DATA_DIR": str(tmp_path / "data"), **env})
    return subprocess.run(
        [sys.executable, "-m", "carmenta", *args],
        cwd=PROJECT_ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def assert_clear_failure(result: subprocess.CompletedProcess, *expected: str) -> None:
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Traceback" not in output
    for text in expected:
        assert text in output, output


def test_malformed_database_url(tmp_path):
    result = run_carmenta(
        "run", env={"DATABASE_URL": "mysql://root@localhost/carmenta"}, tmp_path=tmp_path
    )
    assert_clear_failure(result, "DATABASE_URL", "must be a PostgreSQL URL")


def test_unreachable_database_names_the_server_but_not_the_password(tmp_path):
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    result = run_carmenta(
        "run",
        env={
            "DATABASE_URL": f"postgresql://carmenta:s3cret-pw@127.0.0.1:{port}/carmenta",
            "PORT": "3999",
        },
        tmp_path=tmp_path,
    )
    assert_clear_failure(result, "Cannot connect to the database", f"127.0.0.1:{port}")
    assert "s3cret-pw" not in result.stdout + result.stderr


def test_unreachable_redis_names_the_server_but_not_the_password(tmp_path):
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    result = run_carmenta(
        "run",
        env={"REDIS_URL": f"redis://:r3dis-pw@127.0.0.1:{port}/0", "PORT": "3998"},
        tmp_path=tmp_path,
    )
    assert_clear_failure(result, "Cannot reach Redis", f"redis://127.0.0.1:{port}/0", "REDIS_URL")
    assert "r3dis-pw" not in result.stdout + result.stderr
    # Nothing was started before the check: no embedded database was created.
    assert not (tmp_path / "data" / "postgres").exists()


def test_several_web_workers_without_redis_are_refused(tmp_path):
    result = run_carmenta("check", env={"WEB_WORKERS": "3"}, tmp_path=tmp_path)
    assert_clear_failure(result, "WEB_WORKERS above 1 needs REDIS_URL")


def test_port_already_in_use(tmp_path, database_url):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_carmenta(
            "run", env={"DATABASE_URL": database_url, "PORT": str(port)}, tmp_path=tmp_path
        )
    assert_clear_failure(result, f"Port {port} is already in use", "PORT=")


def test_production_refuses_development_defaults(tmp_path):
    result = run_carmenta("check", env={"CARMENTA_ENV": "production"}, tmp_path=tmp_path)
    assert_clear_failure(
        result,
        "DATABASE_URL is not set",
        "ENCRYPTION_KEYS",
        "CLERK_PUBLISHABLE_KEY",
        "SESSION_SIGNING_KEY",
    )


def test_production_run_also_refuses_before_starting_anything(tmp_path):
    result = run_carmenta("run", env={"CARMENTA_ENV": "production"}, tmp_path=tmp_path)
    assert_clear_failure(result, "not safe to serve")
    assert not (tmp_path / "data" / "postgres").exists()


def _setup_env(tmp_path: Path, *, python: str | None = None, hide_node: bool = False) -> dict:
    env = dict(os.environ)
    if python:
        env["PYTHON"] = python
    if hide_node:
        # A PATH with the shell tools setup.sh needs, and no node.
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        env["PYTHON"] = sys.executable
        for tool in ("bash", "cat", "dirname", "id", "env", "sh"):
            found = subprocess.run(
                ["bash", "-c", f"command -v {tool}"], capture_output=True, text=True
            ).stdout.strip()
            if found:
                (bin_dir / tool).symlink_to(found)
        env["PATH"] = str(bin_dir)
    return env


def test_setup_refuses_a_python_that_is_too_old(tmp_path):
    fake = tmp_path / "python3.9"
    fake.write_text(
        '#!/bin/sh\ncase "$2" in *version_info*) exit 1 ;; *python_version*) echo 3.9.18 ;; esac\n'
    )
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    result = subprocess.run(
        ["bash", "scripts/setup.sh"],
        cwd=PROJECT_ROOT,
        env=_setup_env(tmp_path, python=str(fake)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "Python 3.11 or newer is needed" in result.stderr
    assert "3.9.18" in result.stderr


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX shell only")
def test_setup_explains_a_missing_node(tmp_path):
    result = subprocess.run(
        ["bash", "scripts/setup.sh"],
        cwd=PROJECT_ROOT,
        env=_setup_env(tmp_path, hide_node=True),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "Node.js 20 or newer is needed" in result.stderr
