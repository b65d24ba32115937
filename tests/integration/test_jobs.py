"""The durable job queue against a real PostgreSQL: run, follow, cancel, recover, restart."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from procrastinate import JobContext
from procrastinate.exceptions import JobAborted
from sqlalchemy.ext.asyncio import create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

from carmenta.db import dispose_engine, sqlalchemy_url
from carmenta.jobs import tasks as maintenance
from carmenta.jobs.queue import job_app, open_job_app
from carmenta.jobs.service import (
    JobAlreadyQueuedError,
    JobStatus,
    JobView,
    UnknownTaskError,
    cancel_job,
    enqueue,
    get_job,
    report_progress,
)
from carmenta.jobs.worker import run_worker
from carmenta.settings import PROJECT_ROOT
from tests.integration import job_worker_process as probe

WAIT_SECONDS = 60.0

# What the test tasks saw, keyed by a value unique to each test.
RUNS: dict[str, int] = {}
RELEASE: dict[str, asyncio.Event] = {}
SAW_ABORT: dict[str, bool] = {}


@job_app.task(name="tests.jobs.answer", pass_context=True)
async def answer(context: JobContext, *, key: str, hold: bool = False) -> dict[str, int]:
    RUNS[key] = RUNS.get(key, 0) + 1
    assert context.job.id is not None
    await report_progress(job_id=context.job.id, percent=40, message="halfway there")
    if hold:
        await RELEASE[key].wait()
    return {"answer": 42}


@job_app.task(name="tests.jobs.fail")
async def fail(*, key: str) -> None:
    RUNS[key] = RUNS.get(key, 0) + 1
    raise RuntimeError("this task always fails")


@job_app.task(name="tests.jobs.wait_for_cancel", pass_context=True)
async def wait_for_cancel(context: JobContext, *, key: str) -> None:
    RUNS[key] = RUNS.get(key, 0) + 1
    try:
        while True:
            await asyncio.sleep(0.05)
    except asyncio.CancelledError:
        SAW_ABORT[key] = context.should_abort()
        raise


@job_app.task(name="tests.jobs.sync_wait_for_cancel", pass_context=True)
def sync_wait_for_cancel(context: JobContext, *, key: str) -> None:
    RUNS[key] = RUNS.get(key, 0) + 1
    deadline = time.monotonic() + WAIT_SECONDS
    while not context.should_abort():
        if time.monotonic() > deadline:
            return
        time.sleep(0.05)
    SAW_ABORT[key] = True
    raise JobAborted("cancelled by its owner")


async def wait_until(
    condition: Callable[[], Awaitable[bool]], *, what: str, timeout: float = WAIT_SECONDS
) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(0.05)


async def wait_for_status(
    owner_id: uuid.UUID, job_id: int, status: JobStatus, session_factory=None
) -> JobView:
    seen: list[JobView | None] = [None]

    async def reached() -> bool:
        if session_factory is None:
            seen[0] = await get_job(owner_id=owner_id, job_id=job_id)
        else:
            async with session_factory() as session:
                seen[0] = await get_job(owner_id=owner_id, job_id=job_id, session=session)
        return seen[0] is not None and seen[0].status is status

    await wait_until(reached, what=f"job {job_id} to be {status.value} (last seen {seen[0]})")
    assert seen[0] is not None
    return seen[0]


def create_user(url: str) -> uuid.UUID:
    user_id = uuid.uuid4()
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(
            "insert into users (id, external_auth_id, auth_provider) values (%s, %s, 'builtin')",
            (user_id, f"jobs-test-{user_id}"),
        )
    return user_id


@pytest.fixture(scope="module")
async def owners(database_url: str) -> AsyncIterator[tuple[uuid.UUID, uuid.UUID]]:
    yield create_user(database_url), create_user(database_url)
    # The app's shared engine was created on first use by these tests.
    await dispose_engine()


@pytest.fixture
def key() -> str:
    return uuid.uuid4().hex


async def _start_worker(**options) -> asyncio.Task[None]:
    task = asyncio.create_task(run_worker(concurrency=4, **options))
    await asyncio.sleep(0)
    return task


async def _stop_worker(task: asyncio.Task[None]) -> None:
    task.cancel()
    done, _ = await asyncio.wait([task], timeout=WAIT_SECONDS)
    assert done, "the worker did not stop"
    if not task.cancelled() and task.exception() is not None:
        raise task.exception()  # type: ignore[misc]


@pytest.fixture
async def worker(owners) -> AsyncIterator[asyncio.Task[None]]:
    task = await _start_worker(shutdown_grace_seconds=2)
    yield task
    await _stop_worker(task)


async def test_a_job_runs_once_and_records_its_result(owners, worker, key):
    owner, _ = owners
    job_id = await enqueue(task_name="tests.jobs.answer", task_kwargs={"key": key}, owner_id=owner)

    view = await wait_for_status(owner, job_id, JobStatus.succeeded)

    assert view.result == {"answer": 42}
    assert view.percent == 100
    assert view.message == "halfway there"
    assert view.task_name == "tests.jobs.answer"
    assert RUNS[key] == 1


async def test_progress_reported_mid_run_is_visible(owners, worker, key):
    owner, _ = owners
    RELEASE[key] = asyncio.Event()
    job_id = await enqueue(
        task_name="tests.jobs.answer", task_kwargs={"key": key, "hold": True}, owner_id=owner
    )

    running = await wait_for_status(owner, job_id, JobStatus.running)
    await wait_until(lambda: _percent_is(owner, job_id, 40), what="progress to reach 40 %")
    midway = await get_job(owner_id=owner, job_id=job_id)
    RELEASE[key].set()
    done = await wait_for_status(owner, job_id, JobStatus.succeeded)

    assert running.result is None
    assert midway is not None and midway.status is JobStatus.running
    assert (midway.percent, midway.message) == (40, "halfway there")
    assert (done.percent, done.result) == (100, {"answer": 42})


async def _percent_is(owner: uuid.UUID, job_id: int, percent: int) -> bool:
    view = await get_job(owner_id=owner, job_id=job_id)
    return view is not None and view.percent == percent


async def test_a_failing_task_ends_failed(owners, worker, key):
    owner, _ = owners
    job_id = await enqueue(task_name="tests.jobs.fail", task_kwargs={"key": key}, owner_id=owner)

    view = await wait_for_status(owner, job_id, JobStatus.failed)

    assert view.result is None
    assert RUNS[key] == 1


async def test_cancelling_a_queued_job_prevents_it_from_running(owners, key):
    owner, _ = owners
    job_id = await enqueue(task_name="tests.jobs.answer", task_kwargs={"key": key}, owner_id=owner)

    assert await cancel_job(owner_id=owner, job_id=job_id) is True
    assert (await get_job(owner_id=owner, job_id=job_id)).status is JobStatus.cancelled

    # A worker now drains the queue: a later job runs, the cancelled one never does.
    later_key = uuid.uuid4().hex
    later = await enqueue(
        task_name="tests.jobs.answer", task_kwargs={"key": later_key}, owner_id=owner
    )
    task = await _start_worker()
    try:
        await wait_for_status(owner, later, JobStatus.succeeded)
    finally:
        await _stop_worker(task)
    assert key not in RUNS
    assert (await get_job(owner_id=owner, job_id=job_id)).status is JobStatus.cancelled
    assert await cancel_job(owner_id=owner, job_id=job_id) is False


@pytest.mark.parametrize(
    "task_name", ["tests.jobs.wait_for_cancel", "tests.jobs.sync_wait_for_cancel"]
)
async def test_cancelling_a_running_job_aborts_it(owners, worker, key, task_name):
    owner, _ = owners
    job_id = await enqueue(task_name=task_name, task_kwargs={"key": key}, owner_id=owner)
    await wait_for_status(owner, job_id, JobStatus.running)

    assert await cancel_job(owner_id=owner, job_id=job_id) is True
    view = await wait_for_status(owner, job_id, JobStatus.cancelled)

    assert SAW_ABORT[key] is True
    assert RUNS[key] == 1
    assert view.cancel_requested is False  # it has stopped, nothing is pending


async def test_another_user_can_neither_see_nor_cancel_a_job(owners, key):
    owner, stranger = owners
    job_id = await enqueue(task_name="tests.jobs.answer", task_kwargs={"key": key}, owner_id=owner)
    system_job: int | None = None
    try:
        assert await get_job(owner_id=stranger, job_id=job_id) is None
        assert await cancel_job(owner_id=stranger, job_id=job_id) is False
        view = await get_job(owner_id=owner, job_id=job_id)
        assert view is not None and view.status is JobStatus.queued
        # System jobs (no owner) are nobody's to see either.
        system_job = await enqueue(task_name="tests.jobs.answer", task_kwargs={"key": key})
        assert await get_job(owner_id=owner, job_id=system_job) is None
        assert await cancel_job(owner_id=owner, job_id=system_job) is False
        assert await get_job(owner_id=owner, job_id=10**15) is None
    finally:
        await cancel_job(owner_id=owner, job_id=job_id)
        if system_job is not None:
            async with open_job_app() as app:
                await app.job_manager.cancel_job_by_id_async(system_job)


async def test_a_running_job_interrupted_by_shutdown_runs_again_after_restart(owners, key):
    owner, _ = owners
    RELEASE[key] = asyncio.Event()
    job_id = await enqueue(
        task_name="tests.jobs.answer", task_kwargs={"key": key, "hold": True}, owner_id=owner
    )
    first = await _start_worker(shutdown_grace_seconds=0.2)
    await wait_for_status(owner, job_id, JobStatus.running)
    await _stop_worker(first)

    # Interrupted, not lost: back in the queue.
    assert (await get_job(owner_id=owner, job_id=job_id)).status is JobStatus.queued
    assert RUNS[key] == 1

    RELEASE[key].set()
    second = await _start_worker()
    try:
        view = await wait_for_status(owner, job_id, JobStatus.succeeded)
    finally:
        await _stop_worker(second)
    assert RUNS[key] == 2
    assert view.result == {"answer": 42}


async def test_enqueue_joins_the_callers_transaction(owners, async_engine, key):
    owner, _ = owners
    async with AsyncSession(async_engine) as session:
        job_id = await enqueue(
            task_name="tests.jobs.answer", task_kwargs={"key": key}, owner_id=owner, session=session
        )
        view = await get_job(owner_id=owner, job_id=job_id, session=session)
        assert view is not None and view.status is JobStatus.queued
        await session.rollback()

    assert await get_job(owner_id=owner, job_id=job_id) is None
    with psycopg.connect(os.environ["DATABASE_URL"]) as connection:
        left = connection.execute(
            "select (select count(*) from procrastinate_jobs where id = %s),"
            " (select count(*) from job_progress where job_id = %s)",
            (job_id, job_id),
        ).fetchone()
    assert left == (0, 0)


async def test_a_queueing_lock_refuses_a_second_waiting_job_without_spoiling_the_transaction(
    owners, async_engine, key
):
    owner, _ = owners
    async with AsyncSession(async_engine) as session:
        first = await enqueue(
            task_name="tests.jobs.answer",
            task_kwargs={"key": key},
            owner_id=owner,
            queueing_lock=key,
            session=session,
        )
        with pytest.raises(JobAlreadyQueuedError):
            await enqueue(
                task_name="tests.jobs.answer",
                task_kwargs={"key": key},
                owner_id=owner,
                queueing_lock=key,
                session=session,
            )
        assert await cancel_job(owner_id=owner, job_id=first, session=session) is True
        await session.commit()
    assert (await get_job(owner_id=owner, job_id=first)).status is JobStatus.cancelled


async def test_enqueueing_an_unknown_task_is_refused(owners):
    owner, _ = owners
    with pytest.raises(UnknownTaskError):
        await enqueue(task_name="tests.jobs.no_such_task", owner_id=owner)


async def test_recovery_requeues_jobs_of_dead_workers(owners, database_url):
    owner, _ = owners
    keys = [uuid.uuid4().hex for _ in range(3)]
    requeue, cancelled, crashing = [
        await enqueue(task_name="tests.jobs.answer", task_kwargs={"key": k}, owner_id=owner)
        for k in keys
    ]
    with psycopg.connect(database_url, autocommit=True) as connection:
        dead_worker = connection.execute(
            "insert into procrastinate_workers (last_heartbeat)"
            " values (now() - interval '1 hour') returning id"
        ).fetchone()[0]
        connection.execute(
            "update procrastinate_jobs set status = 'doing', worker_id = %s where id = any(%s)",
            (dead_worker, [requeue, cancelled, crashing]),
        )
        connection.execute(
            "update procrastinate_jobs set abort_requested = true where id = %s", (cancelled,)
        )
        connection.execute(
            "update procrastinate_jobs set attempts = %s where id = %s",
            (maintenance.MAX_STALLED_ATTEMPTS - 1, crashing),
        )

    async with open_job_app() as app:
        outcome = await maintenance.recover_stalled_jobs(app=app)

    assert requeue in outcome["requeued"]
    assert cancelled in outcome["aborted"]
    assert crashing in outcome["failed"]
    requeued_view = await get_job(owner_id=owner, job_id=requeue)
    assert (requeued_view.status, requeued_view.attempts) == (JobStatus.queued, 1)
    assert (await get_job(owner_id=owner, job_id=cancelled)).status is JobStatus.cancelled
    assert (await get_job(owner_id=owner, job_id=crashing)).status is JobStatus.failed
    with psycopg.connect(database_url) as connection:
        assert connection.execute(
            "select count(*) from procrastinate_workers where id = %s", (dead_worker,)
        ).fetchone() == (0,)
    await cancel_job(owner_id=owner, job_id=requeue)


def test_maintenance_tasks_are_scheduled():
    schedules = {
        task_name: periodic.cron
        for (task_name, _), periodic in job_app.periodic_registry.periodic_tasks.items()
    }
    assert schedules == {
        "maintenance.retry_stalled_jobs": "* * * * *",
        "maintenance.purge_expired_oauth_states": "*/15 * * * *",
        "maintenance.delete_old_jobs": "17 3 * * *",
        "connections.refresh_expiring_tokens": "*/5 * * * *",
        "files.sweep_orphans": "23 * * * *",
        "knowledge.embed_chunks": "* * * * *",
        "chat.interrupt_stale_replies": "* * * * *",
        "exports.purge_expired": "41 * * * *",
    }
    assert job_app.tasks["maintenance.retry_stalled_jobs"].queueing_lock


async def test_purging_oauth_states_removes_only_expired_ones(owners, database_url):
    owner, _ = owners
    with psycopg.connect(database_url, autocommit=True) as connection:
        for state, expires in (
            ("expired-long-ago", "now() - interval '1 day'"),
            ("just-expired", "now() - interval '1 second'"),
            ("still-valid", "now() + interval '10 minutes'"),
        ):
            connection.execute(
                "insert into oauth_states (owner_id, state_hash, provider, expires_at)"
                f" values (%s, %s, 'slack', {expires})",
                (owner, f"{state}-{owner}"),
            )

    deleted = await maintenance.purge_expired_oauth_states()

    with psycopg.connect(database_url) as connection:
        left = connection.execute(
            "select state_hash from oauth_states where owner_id = %s", (owner,)
        ).fetchall()
    assert deleted >= 2
    assert left == [(f"still-valid-{owner}",)]


async def test_deleting_old_jobs_removes_finished_jobs_and_their_progress(
    owners, worker, database_url, key
):
    owner, _ = owners
    finished = await enqueue(
        task_name="tests.jobs.answer", task_kwargs={"key": key}, owner_id=owner
    )
    await wait_for_status(owner, finished, JobStatus.succeeded)
    waiting = await enqueue(
        task_name="tests.jobs.answer", task_kwargs={"key": key}, owner_id=owner, delay_seconds=3600
    )

    async with open_job_app() as app:
        await maintenance.delete_finished_jobs(app=app, older_than_hours=0)

    assert await get_job(owner_id=owner, job_id=finished) is None
    assert (await get_job(owner_id=owner, job_id=waiting)).status is JobStatus.queued
    with psycopg.connect(database_url) as connection:
        assert connection.execute(
            "select count(*) from job_progress where job_id = %s", (finished,)
        ).fetchone() == (0,)
    await cancel_job(owner_id=owner, job_id=waiting)


# --- Restarts of real worker processes (`python -m carmenta worker`'s code path) ---


class WorkerProcess:
    """One `carmenta.jobs.worker.main()` process with the probe task, logging to a file."""

    def __init__(self, database_url: str, log_path: Path) -> None:
        self.log_path = log_path
        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "JOB_WORKER_CONCURRENCY": "2",
            "LOG_LEVEL": "info",
            "PYTHONUNBUFFERED": "1",
        }
        self._log = log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.integration.job_worker_process"],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    async def exit_code(self, timeout: float = WAIT_SECONDS) -> int:
        deadline = time.monotonic() + timeout
        while self.process.poll() is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"worker {self.pid} did not exit within {timeout:.0f} s")
            await asyncio.sleep(0.05)
        return self.process.returncode

    def stop_now(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self._log.close()


@pytest.fixture(scope="module")
def restart_database(postgres_server) -> Iterator[str]:
    # A database of their own, so only these worker processes see these jobs.
    with postgres_server.throwaway_database() as url:
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute(probe.PROBE_TABLE_SQL)
        yield url


@pytest.fixture
async def restart_session(restart_database) -> AsyncIterator[Callable[[], AsyncSession]]:
    engine = create_async_engine(sqlalchemy_url(restart_database))
    yield lambda: AsyncSession(engine, expire_on_commit=False)
    await engine.dispose()


@pytest.fixture
def worker_processes(tmp_path) -> Iterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    yield started
    for process in started:
        process.stop_now()


def _probe_events(url: str, probe_id: str) -> list[tuple[str, int]]:
    with psycopg.connect(url) as connection:
        return connection.execute(
            "select event, pid from job_restart_probe where probe_id = %s order by id", (probe_id,)
        ).fetchall()


def _live_worker_count(url: str) -> int:
    with psycopg.connect(url) as connection:
        return connection.execute("select count(*) from procrastinate_workers").fetchone()[0]


async def _enqueue_probe(session_factory, owner: uuid.UUID, probe_id: str, flag: Path) -> int:
    async with session_factory() as session:
        job_id = await enqueue(
            task_name=probe.PROBE_TASK,
            task_kwargs={"probe_id": probe_id, "flag_path": str(flag)},
            owner_id=owner,
            session=session,
        )
        await session.commit()
    return job_id


def _dump_logs(processes: list[WorkerProcess]) -> str:
    return "\n".join(
        f"--- worker {p.pid} ---\n{p.log_path.read_text(errors='replace')[-4000:]}"
        for p in processes
    )


async def test_a_job_survives_a_worker_crash_and_completes_exactly_once(
    restart_database, restart_session, worker_processes, tmp_path
):
    owner = create_user(restart_database)
    probe_id = uuid.uuid4().hex
    flag = tmp_path / "finish.flag"
    job_id = await _enqueue_probe(restart_session, owner, probe_id, flag)

    try:
        crashed = WorkerProcess(restart_database, tmp_path / "crashed.log")
        worker_processes.append(crashed)
        await wait_for_status(owner, job_id, JobStatus.running, restart_session)
        await wait_until(
            lambda: asyncio.to_thread(lambda: len(_probe_events(restart_database, probe_id)) == 1),
            what="the probe to start",
        )
        crashed.signal(signal.SIGKILL)
        assert await crashed.exit_code() == -signal.SIGKILL

        restarted = WorkerProcess(restart_database, tmp_path / "restarted.log")
        worker_processes.append(restarted)
        flag.touch()
        view = await wait_for_status(owner, job_id, JobStatus.succeeded, restart_session)

        events = _probe_events(restart_database, probe_id)
        assert events == [
            ("started", crashed.pid),
            ("started", restarted.pid),
            ("completed", restarted.pid),
        ]
        assert view.result == {"probe_id": probe_id, "pid": restarted.pid}
        assert view.percent == 100
        assert view.attempts == 2

        restarted.signal(signal.SIGTERM)
        assert await restarted.exit_code(timeout=20) == 0
    except BaseException:
        print(_dump_logs(worker_processes))
        raise


async def test_an_idle_worker_stops_gracefully_and_a_new_one_runs_queued_jobs_once(
    restart_database, restart_session, worker_processes, tmp_path
):
    owner = create_user(restart_database)
    before = await asyncio.to_thread(_live_worker_count, restart_database)
    try:
        idle = WorkerProcess(restart_database, tmp_path / "idle.log")
        worker_processes.append(idle)
        await wait_until(
            lambda: asyncio.to_thread(lambda: _live_worker_count(restart_database) > before),
            what="the worker to register",
        )
        idle.signal(signal.SIGTERM)
        assert await idle.exit_code(timeout=20) == 0
        # A graceful stop removes the worker's row: nothing is left for recovery.
        assert await asyncio.to_thread(_live_worker_count, restart_database) == before

        probe_id = uuid.uuid4().hex
        flag = tmp_path / "finish.flag"
        flag.touch()
        job_id = await _enqueue_probe(restart_session, owner, probe_id, flag)
        async with restart_session() as session:
            queued = await get_job(owner_id=owner, job_id=job_id, session=session)
        assert queued is not None and queued.status is JobStatus.queued

        fresh = WorkerProcess(restart_database, tmp_path / "fresh.log")
        worker_processes.append(fresh)
        await wait_for_status(owner, job_id, JobStatus.succeeded, restart_session)
        assert _probe_events(restart_database, probe_id) == [
            ("started", fresh.pid),
            ("completed", fresh.pid),
        ]
        fresh.signal(signal.SIGINT)
        assert await fresh.exit_code(timeout=20) == 0
    except BaseException:
        print(_dump_logs(worker_processes))
        raise


@pytest.mark.parametrize(("mode", "runs"), [("external", False), ("inline", True)])
async def test_the_web_app_lifespan_runs_jobs_only_in_inline_mode(
    owners, monkeypatch, key, mode, runs
):
    from carmenta.jobs.worker import inline_worker_lifespan
    from carmenta.settings import reset_settings_cache

    owner, _ = owners
    monkeypatch.setenv("JOB_WORKER", mode)
    reset_settings_cache()
    try:
        job_id = await enqueue(
            task_name="tests.jobs.answer", task_kwargs={"key": key}, owner_id=owner
        )
        async with inline_worker_lifespan():
            if runs:
                await wait_for_status(owner, job_id, JobStatus.succeeded)
            else:
                await asyncio.sleep(1)
                assert (await get_job(owner_id=owner, job_id=job_id)).status is JobStatus.queued
        assert RUNS.get(key, 0) == (1 if runs else 0)
    finally:
        monkeypatch.delenv("JOB_WORKER")
        reset_settings_cache()
        await cancel_job(owner_id=owner, job_id=job_id)
