"""Maintenance tasks that every deployment runs on a schedule.

Periodic jobs are deferred by the workers themselves; the database makes sure each
scheduled run is queued once however many workers are up. They use a queue of their
own so they are easy to tell apart from user work in the queue's tables.
"""

from __future__ import annotations

import logging

from procrastinate import App, JobContext
from procrastinate.jobs import Status
from sqlalchemy import delete, func, text

from carmenta.connections.models import OAuthState
from carmenta.db import session_scope
from carmenta.jobs.queue import STALLED_WORKER_TIMEOUT_SECONDS, job_app

logger = logging.getLogger(__name__)

MAINTENANCE_QUEUE = "maintenance"

RETRY_STALLED_JOBS_CRON = "* * * * *"  # every minute
PURGE_OAUTH_STATES_CRON = "*/15 * * * *"  # every quarter hour
DELETE_OLD_JOBS_CRON = "17 3 * * *"  # daily, at a quiet hour

# Finished jobs (and their progress rows) are kept this long for pages and debugging.
FINISHED_JOB_RETENTION_HOURS = 7 * 24

# A job that keeps taking its worker down (out of memory, say) must not be retried
# forever: after this many attempts a stalled job is marked failed instead.
MAX_STALLED_ATTEMPTS = 5

# Any fixed number; it only has to be the same in every worker.
_RECOVERY_LOCK_KEY = 0x6361726D656E7461  # "carmenta"

# The insert trigger of the queue's schema sends this to wake idle workers; a job
# put back in the queue by an UPDATE does not fire it, so recovery sends it itself.
# Should the channel names change in a later schema, workers still poll every 5 s.
_NOTIFY_REQUEUED_SQL = """
select pg_notify('procrastinate_queue_v1#' || queue_name, payload),
       pg_notify('procrastinate_any_queue_v1', payload)
  from (select queue_name,
               json_build_object('type', 'job_inserted', 'job_id', id)::text as payload
          from procrastinate_jobs
         where id = any(%s) and status = 'todo') as requeued
"""


async def recover_stalled_jobs(*, app: App = job_app) -> dict[str, list[int]]:
    """Put the jobs of workers that stopped heartbeating back in the queue.

    Returns the ids of the jobs requeued, failed (too many attempts) and aborted
    (cancelled by their owner before their worker died). `app` must be open.
    """
    requeued: list[int] = []
    failed: list[int] = []
    aborted: list[int] = []
    pool = app.connector.pool  # type: ignore[attr-defined]
    async with pool.connection() as connection, connection.transaction():
        # Every worker runs this on start and the periodic job runs it too; the lock
        # lets one of them at a time look, so no job is requeued twice.
        cursor = await connection.execute(
            "select pg_try_advisory_xact_lock(%s)", (_RECOVERY_LOCK_KEY,)
        )
        row = await cursor.fetchone()
        if not row or not row[0]:
            return {"requeued": requeued, "failed": failed, "aborted": aborted}

        await app.job_manager.prune_stalled_workers(STALLED_WORKER_TIMEOUT_SECONDS)
        stalled = list(
            await app.job_manager.get_stalled_jobs(
                seconds_since_heartbeat=STALLED_WORKER_TIMEOUT_SECONDS
            )
        )
        if not stalled:
            return {"requeued": requeued, "failed": failed, "aborted": aborted}

        # The stalled-jobs query does not say whether a cancel was requested.
        cursor = await connection.execute(
            "select id from procrastinate_jobs where id = any(%s) and abort_requested",
            ([job.id for job in stalled],),
        )
        cancel_requested = {job_id for (job_id,) in await cursor.fetchall()}

        for job in stalled:
            assert job.id is not None
            try:
                if job.id in cancel_requested:
                    await app.job_manager.finish_job_by_id_async(
                        job_id=job.id, status=Status.ABORTED, delete_job=False
                    )
                    aborted.append(job.id)
                elif job.attempts + 1 >= MAX_STALLED_ATTEMPTS:
                    await app.job_manager.finish_job_by_id_async(
                        job_id=job.id, status=Status.FAILED, delete_job=False
                    )
                    failed.append(job.id)
                else:
                    await app.job_manager.retry_job(job)
                    requeued.append(job.id)
            except Exception:
                # Another actor changed the job meanwhile; the rest still deserve care.
                logger.exception("could not recover stalled job %s", job.id)

        if requeued:
            await connection.execute(_NOTIFY_REQUEUED_SQL, (requeued,))
    for job_id in requeued:
        logger.warning("job %s was running on a worker that died; it is queued again", job_id)
    for job_id in failed:
        logger.error(
            "job %s stalled after %s attempts and is marked failed", job_id, MAX_STALLED_ATTEMPTS
        )
    return {"requeued": requeued, "failed": failed, "aborted": aborted}


async def purge_expired_oauth_states() -> int:
    """Delete sign-in handshakes that can no longer complete; return how many."""
    async with session_scope() as session:
        result = await session.exec(delete(OAuthState).where(OAuthState.expires_at < func.now()))
        return result.rowcount or 0


async def delete_finished_jobs(*, app: App = job_app, older_than_hours: int) -> int:
    """Delete jobs that ended long ago, then their progress rows; return the latter count."""
    await app.job_manager.delete_old_jobs(
        nb_hours=older_than_hours,
        include_failed=True,
        include_cancelled=True,
        include_aborted=True,
    )
    # job_progress has no foreign key to the queue's table (the queue owns its schema),
    # so its rows are removed here once their job is gone.
    async with session_scope() as session:
        result = await session.exec(
            text(
                "delete from job_progress p where not exists"
                " (select 1 from procrastinate_jobs j where j.id = p.job_id)"
            )
        )
        return result.rowcount or 0


@job_app.periodic(cron=RETRY_STALLED_JOBS_CRON, periodic_id="every-minute")
@job_app.task(
    name="maintenance.retry_stalled_jobs",
    queue=MAINTENANCE_QUEUE,
    queueing_lock="maintenance.retry_stalled_jobs",
    pass_context=True,
)
async def retry_stalled_jobs(context: JobContext, timestamp: int) -> dict[str, int]:
    outcome = await recover_stalled_jobs(app=context.app)
    return {name: len(ids) for name, ids in outcome.items()}


@job_app.periodic(cron=PURGE_OAUTH_STATES_CRON, periodic_id="quarter-hourly")
@job_app.task(
    name="maintenance.purge_expired_oauth_states",
    queue=MAINTENANCE_QUEUE,
    queueing_lock="maintenance.purge_expired_oauth_states",
)
async def purge_expired_oauth_states_task(timestamp: int) -> dict[str, int]:
    return {"deleted": await purge_expired_oauth_states()}


# procrastinate's builtin `remove_old_jobs` cannot be scheduled as is (periodic jobs
# receive a `timestamp` it does not accept), and progress rows must go with the jobs.
@job_app.periodic(cron=DELETE_OLD_JOBS_CRON, periodic_id="daily")
@job_app.task(
    name="maintenance.delete_old_jobs",
    queue=MAINTENANCE_QUEUE,
    queueing_lock="maintenance.delete_old_jobs",
    pass_context=True,
)
async def delete_old_jobs(context: JobContext, timestamp: int) -> dict[str, int]:
    deleted = await delete_finished_jobs(
        app=context.app, older_than_hours=FINISHED_JOB_RETENTION_HOURS
    )
    return {"progress_rows_deleted": deleted}
