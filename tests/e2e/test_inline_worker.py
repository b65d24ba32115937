"""With the embedded defaults, jobs run inside the app process itself."""

from __future__ import annotations

import asyncio
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import psycopg
from sqlalchemy.ext.asyncio import create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

from carmenta.db import sqlalchemy_url
from carmenta.jobs import service as jobs_service


async def _enqueue_purge(database_url: str) -> int:
    engine = create_async_engine(sqlalchemy_url(database_url))
    try:
        async with AsyncSession(engine) as session:
            job_id = await jobs_service.enqueue(
                task_name="maintenance.purge_expired_oauth_states",
                task_kwargs={"timestamp": int(time.time())},
                session=session,
            )
            await session.commit()
            return job_id
    finally:
        await engine.dispose()


def test_the_running_app_executes_a_queued_job(app_server):
    user_id = uuid.uuid4()
    with psycopg.connect(app_server.database_url, autocommit=True) as connection:
        connection.execute(
            "insert into users (id, external_auth_id, auth_provider) values (%s, %s, 'builtin')",
            (user_id, f"inline-{user_id}"),
        )
        connection.execute(
            "insert into oauth_states (owner_id, state_hash, provider, expires_at) values"
            " (%s, %s, 'slack', now() - interval '1 minute'),"
            " (%s, %s, 'slack', now() + interval '9 minutes')",
            (user_id, f"old-{user_id}", user_id, f"new-{user_id}"),
        )

    # The browser tests keep an event loop running in this thread; enqueue from another.
    with ThreadPoolExecutor(max_workers=1) as pool:
        job_id = pool.submit(asyncio.run, _enqueue_purge(app_server.database_url)).result()

    deadline = time.monotonic() + 60
    status = None
    with psycopg.connect(app_server.database_url, autocommit=True) as connection:
        while time.monotonic() < deadline:
            status = connection.execute(
                "select status from procrastinate_jobs where id = %s", (job_id,)
            ).fetchone()[0]
            if status in ("succeeded", "failed"):
                break
            time.sleep(0.2)
        remaining = connection.execute(
            "select state_hash from oauth_states where owner_id = %s", (user_id,)
        ).fetchall()
        worker_count = connection.execute("select count(*) from procrastinate_workers").fetchone()[
            0
        ]
    assert status == "succeeded"
    assert remaining == [(f"new-{user_id}",)]
    assert worker_count >= 1
