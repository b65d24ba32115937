"""The same migrations run against another PostgreSQL given by DATABASE_URL."""

from __future__ import annotations

import os
import subprocess
import sys

import psycopg

from carmenta.settings import PROJECT_ROOT
from tests.database import tcp_postgres_server
from tests.integration.test_migrations import _differences, _table_names


def test_migrate_command_applies_the_schema_to_a_server_reached_over_tcp(tmp_path):
    with tcp_postgres_server(tmp_path, password="ext-Secret-42") as admin_url:
        with psycopg.connect(admin_url, autocommit=True) as connection:
            connection.execute("create database carmenta_external")
        url = admin_url.rsplit("/", 1)[0] + "/carmenta_external"
        env = {**os.environ, "DATABASE_URL": url, "DATA_DIR": str(tmp_path / "data")}
        result = subprocess.run(
            [sys.executable, "-m", "carmenta", "migrate"],
            cwd=PROJECT_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        output = result.stdout + result.stderr
        assert result.returncode == 0, output
        assert "up to date" in output
        assert "ext-Secret-42" not in output
        # No embedded server was started for an external database.
        assert not (tmp_path / "data" / "postgres").exists()
        assert {"users", "documents", "memories", "procrastinate_jobs"} <= _table_names(url)
        assert _differences(url) == []

        again = subprocess.run(
            [sys.executable, "-m", "carmenta", "migrate"],
            cwd=PROJECT_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert again.returncode == 0
        assert "Applying" not in again.stdout
