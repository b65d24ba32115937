"""Job queue logic that needs no database: statuses, results, retries, schedules."""

from __future__ import annotations

import asyncio
import math

import pytest
from croniter import croniter
from procrastinate import RetryStrategy
from procrastinate.exceptions import JobAborted
from procrastinate.jobs import Job, Status

from carmenta.jobs import queue, tasks
from carmenta.jobs.service import JobStatus, clamp_percent, job_status, storable_result
from carmenta.jobs.worker import (
    SHUTDOWN_GRACE_SECONDS,
    JobInterruptedByShutdown,
    _RequeueInterruptedJobs,
)


def _job(attempts: int = 0) -> Job:
    return Job(
        id=1, queue="default", lock=None, queueing_lock=None, task_name="t", attempts=attempts
    )


def test_every_queue_status_maps_to_a_status_people_understand():
    assert {status.value: job_status(status.value) for status in Status} == {
        "todo": JobStatus.queued,
        "doing": JobStatus.running,
        "succeeded": JobStatus.succeeded,
        "failed": JobStatus.failed,
        "cancelled": JobStatus.cancelled,
        "aborting": JobStatus.running,
        "aborted": JobStatus.cancelled,
    }


def test_an_unknown_queue_status_is_an_error():
    with pytest.raises(ValueError):
        job_status("exploded")


@pytest.mark.parametrize(
    ("given", "stored"), [(-5, 0), (0, 0), (39.6, 40), (100.4, 100), (250, 100)]
)
def test_progress_is_kept_between_0_and_100(given, stored):
    assert clamp_percent(given) == stored


def test_results_are_stored_as_json_objects():
    assert storable_result(None) is None
    assert storable_result({"pages": 3}) == {"pages": 3}
    assert storable_result([1, 2]) == {"value": [1, 2]}
    assert storable_result("done") == {"value": "done"}
    # Not representable in JSON: dropped rather than failing finished work.
    assert storable_result({"when": object()}) is None
    assert storable_result(math.nan) is None


def test_a_job_interrupted_by_shutdown_is_requeued_even_without_a_retry_strategy():
    strategy = _RequeueInterruptedJobs(None)
    retry = strategy.get_retry_exception(JobInterruptedByShutdown("x"), _job())
    assert retry is not None and retry.retry_decision.retry_at is None
    assert strategy.get_retry_exception(RuntimeError("boom"), _job()) is None


def test_a_cancelled_job_is_never_retried_whatever_the_task_strategy():
    strategy = _RequeueInterruptedJobs(RetryStrategy(max_attempts=10))
    assert strategy.get_retry_exception(asyncio.CancelledError(), _job()) is None
    assert strategy.get_retry_exception(JobAborted(), _job()) is None
    # Ordinary failures still follow the task's own strategy.
    assert strategy.get_retry_exception(RuntimeError("boom"), _job(attempts=1)) is not None
    assert strategy.get_retry_exception(RuntimeError("boom"), _job(attempts=10)) is None


def test_schedules_are_valid_cron_expressions():
    for cron in (
        tasks.RETRY_STALLED_JOBS_CRON,
        tasks.PURGE_OAUTH_STATES_CRON,
        tasks.DELETE_OLD_JOBS_CRON,
    ):
        assert croniter.is_valid(cron), cron


def test_worker_timings_hold_together():
    # Three missed heartbeats before a worker counts as dead: one slow beat is no crash.
    assert queue.STALLED_WORKER_TIMEOUT_SECONDS >= 3 * queue.HEARTBEAT_INTERVAL_SECONDS
    # A restarted worker requeues a crashed worker's job well within a minute.
    assert queue.STALLED_WORKER_TIMEOUT_SECONDS + 1 < 60
    # Running jobs are handed back before `docker stop` (10 s) kills the process.
    assert SHUTDOWN_GRACE_SECONDS < 10


def test_importing_the_queue_opens_no_connection():
    assert queue.job_app.connector._async_pool is None  # type: ignore[attr-defined]
    assert "carmenta.jobs.tasks" in queue.job_app.import_paths


def test_the_inline_worker_is_an_async_context_manager_reflex_can_enter():
    import contextlib
    import inspect

    from carmenta.jobs.worker import inline_worker_lifespan

    # Reflex enters lifespan tasks that return this type and passes no arguments.
    assert not inspect.signature(inline_worker_lifespan).parameters
    manager = inline_worker_lifespan()
    assert isinstance(manager, contextlib._AsyncGeneratorContextManager)
