"""Background jobs as the rest of the app sees them: enqueue, follow, cancel.

A job's status lives in the queue's own table (`procrastinate_jobs`); `job_progress`
adds who it is for, how far along it is and what it produced. Jobs enqueued here get
both rows in one transaction, so neither exists without the other.

Functions that take `session` run in the caller's transaction when one is given
(the caller commits), or in a transaction of their own otherwise. Reading and
cancelling are scoped to the owner: another user's job looks like no job at all.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from procrastinate.exceptions import AlreadyEnqueued, TaskNotFound
from sqlalchemy import bindparam, insert, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel.ext.asyncio.session import AsyncSession

from carmenta.db import driver_connection, session_scope
from carmenta.errors import CarmentaError
from carmenta.jobs.models import JobProgress
from carmenta.jobs.queue import job_app

logger = logging.getLogger(__name__)


class JobStatus(StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"


# The queue's statuses, as people understand them. "aborting" is no longer written
# by the queue but may linger in old rows; "aborted" is a cancelled running job.
_QUEUE_STATUSES: dict[str, JobStatus] = {
    "todo": JobStatus.queued,
    "doing": JobStatus.running,
    "succeeded": JobStatus.succeeded,
    "failed": JobStatus.failed,
    "cancelled": JobStatus.cancelled,
    "aborting": JobStatus.running,
    "aborted": JobStatus.cancelled,
}


def job_status(queue_status: str) -> JobStatus:
    """The status shown for a job, from the queue's own status."""
    try:
        return _QUEUE_STATUSES[queue_status]
    except KeyError:
        raise ValueError(f"unknown queue status {queue_status!r}") from None


@dataclass(frozen=True, slots=True)
class JobView:
    id: int
    task_name: str
    status: JobStatus
    percent: int
    message: str | None
    result: dict[str, Any] | None
    # Asked to stop but still running: the task has not reached a stopping point yet.
    cancel_requested: bool
    attempts: int
    created_at: datetime
    updated_at: datetime

    @property
    def finished(self) -> bool:
        return self.status in (JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled)


class UnknownTaskError(CarmentaError, LookupError):
    """No task of that name is registered with the job queue."""


class JobAlreadyQueuedError(CarmentaError):
    """A job with the same queueing lock is already waiting to run."""


def clamp_percent(percent: float) -> int:
    # Progress is advisory: a ratio that rounds to 100.4 must not fail the job.
    return max(0, min(100, round(percent)))


def storable_result(value: object) -> dict[str, Any] | None:
    """A task's return value as stored in job_progress.result (a JSON object).

    Objects are kept as they are, other JSON values are wrapped as {"value": ...}.
    A value JSON cannot represent is dropped with a warning rather than failing a
    job whose work is already done.
    """
    if value is None:
        return None
    stored = value if isinstance(value, dict) else {"value": value}
    try:
        json.dumps(stored, allow_nan=False)
    except (TypeError, ValueError):
        logger.warning(
            "a job result of type %s is not JSON; it is not stored", type(value).__name__
        )
        return None
    return stored


@asynccontextmanager
async def _transaction(session: AsyncSession | None) -> AsyncIterator[AsyncSession]:
    if session is not None:
        yield session
        return
    async with session_scope() as own_session:
        yield own_session


async def enqueue(
    *,
    task_name: str,
    task_kwargs: Mapping[str, Any] | None = None,
    owner_id: uuid.UUID | None = None,
    session: AsyncSession | None = None,
    delay_seconds: float = 0,
    lock: str | None = None,
    queueing_lock: str | None = None,
    priority: int | None = None,
) -> int:
    """Queue a run of the task `task_name` with `task_kwargs`; return the job id.

    `owner_id` is the user the job works for (None for system work); only they can
    see or cancel it. `lock`: jobs sharing it run one at a time. `queueing_lock`: at
    most one such job waits in the queue (JobAlreadyQueuedError otherwise). The task
    receives only `task_kwargs`; pass the owner there too if the task needs it.
    """
    schedule_at = datetime.now(UTC) + timedelta(seconds=delay_seconds) if delay_seconds else None
    async with _transaction(session) as active:
        connection = await driver_connection(active)
        try:
            deferrer = job_app.configure_task(
                task_name,
                allow_unknown=False,
                task_kwargs=dict(task_kwargs or {}),
                schedule_at=schedule_at,
                lock=lock,
                queueing_lock=queueing_lock,
                priority=priority,
                connection=connection,
            )
        except TaskNotFound:
            raise UnknownTaskError(f"no background task is named {task_name!r}") from None
        if queueing_lock is None:
            job_id = await deferrer.defer_async()
        else:
            # A refused insert would abort the caller's whole transaction; the
            # savepoint confines the failure to this job.
            try:
                async with active.begin_nested():
                    # The session emits its SAVEPOINT only once asked for a connection.
                    await active.connection()
                    job_id = await deferrer.defer_async()
            except AlreadyEnqueued:
                raise JobAlreadyQueuedError(
                    f"a {task_name} job with this queueing lock is already waiting"
                ) from None
        await active.exec(
            insert(JobProgress).values(job_id=job_id, owner_id=owner_id, task_name=task_name)
        )
    return job_id


