"""Running background jobs: inside the web app, or as separate worker processes.

Inside the web app (the embedded default, JOB_WORKER=inline), register the lifespan
task once where the Reflex app is created:

    from carmenta.jobs.worker import inline_worker_lifespan

    app.register_lifespan_task(inline_worker_lifespan)

It starts a worker beside the web server when `settings.job_worker` is `inline`, does
nothing otherwise, and stops the worker when the server shuts down. Should the worker
stop on its own (database unreachable, say) it is started again after a pause, so the
site keeps serving meanwhile.

As separate processes (production: JOB_WORKER=external for the web app), run

    python -m carmenta worker          # calls carmenta.jobs.worker.main()

as many times as needed, on any machine that reaches the database. SIGTERM or SIGINT
stops a worker gracefully: it takes no new job and lets running ones finish for up to
SHUTDOWN_GRACE_SECONDS; jobs still running then are interrupted and put back in the
queue for another worker. A second signal stops at once; jobs it leaves behind are
requeued by stalled-job recovery (see carmenta.jobs.queue for the timings).

Both paths run `run_worker()`, which can also be awaited directly (tests do).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from procrastinate import App, BaseRetryStrategy, JobContext, RetryDecision
from procrastinate.exceptions import ConnectorException, JobAborted, JobRetry
from procrastinate.job_context import AbortReason
from procrastinate.jobs import Job

from carmenta.db import configured_database_url, describe_url, dispose_engine
from carmenta.errors import CarmentaError, DatabaseUnavailableError, StartupError
from carmenta.jobs.queue import (
    HEARTBEAT_INTERVAL_SECONDS,
    STALLED_WORKER_TIMEOUT_SECONDS,
    open_job_app,
)
from carmenta.jobs.service import record_result
from carmenta.jobs.tasks import recover_stalled_jobs
from carmenta.observability.logs import configure_logging, log_context
from carmenta.settings import JobWorkerMode, get_settings

logger = logging.getLogger(__name__)

# How long a stopping worker lets running jobs finish before interrupting them. Below
# the 10 s that `docker stop` waits before killing, so interrupted jobs are requeued
# cleanly rather than left for stalled-job recovery.
SHUTDOWN_GRACE_SECONDS = 8.0

# Pauses before an inline worker that stopped on its own is started again.
INLINE_RESTART_DELAYS_SECONDS = (5.0, 15.0, 30.0, 60.0)
INLINE_HEALTHY_RUN_SECONDS = 300.0


class WorkerStoppedError(CarmentaError):
    """The worker stopped without being asked to."""


class JobInterruptedByShutdown(Exception):
    """A job was stopped because its worker was shutting down, not because it failed."""


class _RequeueInterruptedJobs(BaseRetryStrategy):
    """Wraps a task's retry strategy so shutdowns never lose a job.

    A job interrupted by its worker's shutdown goes straight back to the queue; a job
    its owner cancelled is never retried, whatever the task's own strategy says.
    """

    def __init__(self, inner: BaseRetryStrategy | None) -> None:
        self.inner = inner

    def get_retry_exception(self, exception: BaseException, job: Job) -> JobRetry | None:
        if isinstance(exception, JobInterruptedByShutdown):
            return JobRetry(RetryDecision(retry_at=None))
        if isinstance(exception, asyncio.CancelledError | JobAborted):
            return None
        if self.inner is None:
            return None
        return self.inner.get_retry_exception(exception=exception, job=job)


def _requeue_interrupted_jobs(app: App) -> None:
    for task in set(app.tasks.values()):
        if not isinstance(task.retry_strategy, _RequeueInterruptedJobs):
            task.retry_strategy = _RequeueInterruptedJobs(task.retry_strategy)


async def _track_job(
    call_next: Callable[[], Awaitable[Any]], context: JobContext, worker: Any
) -> Any:
    """Every job: store its result when it succeeds; mark shutdown interruptions."""
    try:
        # Lines the job logs say which job (and task) they came from.
        with log_context(job_id=str(context.job.id), job_task=context.job.task_name):
            result = await call_next()
    except (asyncio.CancelledError, JobAborted) as error:
        if context.abort_reason() is AbortReason.SHUTDOWN:
            raise JobInterruptedByShutdown(
                f"job {context.job.id} interrupted by shutdown"
            ) from error
        raise
    if context.job.id is not None:
        await record_result(job_id=context.job.id, result=result)
    return result


async def _recover_once_workers_look_dead(app: App) -> None:
    # A worker killed just before this one started still has a fresh heartbeat, so the
    # first recovery skips its jobs. Once the timeout has passed since this start it
    # is certainly stale (its last beat predates the start), so look once more.
    await asyncio.sleep(STALLED_WORKER_TIMEOUT_SECONDS + 1)
    try:
        await recover_stalled_jobs(app=app)
    except Exception:
        logger.exception("stalled job recovery failed; the periodic recovery will retry")


async def run_worker(
    *,
    concurrency: int | None = None,
    queues: Sequence[str] | None = None,
    name: str | None = None,
    shutdown_grace_seconds: float = SHUTDOWN_GRACE_SECONDS,
) -> None:
    """Run jobs until cancelled; cancelling stops gracefully (see the module docstring).

    `concurrency` defaults to settings.job_worker_concurrency, `queues` to all queues.
    Returns without being cancelled only if the worker stopped itself (lost database).
    """
    settings = get_settings()
    async with open_job_app() as app:
        app.perform_import_paths()
        _requeue_interrupted_jobs(app)
        # Jobs left running by a worker that died are queued again before work starts.
        await recover_stalled_jobs(app=app)
        follow_up = asyncio.create_task(
            _recover_once_workers_look_dead(app), name="carmenta-stalled-job-recovery"
        )
        try:
            await app.run_worker_async(
                concurrency=concurrency or settings.job_worker_concurrency,
                queues=list(queues) if queues else None,
                name=name or f"worker-{os.getpid()}",
                install_signal_handlers=False,
                update_heartbeat_interval=HEARTBEAT_INTERVAL_SECONDS,
                stalled_worker_timeout=STALLED_WORKER_TIMEOUT_SECONDS,
                shutdown_graceful_timeout=shutdown_grace_seconds,
                worker_middleware=[_track_job],
            )
        finally:
            follow_up.cancel()
            await asyncio.wait([follow_up])


async def _keep_inline_worker_running() -> None:
    failures = 0
    while True:
        started = time.monotonic()
        try:
            await run_worker()
            logger.error("the in-process job worker stopped on its own")
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("the in-process job worker failed")
        if time.monotonic() - started > INLINE_HEALTHY_RUN_SECONDS:
            failures = 0  # a worker that ran for a while earns a quick restart again
        delay = INLINE_RESTART_DELAYS_SECONDS[min(failures, len(INLINE_RESTART_DELAYS_SECONDS) - 1)]
        failures += 1
        logger.info("starting the in-process job worker again in %.0f s", delay)
        await asyncio.sleep(delay)


_inline_worker: asyncio.Task | None = None


def stop_inline_worker() -> None:
    """The server is going down: the in-process worker takes no new job from now on.

    Running jobs get SHUTDOWN_GRACE_SECONDS to finish (the lifespan's exit waits for
    them); others stay queued for the remaining instances' workers.
    """
    if _inline_worker is not None and not _inline_worker.done():
        _inline_worker.cancel()


@asynccontextmanager
async def inline_worker_lifespan() -> AsyncIterator[None]:
    """Reflex lifespan task: a job worker inside the web process when JOB_WORKER=inline."""
    global _inline_worker
    if get_settings().job_worker is not JobWorkerMode.inline:
        logger.info("background jobs run in separate worker processes (JOB_WORKER=external)")
        yield
        return
    worker = asyncio.create_task(_keep_inline_worker_running(), name="carmenta-inline-worker")
    _inline_worker = worker
    try:
        yield
    finally:
        worker.cancel()
        await asyncio.wait([worker])
        _inline_worker = None


async def _run_until_signalled() -> None:
    loop = asyncio.get_running_loop()
    worker = asyncio.create_task(run_worker(), name="carmenta-worker")
    signals_received = 0

    def stop(signum: signal.Signals) -> None:
        nonlocal signals_received
        signals_received += 1
        if signals_received == 1:
            logger.info(
                "%s received: finishing running jobs (up to %.0f s), then stopping; "
                "send it again to stop at once",
                signum.name,
                SHUTDOWN_GRACE_SECONDS,
            )
        else:
            logger.warning("%s received again: stopping now", signum.name)
        worker.cancel()

    handled: list[signal.Signals] = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, stop, signum)
            handled.append(signum)
        except (NotImplementedError, RuntimeError):  # no signal support on this platform
            pass
    try:
        await worker
    except asyncio.CancelledError:
        if signals_received == 0:
            raise
    except (psycopg.Error, ConnectorException) as error:
        raise _explain_database_error(error) from error
    finally:
        for signum in handled:
            loop.remove_signal_handler(signum)
        await dispose_engine()
    if signals_received == 0:
        raise WorkerStoppedError(
            "the job worker stopped on its own, most likely because it lost its database "
            "connection; the log above says why"
        )


def _explain_database_error(error: Exception) -> CarmentaError:
    # The queue wraps driver errors; the driver's own class says what went wrong.
    cause = error.__cause__ if isinstance(error, ConnectorException) else error
    if isinstance(cause, psycopg.errors.UndefinedTable | psycopg.errors.UndefinedFunction):
        return StartupError(
            "the database has no job queue tables: apply the migrations first "
            "(python -m carmenta migrate)"
        )
    return DatabaseUnavailableError(
        "the job worker cannot use the database at "
        f"{describe_url(configured_database_url())} ({type(cause).__name__}). "
        "Check DATABASE_URL and that PostgreSQL is running."
    )


def main() -> None:
    """`python -m carmenta worker`: run jobs until SIGTERM or SIGINT."""
    settings = get_settings()
    configure_logging(settings)
    logger.info(
        "job worker starting (concurrency %s, process %s)",
        settings.job_worker_concurrency,
        os.getpid(),
    )
    asyncio.run(_run_until_signalled())
    logger.info("job worker stopped")
