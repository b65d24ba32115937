"""Database URLs, engines and sessions.

Engines are created lazily on first use, never at import time. Services receive an
`AsyncSession` from their caller, who owns the transaction.
"""

from __future__ import annotations

import re
import select
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from sqlalchemy import Engine, create_engine, event, exc, text
from sqlalchemy.dialects.postgresql.base import PGDialect
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.types import UserDefinedType
from sqlalchemy.util import greenlet_spawn
from sqlmodel.ext.asyncio.session import AsyncSession

from carmenta.errors import ConfigurationError
from carmenta.settings import get_settings


class Ltree(UserDefinedType):
    """PostgreSQL `ltree`: a dot-separated path of labels (the knowledge base tree)."""

    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return "LTREE"


# Reflection (Alembic's autogenerate) must recognise ltree as the same type.
PGDialect.ischema_names.setdefault("ltree", Ltree)


def libpq_url(url: str) -> str:
    """The URL as libpq and psycopg expect it: plain `postgresql://`."""
    parts = urlsplit(url)
    return urlunsplit(("postgresql", *parts[1:]))


def sqlalchemy_url(url: str) -> str:
    """The URL for SQLAlchemy, always with the psycopg 3 driver."""
    parts = urlsplit(url)
    return urlunsplit(("postgresql+psycopg", *parts[1:]))


def describe_url(url: str) -> str:
    """A URL safe to print: the password is never shown."""
    try:
        return make_url(sqlalchemy_url(url)).render_as_string(hide_password=True)
    except Exception:  # a malformed URL is described, never echoed with its secret
        return "<unparseable database URL>"


def configured_database_url() -> str:
    url = get_settings().database_url
    if url is None:
        raise ConfigurationError(
            "DATABASE_URL is not set. Start the app with `make run` (which starts the "
            "embedded PostgreSQL) or set DATABASE_URL to your PostgreSQL server."
        )
    return url


_async_engine: AsyncEngine | None = None
_sessionmaker: async_sessionmaker[AsyncSession] | None = None
_autocommit_engine: AsyncEngine | None = None


def _create_engine(**kwargs: Any) -> AsyncEngine:
    engine = create_async_engine(
        sqlalchemy_url(configured_database_url()),
        # Dead connections are found without a round trip (see below) rather than
        # by a `SELECT 1` before every use.
        pool_pre_ping=False,
        # The connection returned last is handed out next: its server process is
        # warm (an idle backend's memory is slow to touch again on small hosts), and
        # connections beyond the usual load stay idle.
        pool_use_lifo=True,
        **kwargs,
    )
    prepare_engine(engine)
    return engine


def prepare_engine(engine: AsyncEngine) -> None:
    """What every engine of the app's does at checkout: refuse dead connections, and
    give each the settings registered with `set_on_every_connection`."""
    event.listen(engine.sync_engine, "checkout", _on_checkout)


def get_async_engine() -> AsyncEngine:
    global _async_engine, _sessionmaker
    if _async_engine is None:
        _async_engine = _create_engine(pool_size=10, max_overflow=20)
        _sessionmaker = async_sessionmaker(
            _async_engine, class_=AsyncSession, expire_on_commit=False
        )
    return _async_engine


def statement_engine_for(engine: AsyncEngine) -> AsyncEngine:
    """The engine whose connections run each statement on its own, for reads made
    alongside a session on `engine`: the app's autocommit pool for the app's engine."""
    if engine is _async_engine or engine is _autocommit_engine:
        return _get_autocommit_engine()
    return engine.execution_options(isolation_level="AUTOCOMMIT")


def _get_autocommit_engine() -> AsyncEngine:
    global _autocommit_engine
    if _autocommit_engine is None:
        # A pool of its own whose connections stay in autocommit: switching a shared
        # connection into autocommit and back on every checkout costs more than the
        # small reads this pool serves.
        # With no transaction to end, a returned connection is not rolled back either
        # (a round of driver calls per use); one found inside a transaction anyway (an
        # explicit BEGIN) is dropped at its next checkout.
        _autocommit_engine = _create_engine(
            isolation_level="AUTOCOMMIT",
            pool_reset_on_return=None,
            # A reply's plan alone reads on up to six connections at once: as many
            # stay open, so that a send does not wait for a new server process.
            pool_size=10,
            max_overflow=10,
        )
    return _autocommit_engine


_IDLE = psycopg.pq.TransactionStatus.IDLE


def looks_alive(driver_connection: Any) -> bool:
    """Whether an idle pooled connection is still open, without asking the server.

    An idle connection has nothing to read. When the server goes away (a restart, an
    administrator ending the session) it says so or closes the socket, which makes the
    socket readable: one `select` with no wait tells, where a ping costs a round trip
    on every request.
    """
    if driver_connection.closed or driver_connection.broken:
        return False
    readable, _, _ = select.select([driver_connection.fileno()], [], [], 0)
    return not readable


# Server settings every connection has before it is used, registered by the modules
# whose statements rely on them: those statements then need no transaction around
# them to set them locally (a BEGIN, a `set_config` and a COMMIT fewer per use).
_connection_settings: dict[str, str] = {}


def set_on_every_connection(name: str, value: str) -> None:
    """Give every connection this server setting (an extension's, say) before its next use."""
    _connection_settings[name] = value


