"""A job worker process for the restart tests.

Run as `python -m tests.integration.job_worker_process`, it adds one probe task to
the app's job queue, then runs the worker exactly as `python -m carmenta worker`
does. The probe records each run in the `job_restart_probe` table of the test
database and waits for a flag file before it finishes, so a test can kill the
worker while the job is running.

The test process imports this module too, so it can enqueue the probe by name.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from procrastinate import JobContext
from sqlalchemy import text

from carmenta.db import session_scope
from carmenta.jobs.queue import job_app

PROBE_TASK = "tests.restart_probe"
PROBE_TABLE_SQL = """
create table if not exists job_restart_probe (
    id bigserial primary key,
    probe_id text not null,
    event text not null,
    pid integer not null,
    at timestamptz not null default now()
)
"""


async def _record(probe_id: str, event: str) -> None:
    async with session_scope() as session:
        await session.exec(
            text("insert into job_restart_probe (probe_id, event, pid) values (:p, :e, :pid)"),
            params={"p": probe_id, "e": event, "pid": os.getpid()},
        )


@job_app.task(name=PROBE_TASK, pass_context=True)
async def restart_probe(context: JobContext, *, probe_id: str, flag_path: str) -> dict[str, object]:
    await _record(probe_id, "started")
    flag = Path(flag_path)
    while not flag.exists():
        await asyncio.sleep(0.05)
    await _record(probe_id, "completed")
    return {"probe_id": probe_id, "pid": os.getpid()}


if __name__ == "__main__":
    from carmenta.jobs.worker import main

    main()
