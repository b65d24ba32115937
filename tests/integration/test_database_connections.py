"""Pooled connections the database closed are replaced, not handed to a request."""

from __future__ import annotations

import psycopg
import pytest
from sqlalchemy import text

from carmenta import db

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