def connection_settings_statement() -> tuple[str, list[str]] | None:
    """The statement that applies the registered settings, with its parameters."""
    if not _connection_settings:
        return None
    calls = ", ".join("set_config(%s, %s, false)" for _ in _connection_settings)
    return f"select {calls}", [part for pair in _connection_settings.items() for part in pair]


def _has_connection_settings(info: dict[str, Any]) -> bool:
    return info.get("settings") == _connection_settings


def _on_checkout(dbapi_connection: Any, record: Any, proxy: Any) -> None:
    # Raising DisconnectionError makes the pool drop this connection and hand out (or
    # open) another.
    driver = dbapi_connection.driver_connection
    if not looks_alive(driver):
        raise exc.DisconnectionError("the database closed this connection")
    if driver.info.transaction_status != _IDLE:
        raise exc.DisconnectionError("this connection was returned inside a transaction")
    if not _has_connection_settings(record.info):
        wanted = dict(_connection_settings)
        statement = connection_settings_statement()
        if statement is not None:
            # Outside any transaction, so that no rollback undoes them.
            autocommit = dbapi_connection.autocommit
            dbapi_connection.autocommit = True
            try:
                cursor = dbapi_connection.cursor()
                cursor.execute(*statement)
                cursor.close()
            finally:
                dbapi_connection.autocommit = autocommit
        record.info["settings"] = wanted


def create_sync_engine(url: str | None = None, **kwargs: Any) -> Engine:
    """A short-lived synchronous engine, for migrations and command-line tools."""
    return create_engine(sqlalchemy_url(url or configured_database_url()), **kwargs)


@asynccontextmanager
async def session_scope() -> AsyncIterator[AsyncSession]:
    """One unit of work: commits when the block succeeds, rolls back when it raises."""
    get_async_engine()
    assert _sessionmaker is not None
    async with _sessionmaker() as session:
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise


@asynccontextmanager
async def statement_scope() -> AsyncIterator[AsyncSession]:
    """A session whose statements each run on their own, without BEGIN and COMMIT.

    For reads that need no transaction around them (one statement, or several that
    need not see one snapshot) and for writes made whole by one statement: it saves
    two round trips per use. Writes that span statements, and transaction-local
    settings, do not belong here: each statement commits by itself.
    """
    async with AsyncSession(bind=_get_autocommit_engine(), expire_on_commit=False) as session:
        yield session


# Checked out of the autocommit pool and kept for the next `statement_connection`:
# going through the pool costs about 0.1 ms a use, a sixth of a small indexed read.
# The pool still counts them, so its limits hold.
_spare_statement_connections: list[Any] = []
SPARE_STATEMENT_CONNECTIONS = 4


def _usable(pooled: Any) -> bool:
    driver = pooled.driver_connection
    return (
        looks_alive(driver)
        and driver.info.transaction_status == _IDLE
        and _has_connection_settings(pooled.info)
    )


async def _take_spare_statement_connection() -> Any | None:
    while _spare_statement_connections:
        pooled = _spare_statement_connections.pop()
        if _usable(pooled):
            return pooled
        # Back to the pool, whose checkout drops a dead one or brings its settings up
        # to date.
        await greenlet_spawn(pooled.close)
    return None


@asynccontextmanager
async def statement_connection() -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    """A psycopg connection in autocommit, from `statement_scope`'s pool, without a session.

    For the hottest one-statement reads: building and closing a session costs about a
    tenth of a millisecond, which is a sixth of a small indexed read.
    """
    pooled = await _take_spare_statement_connection()
    if pooled is None:
        pooled = await _get_autocommit_engine().raw_connection()
    try:
        yield pooled.driver_connection
    finally:
        if len(_spare_statement_connections) < SPARE_STATEMENT_CONNECTIONS and _usable(pooled):
            _spare_statement_connections.append(pooled)
        else:
            # Back to the pool, which may close it through the driver: in a greenlet.
            await greenlet_spawn(pooled.close)


def driver_sql(sql: str) -> str:
    """SQL written with `:name` parameters (as for `text()`) in psycopg's `%(name)s` form,
    for statements sent on a driver connection. `::` casts are left alone."""
    return re.sub(r"(?<![:\w]):(\w+)", r"%(\1)s", sql.replace("%", "%%"))


async def driver_connection(session: AsyncSession) -> Any:
    """The psycopg connection under the session, in the session's transaction (if any).

    For hot reads whose rows are unpacked by the caller: SQLAlchemy's statement and
    result layers cost about as much as a small indexed query itself.
    """
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    return raw.driver_connection


async def dispose_engine() -> None:
    global _async_engine, _sessionmaker, _autocommit_engine
    spares = list(_spare_statement_connections)
    _spare_statement_connections.clear()
    for pooled in spares:
        await greenlet_spawn(pooled.close)
    engines = [engine for engine in (_async_engine, _autocommit_engine) if engine is not None]
    _async_engine = _autocommit_engine = None
    _sessionmaker = None
    for engine in engines:
        await engine.dispose()


async def ping(engine: AsyncEngine | None = None) -> None:
    """Raise if the database does not answer a trivial query."""
    engine = engine or get_async_engine()
    async with engine.connect() as connection:
        await connection.execute(text("select 1"))