async def report_progress(*, job_id: int, percent: float, message: str | None = None) -> None:
    """Record how far a running job is (0-100) and, optionally, what it is doing.

    Called from inside tasks with `context.job.id`; commits at once so pages see it.
    A job enqueued without this module (no progress row) is silently skipped.
    """
    async with session_scope() as session:
        await session.exec(
            text(
                "update job_progress set percent = :percent,"
                " message = coalesce(:message, message), updated_at = now()"
                " where job_id = :job_id"
            ),
            params={"percent": clamp_percent(percent), "message": message, "job_id": job_id},
        )


async def record_result(*, job_id: int, result: object) -> None:
    """Store what a job returned and mark it complete (the worker calls this)."""
    async with session_scope() as session:
        await session.exec(
            text(
                "update job_progress set percent = 100, result = :result, updated_at = now()"
                " where job_id = :job_id"
            ).bindparams(bindparam("result", type_=JSONB)),
            params={"result": storable_result(result), "job_id": job_id},
        )


_JOB_VIEW_SQL = text(
    """
    select j.id, j.task_name, j.status::text as queue_status, j.abort_requested,
           j.attempts, p.percent, p.message, p.result, p.created_at, p.updated_at
      from job_progress p
      join procrastinate_jobs j on j.id = p.job_id
     where p.job_id = :job_id and p.owner_id = :owner_id
    """
)


async def get_job(
    *, owner_id: uuid.UUID, job_id: int, session: AsyncSession | None = None
) -> JobView | None:
    """The job as its owner sees it; None if it does not exist or is not theirs."""
    async with _transaction(session) as active:
        result = await active.exec(_JOB_VIEW_SQL, params={"job_id": job_id, "owner_id": owner_id})
        row = result.mappings().first()
    if row is None:
        return None
    return JobView(
        id=row["id"],
        task_name=row["task_name"],
        status=job_status(row["queue_status"]),
        percent=row["percent"],
        message=row["message"],
        result=row["result"],
        cancel_requested=bool(row["abort_requested"]) and row["queue_status"] == "doing",
        attempts=row["attempts"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


async def cancel_job(
    *, owner_id: uuid.UUID, job_id: int, session: AsyncSession | None = None
) -> bool:
    """Cancel the owner's job: a queued job never runs, a running one is told to stop.

    Returns False when there is nothing to cancel: the job is finished, unknown, or
    someone else's. A running task stops at its next `await` (async tasks) or when it
    checks `context.should_abort()` (sync tasks).
    """
    async with _transaction(session) as active:
        owned = await active.exec(
            text("select 1 from job_progress where job_id = :job_id and owner_id = :owner_id"),
            params={"job_id": job_id, "owner_id": owner_id},
        )
        if owned.first() is None:
            return False
        connection = await driver_connection(active)
        return await job_app.job_manager.cancel_job_by_id_async(
            job_id, abort=True, connection=connection
        )


# Operators (the admin console) act on any job, whoever it is for; callers check
# that the person is an admin before calling these.


class JobActionError(CarmentaError):
    """A job cannot take this action in its current state."""


async def _queue_row(session: AsyncSession, job_id: int) -> Any:
    result = await session.exec(
        text(
            "select id, status::text as status, attempts from procrastinate_jobs"
            " where id = :job_id for update"
        ),
        params={"job_id": job_id},
    )
    return result.mappings().first()


async def retry_failed_job(*, session: AsyncSession, job_id: int) -> None:
    """Put a failed (or cancelled) job back in the queue to run again now."""
    row = await _queue_row(session, job_id)
    if row is None:
        raise JobActionError(f"there is no job {job_id}")
    if row["status"] not in ("failed", "cancelled", "aborted"):
        raise JobActionError(
            f"job {job_id} is {job_status(row['status']).value}; only failed or cancelled"
            " jobs can be retried"
        )
    await session.exec(
        text(
            "update procrastinate_jobs set status = 'todo', abort_requested = false,"
            " scheduled_at = now(), attempts = attempts + 1 where id = :job_id"
        ),
        params={"job_id": job_id},
    )
    await session.exec(
        text(
            "update job_progress set percent = 0, message = null, result = null,"
            " updated_at = now() where job_id = :job_id"
        ),
        params={"job_id": job_id},
    )


async def cancel_any_job(*, session: AsyncSession, job_id: int) -> None:
    """Cancel a queued job, or ask a running one to stop."""
    row = await _queue_row(session, job_id)
    if row is None:
        raise JobActionError(f"there is no job {job_id}")
    if row["status"] not in ("todo", "doing"):
        raise JobActionError(
            f"job {job_id} is {job_status(row['status']).value}; only queued or running"
            " jobs can be cancelled"
        )
    connection = await driver_connection(session)
    await job_app.job_manager.cancel_job_by_id_async(job_id, abort=True, connection=connection)
