"""Database URLs, engines and sessions.

Engines are created lazily on first use, never at import time. Services receive an
`AsyncSession` from their caller, who owns the transaction.
"""

from __future__ import annotations

import select
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy import Engine, create_engine, event, exc, text
from sqlalchemy.dialects.postgresql.base import PGDialect
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.types import UserDefinedType
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


def get_async_engine() -> AsyncEngine:
    global _async_engine, _sessionmaker
    if _async_engine is None:
        _async_engine = create_async_engine(
            sqlalchemy_url(configured_database_url()),
            # Dead connections are found without a round trip (see below) rather
            # than by a `SELECT 1` before every use.
            pool_pre_ping=False,
            pool_size=10,
            max_overflow=20,
            # The connection returned last is handed out next: its server process is
            # warm (an idle backend's memory is slow to touch again on small hosts),
            # and connections beyond the usual load stay idle.
            pool_use_lifo=True,
        )
        event.listen(_async_engine.sync_engine, "checkout", _refuse_dead_connection)
        _sessionmaker = async_sessionmaker(
            _async_engine, class_=AsyncSession, expire_on_commit=False
        )
    return _async_engine


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


def _refuse_dead_connection(dbapi_connection: Any, record: Any, proxy: Any) -> None:
    # The pool drops this connection and hands out (or opens) another.
    if not looks_alive(dbapi_connection.driver_connection):
        raise exc.DisconnectionError("the database closed this connection")


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


_autocommit_engine: AsyncEngine | None = None


@asynccontextmanager
async def statement_scope() -> AsyncIterator[AsyncSession]:
    """A session whose statements each run on their own, without BEGIN and COMMIT.

    For reads that need no transaction around them (one statement, or several that
    need not see one snapshot) and for writes made whole by one statement: it saves
    two round trips per use. Writes that span statements, and transaction-local
    settings, do not belong here: each statement commits by itself.
    """
    global _autocommit_engine
    if _autocommit_engine is None:
        # The same engine and pool, its connections switched to autocommit while used.
        _autocommit_engine = get_async_engine().execution_options(isolation_level="AUTOCOMMIT")
    async with AsyncSession(bind=_autocommit_engine, expire_on_commit=False) as session:
        yield session


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
    _autocommit_engine = None
    if _async_engine is not None:
        await _async_engine.dispose()
    _async_engine = None
    _sessionmaker = None


async def ping(engine: AsyncEngine | None = None) -> None:
    """Raise if the database does not answer a trivial query."""
    engine = engine or get_async_engine()
    async with engine.connect() as connection:
        await connection.execute(text("select 1"))
