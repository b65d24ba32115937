"""Starting Carmenta: configuration checks, database, migrations, interface, server.

`make run` calls `python -m carmenta run`. Each failure a person can fix stops with
one message that says what to do.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

from pydantic import ValidationError

from carmenta.errors import ConfigurationError, DatabaseUnavailableError, StartupError
from carmenta.settings import PROJECT_ROOT, Settings, get_settings, reset_settings_cache

logger = logging.getLogger("carmenta")


def announce(message: str) -> None:
    """Tell the person at the terminal; with LOG_FORMAT=json it is a log record instead."""
    from carmenta.settings import LogFormat

    try:
        as_log = get_settings().log_format is LogFormat.json
    except ValidationError:
        as_log = False
    if as_log:
        logger.info(" ".join(message.split()))
    else:
        print(message, flush=True)


def load_settings() -> Settings:
    reset_settings_cache()
    try:
        return get_settings()
    except ValidationError as error:
        lines = []
        for problem in error.errors():
            field = ".".join(str(part) for part in problem["loc"]).upper() or "configuration"
            message = problem["msg"].removeprefix("Value error, ")
            lines.append(f"  {field}: {message}")
        raise ConfigurationError("The configuration is not valid:\n" + "\n".join(lines)) from None


def refuse_unsafe_production(settings: Settings) -> None:
    if not settings.is_production:
        return
    problems = settings.production_problems()
    if problems:
        raise ConfigurationError(
            "CARMENTA_ENV=production, but the configuration is not safe to serve:\n"
            + "\n".join(f"  - {problem}" for problem in problems)
            + "\nSet these variables (see .env.example), or unset CARMENTA_ENV to run locally."
        )


def ensure_port_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # Like the server itself: connections lingering in TIME_WAIT do not block a
        # restart, but another program listening on the port does.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            if error.errno in (errno.EADDRINUSE, errno.EACCES):
                raise StartupError(
                    f"Port {port} is already in use (or not allowed) on {host}. Stop the "
                    f"program using it, or choose another port: PORT={port + 1} make run"
                ) from None
            raise StartupError(f"Cannot listen on {host}:{port}: {error.strerror}") from None


def check_database_reachable(url: str) -> None:
    import psycopg

    from carmenta.db import describe_url, libpq_url

    try:
        with psycopg.connect(libpq_url(url), connect_timeout=5) as connection:
            connection.execute("select 1")
    except psycopg.OperationalError as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise DatabaseUnavailableError(
            f"Cannot connect to the database at {describe_url(url)}: {first_line}\n"
            "Check that the server is running and that DATABASE_URL is right, or unset "
            "DATABASE_URL to use the embedded database."
        ) from None
    except psycopg.ProgrammingError as error:
        raise ConfigurationError(
            f"DATABASE_URL is not a valid connection string: {error}"
        ) from None


def check_redis_reachable(url: str) -> None:
    import redis
    from redis.exceptions import RedisError

    client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=5)
    try:
        client.ping()
    except RedisError as error:
        # The message names the server but never the password in the URL.
        raise StartupError(
            f"Cannot reach Redis at {describe_redis_url(url)} ({type(error).__name__}).\n"
            "Check that it is running and that REDIS_URL is right, or unset REDIS_URL "
            "to run a single instance."
        ) from None
    finally:
        client.close()


def describe_redis_url(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme == "unix":
        return f"unix socket {parts.path}"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname or 'localhost'}{port}{parts.path}"


def warn_about_unshared_secrets(settings: Settings) -> None:
    missing = settings.unshared_secrets()
    if missing and not settings.is_production:
        print(
            "REDIS_URL is set, so other instances may serve the same people, but these "
            "are generated in DATA_DIR/keys instead of set, and only instances sharing "
            "DATA_DIR agree on them:\n" + "\n".join(f"  - {secret}" for secret in missing),
            flush=True,
        )


@contextlib.contextmanager
def database(settings: Settings) -> Iterator[str]:
    """The database URL to use; starts the embedded server when none is configured."""
    if not settings.uses_embedded_database:
        assert settings.database_url is not None
        check_database_reachable(settings.database_url)
        yield settings.database_url
        return

    from carmenta.embedded_postgres import start_embedded_postgres

    announce(f"Starting the embedded PostgreSQL (data in {settings.embedded_postgres_dir})…")
    embedded = start_embedded_postgres(settings.embedded_postgres_dir)
    url = embedded.url()
    os.environ["DATABASE_URL"] = url
    reset_settings_cache()
    try:
        yield url
    finally:
        embedded.stop()
        announce("Stopped the embedded PostgreSQL.")


def migrate(url: str) -> None:
    from carmenta.migrations import pending_revisions, upgrade_to_head

    pending = pending_revisions(url)
    if pending:
        announce(f"Applying {len(pending)} database migration(s)…")
        upgrade_to_head(url)


def _announce_when_ready(url: str, port: int, stop: threading.Event) -> None:
    health_url = f"http://127.0.0.1:{port}/health"
    deadline = time.monotonic() + 120
    while not stop.is_set() and time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(health_url, timeout=2) as response:  # noqa: S310
                if response.status == 200:
                    announce(f"\n  Carmenta is ready: {url}\n  Press Ctrl-C to stop.\n")
                    return
        except (urllib.error.URLError, OSError):
            pass
        stop.wait(0.25)


SOCKET_MESSAGE_LIMIT_BYTES = 4 * 1024 * 1024


def serve(settings: Settings) -> None:
    """Serve the built interface and the backend on one port until interrupted."""
    from reflex.utils import exec as reflex_exec
    from reflex_base import constants
    from reflex_base.environment import environment

    environment.REFLEX_ENV_MODE.set(constants.Env.PROD)
    environment.REFLEX_SKIP_COMPILE.set(True)
    # A document may be up to 1 MB of text; its websocket message needs room around it.
    environment.REFLEX_SOCKET_MAX_HTTP_BUFFER_SIZE.set(SOCKET_MESSAGE_LIMIT_BYTES)
    os.environ["REFLEX_API_URL"] = settings.app_url
    # Reflex would start 2 x cores + 1 processes once Redis is set; each loads the
    # embedding model and runs its own job worker, so the count is the operator's.
    os.environ["GRANIAN_WORKERS"] = str(settings.web_workers)

    stop = threading.Event()
    announcer = threading.Thread(
        target=_announce_when_ready, args=(settings.app_url, settings.port, stop), daemon=True
    )
    announcer.start()
    try:
        reflex_exec.run_backend_prod(
            settings.bind_host,
            settings.port,
            constants.LogLevel.WARNING,
            mount_frontend_compiled_app=True,
        )
    finally:
        stop.set()


def run() -> None:
    os.chdir(PROJECT_ROOT)
    settings = load_settings()
    from carmenta.observability.logs import configure_logging

    configure_logging(settings)
    refuse_unsafe_production(settings)
    ensure_port_free(settings.bind_host, settings.port)
    if settings.redis_url is not None:
        check_redis_reachable(settings.redis_url)
        warn_about_unshared_secrets(settings)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with database(settings) as url:
        migrate(url)
        from carmenta import frontend_build

        frontend_build.ensure_built(api_url=settings.app_url)
        serve(get_settings())
