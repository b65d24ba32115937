"""Pooled connections the database closed are replaced, not handed to a request."""

from __future__ import annotations

import psycopg
import pytest
from sqlalchemy import text

from carmenta import db

# The searches register the connection settings they rely on when imported.
from carmenta.knowledge import search, semantic  # noqa: F401

pytestmark = pytest.mark.usefixtures("database_url")


async def _backend_pids(count: int) -> set[int]:
    """Check `count` connections out at once (so the pool holds that many), and return
    the server processes behind them."""
    from sqlmodel.ext.asyncio.session import AsyncSession

    engine = db.get_async_engine()
    sessions = [AsyncSession(bind=engine) for _ in range(count)]
    pids = set()
    try:
        for session in sessions:
            pids.add((await session.execute(text("select pg_backend_pid()"))).scalar_one())
    finally:
        for session in sessions:
            await session.close()
    return pids


async def test_connections_ended_by_the_server_are_replaced_without_an_error(database_url):
    await db.dispose_engine()
    pids = await _backend_pids(3)
    assert len(pids) == 3
    # An administrator (or a restart) ends every pooled connection while they sit idle.
    with psycopg.connect(database_url, autocommit=True) as admin:
        for pid in pids:
            # With a timeout, pg_terminate_backend returns once the process has ended.
            assert admin.execute("select pg_terminate_backend(%s, 10000)", (pid,)).fetchone()[0]
    # Every request after that gets a working connection: none sees the dead ones.
    for _ in range(4):
        async with db.session_scope() as session:
            assert (await session.execute(text("select 1"))).scalar_one() == 1
    assert not (await _backend_pids(3)) & pids
    await db.dispose_engine()


async def test_an_idle_live_connection_is_kept(database_url):
    await db.dispose_engine()
    first = await _backend_pids(1)
    assert await _backend_pids(1) == first
    await db.dispose_engine()


async def _statement_pid() -> int:
    async with db.statement_connection() as connection:
        return (await (await connection.execute("select pg_backend_pid()")).fetchone())[0]


async def test_statement_connections_run_each_statement_on_its_own_and_go_back_to_the_pool():
    await db.dispose_engine()
    async with db.statement_connection() as connection:
        pid = (await (await connection.execute("select pg_backend_pid()")).fetchone())[0]
        # No transaction is left open between statements, even after one fails.
        assert connection.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        with pytest.raises(psycopg.errors.DivisionByZero):
            await connection.execute("select 1 / 0")
        assert connection.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        assert (await (await connection.execute("select 2")).fetchone())[0] == 2
    # The same connection serves the next use.
    assert await _statement_pid() == pid
    async with db.statement_scope() as session:
        # Each statement is a transaction of its own: no BEGIN holds them together.
        xids = [(await session.execute(text("select txid_current()"))).scalar_one() for _ in "ab"]
        assert xids[0] != xids[1]
    await db.dispose_engine()


async def test_statement_connections_in_use_at_once_are_distinct_and_all_kept_for_reuse():
    await db.dispose_engine()

    async def two_at_once() -> set[int]:
        async with db.statement_connection() as first, db.statement_connection() as second:
            assert first is not second
            return {
                (await (await connection.execute("select pg_backend_pid()")).fetchone())[0]
                for connection in (first, second)
            }

    pids = await two_at_once()
    assert len(pids) == 2
    assert await two_at_once() == pids
    await db.dispose_engine()


async def test_a_statement_connection_left_inside_a_transaction_is_not_handed_out_again():
    await db.dispose_engine()
    async with db.statement_connection() as connection:
        pid = (await (await connection.execute("select pg_backend_pid()")).fetchone())[0]
        await connection.execute("begin")
        await connection.execute("create temporary table left_open (id int)")
    async with db.statement_connection() as connection:
        assert connection.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        assert (await (await connection.execute("select pg_backend_pid()")).fetchone())[0] != pid
    await db.dispose_engine()


async def test_a_statement_connection_ended_by_the_server_is_replaced(database_url):
    await db.dispose_engine()
    pid = await _statement_pid()
    with psycopg.connect(database_url, autocommit=True) as admin:
        assert admin.execute("select pg_terminate_backend(%s, 10000)", (pid,)).fetchone()[0]
    replacement = await _statement_pid()
    assert replacement != pid
    assert await _statement_pid() == replacement
    await db.dispose_engine()


async def _setting(name: str) -> tuple[str | None, str | None]:
    """The setting as a session sees it, and as a statement connection does."""
    query = "select current_setting(%s, true)"
    async with db.session_scope() as session:
        connection = await db.driver_connection(session)
        in_session = (await (await connection.execute(query, (name,))).fetchone())[0]
    async with db.statement_connection() as connection:
        alone = (await (await connection.execute(query, (name,))).fetchone())[0]
    return in_session, alone


async def test_every_connection_has_the_settings_the_searches_rely_on():
    await db.dispose_engine()
    assert await _setting("pg_trgm.word_similarity_threshold") == ("0.45", "0.45")
    assert await _setting("hnsw.iterative_scan") == ("relaxed_order", "relaxed_order")
    # A transaction rolled back on a connection does not take them away.
    with pytest.raises(RuntimeError):
        async with db.session_scope() as session:
            await session.execute(text("select 1"))
            raise RuntimeError("rolled back")
    assert await _setting("pg_trgm.word_similarity_threshold") == ("0.45", "0.45")
    await db.dispose_engine()


async def test_a_setting_registered_later_reaches_connections_already_open(monkeypatch):
    await db.dispose_engine()
    assert await _setting("carmenta_test.marker") == (None, None)
    monkeypatch.setitem(db._connection_settings, "carmenta_test.marker", "on")
    assert await _setting("carmenta_test.marker") == ("on", "on")
    await db.dispose_engine()
