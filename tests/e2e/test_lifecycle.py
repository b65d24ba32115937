"""`carmenta run` on the embedded database: Ctrl-C stops everything, data survives."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psycopg
import pytest

from carmenta.settings import PROJECT_ROOT

pytestmark = pytest.mark.own_app


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _start(data_dir: Path, port: int, log_path: Path) -> subprocess.Popen:
    env = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    env.update({"DATA_DIR": str(data_dir), "PORT": str(port), "CARMENTA_ENV": "development"})
    env.pop("PUBLIC_URL", None)
    return subprocess.Popen(
        [sys.executable, "-m", "carmenta", "run"],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=log_path.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _wait_healthy(port: int, process: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        assert process.poll() is None, log_path.read_text()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as reply:
                if reply.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(log_path.read_text())


def _interrupt(process: subprocess.Popen) -> int:
    os.killpg(process.pid, signal.SIGINT)
    try:
        return process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        raise


def _socket_url(data_dir: Path) -> str:
    return f"postgresql://postgres:@/carmenta?host={data_dir / 'postgres'}"


def test_ctrl_c_stops_app_and_embedded_database_and_data_is_kept(tmp_path):
    data_dir = tmp_path / "data"
    port = _free_port()
    first_log = tmp_path / "first.log"
    process = _start(data_dir, port, first_log)
    try:
        _wait_healthy(port, process, first_log)
        # Give the announcer a moment to print the URL it found healthy.
        time.sleep(0.5)
        with psycopg.connect(_socket_url(data_dir), autocommit=True) as connection:
            connection.execute(
                "insert into users (external_auth_id, auth_provider, email)"
                " values ('kept-across-restarts', 'builtin', 'kept@example.com')"
            )
    finally:
        code = _interrupt(process)
    output = first_log.read_text()
    assert f"Carmenta is ready: http://localhost:{port}" in output
    assert "Stopped the embedded PostgreSQL." in output
    assert "Traceback" not in output
    assert code in (0, 130)
    assert not (data_dir / "postgres" / "postmaster.pid").exists()

    second_log = tmp_path / "second.log"
    process = _start(data_dir, port, second_log)
    try:
        _wait_healthy(port, process, second_log)
        with psycopg.connect(_socket_url(data_dir)) as connection:
            row = connection.execute(
                "select email from users where external_auth_id = 'kept-across-restarts'"
            ).fetchone()
        assert row == ("kept@example.com",)
    finally:
        _interrupt(process)
    second_output = second_log.read_text()
    # Nothing to install, migrate or build the second time.
    assert "Applying" not in second_output
    assert "Building the interface" not in second_output
