"""The job queue: one procrastinate `App` for the whole process, opened on demand.

The `App` is created at import so tasks can be declared with `@job_app.task(...)`,
but it holds no connection until `open_job_app()` is entered: the connection string
is read from the settings (or given to `open_job_app`) when a connection is made.

Only workers need the `App` open. Enqueueing, reading and cancelling jobs
(`carmenta.jobs.service`) run on the caller's database session instead, so a job is
created in the same transaction as the data it will work on.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from procrastinate import App, PsycopgConnector

from carmenta.db import configured_database_url, libpq_url

# Modules whose tasks every worker must know. A feature that adds tasks lists its
# module here, or its jobs fail with "task not found" on workers that never imported it.
TASK_MODULES: tuple[str, ...] = (
    "carmenta.jobs.tasks",
    "carmenta.files.tasks",
    "carmenta.connections.tasks",
    "carmenta.knowledge.tasks",
    "carmenta.memory.tasks",
    "carmenta.chat.tasks",
    "carmenta.exports.tasks",
)

# Queue connections are used one query at a time (fetch, heartbeat, finish), never
# held while a task runs, so a few serve any worker concurrency. LISTEN/NOTIFY uses
# one more connection outside the pool.
POOL_MIN_SIZE = 1
POOL_MAX_SIZE = 10

# Worker liveness, shared by every worker of a deployment. A worker writes a heartbeat
# every HEARTBEAT_INTERVAL_SECONDS; one silent for STALLED_WORKER_TIMEOUT_SECONDS (three
# missed beats) is taken for dead and its running jobs go back to the queue. A job
# left running by a crashed worker is therefore requeued at most about 16 s after a
# worker starts again, and within a minute by the periodic recovery otherwise.
HEARTBEAT_INTERVAL_SECONDS = 5.0
STALLED_WORKER_TIMEOUT_SECONDS = 15.0

_database_url_override: str | None = None


def _conninfo() -> str:
    # Called by the pool for every new connection, so nothing is resolved at import.
    return libpq_url(_database_url_override or configured_database_url())


job_app = App(
    connector=PsycopgConnector(
        conninfo=_conninfo,
        min_size=POOL_MIN_SIZE,
        max_size=POOL_MAX_SIZE,
        name="carmenta-jobs",
        kwargs={"application_name": "carmenta-jobs"},
    ),
    import_paths=list(TASK_MODULES),
)

_open_count = 0
_open_lock = asyncio.Lock()


@asynccontextmanager
async def open_job_app(*, database_url: str | None = None) -> AsyncIterator[App]:
    """Open the queue's connection pool for the duration of the block.

    Nested and concurrent users share one pool (an inline worker and a test worker
    in one process, say); the last one out closes it. Without `database_url` the
    configured DATABASE_URL is used. Tasks and `carmenta.jobs.service` always use the
    configured database (through carmenta.db), so a different `database_url` only
    suits tools that touch the queue alone.
    """
    global _database_url_override, _open_count
    async with _open_lock:
        if _open_count and database_url is not None and database_url != _database_url_override:
            raise ValueError("the job queue is already open on another database")
        if _open_count == 0:
            _database_url_override = database_url
            try:
                await job_app.open_async()
            except BaseException:
                _database_url_override = None
                raise
        _open_count += 1
    try:
        yield job_app
    finally:
        async with _open_lock:
            _open_count -= 1
            if _open_count == 0:
                try:
                    await job_app.close_async()
                finally:
                    _database_url_override = None
