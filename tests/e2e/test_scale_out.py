"""Two app instances behind one load balancer, sharing PostgreSQL and Redis.

Each instance is a real `python -m carmenta run` with its own DATA_DIR (so nothing is
shared through the disk by accident); they share DATABASE_URL, REDIS_URL and the
secrets the README says must be shared. A round-robin proxy stands in front. The
tests talk to one instance or the other directly to choose who serves what, and
through the proxy as a visitor would. The last test stops one instance with SIGTERM
while it writes a reply.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import reflex as rx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy.ext.asyncio import create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

from carmenta.db import sqlalchemy_url
from carmenta.jobs import service as jobs_service
from carmenta.jobs.queue import HEARTBEAT_INTERVAL_SECONDS
from carmenta.memory import tasks as memory_tasks
from carmenta.settings import PROJECT_ROOT
from carmenta.state.auth_forms import SignUpState
from carmenta.state.chat import ChatState
from carmenta.state.session import SessionState
from tests.e2e.conftest import E2E_MODEL, _wait_for_health
from tests.e2e.event_client import call_handler
from tests.local_server import free_port
from tests.model_servers import ModelServer, ModelServerState, echo_words
from tests.redis_server import RedisServer
from tests.round_robin_proxy import RoundRobinProxy

SIGN_UP = f"{SignUpState.get_full_name()}.submit"
REQUIRE_SIGN_IN = f"{SessionState.get_full_name()}.require_sign_in"
HYDRATE = f"{rx.State.get_full_name()}.hydrate"
CHAT_SEND = f"{ChatState.get_full_name()}.send"
CHAT_LOAD = f"{ChatState.get_full_name()}.load"

# How often a live job worker writes its heartbeat.
WORKER_HEARTBEAT_SECONDS = HEARTBEAT_INTERVAL_SECONDS
# The interface is built for the proxy's address; a stable port lets runs reuse it.
PREFERRED_PROXY_PORT = int(os.environ.get("SCALE_PROXY_PORT", "3960"))
# SIGTERM to exit: replies saved at once, the job worker's grace is 8 s.
SHUTDOWN_BOUND_SECONDS = 20

# Its own app instances, built for the proxy's address: after the shared e2e app's tests.
pytestmark = pytest.mark.own_app


@dataclass
class Instance:
    name: str
    port: int
    process: subprocess.Popen
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class Cluster:
    proxy: RoundRobinProxy
    instances: list[Instance]
    database_url: str
    model: ModelServer
    redis: RedisServer


@dataclass
class Person:
    email: str
    cookie: str


def _call(**kwargs: Any) -> list[dict]:
    # Other e2e tests keep an event loop running in this thread; use another.
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, call_handler(**kwargs)).result()


def _values_sent(updates: list[dict], field: str) -> list:
    """Every value the server sent for a state field (delta keys carry a suffix)."""
    values = []
    for update in updates:
        for substate in (update.get("delta") or {}).values():
            for key, value in substate.items():
                if key == field or key.startswith(field + "_rx_state"):
                    values.append(value)
    return values


def _without_field(updates: list[dict], field: str) -> list[dict]:
    """The updates with every value of one state field left out."""
    return [
        {
            **update,
            "delta": {
                name: {
                    key: value
                    for key, value in substate.items()
                    if key != field and not key.startswith(field + "_rx_state")
                }
                for name, substate in (update.get("delta") or {}).items()
            },
        }
        for update in updates
    ]


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _sign_in_codes(updates: list[dict]) -> list[str]:
    # The page is told to trade a one-time code for its cookie at /auth/session.
    return [
        match.group(1)
        for text in _strings(updates)
        if (match := re.search(r'code: "([^"]+)"', text))
    ]


def _assistant_states(updates: list[dict]) -> list[tuple[str, str]]:
    """(status, content) of the last assistant message, as each update showed it."""
    return [
        (thread[-1]["status"], thread[-1]["content"])
        for thread in _values_sent(updates, "messages")
        if thread and thread[-1]["role"] == "assistant"
    ]


def _proxy_port() -> int:
    import socket

    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", PREFERRED_PROXY_PORT))
            return PREFERRED_PROXY_PORT
        except OSError:
            return free_port()


def _signing_key_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def _start_instance(name: str, env: dict[str, str], data_dir: Path) -> Instance:
    port = free_port()
    data_dir.mkdir(parents=True)
    log_path = data_dir / "app.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "carmenta", "run"],
            cwd=PROJECT_ROOT,
            env={**env, "DATA_DIR": str(data_dir), "PORT": str(port)},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    instance = Instance(name=name, port=port, process=process, log_path=log_path)
    _wait_for_health(instance.url, process, log_path)
    return instance


def _stop(instance: Instance) -> None:
    if instance.process.poll() is None:
        os.killpg(instance.process.pid, signal.SIGINT)
        try:
            instance.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(instance.process.pid, signal.SIGKILL)
            instance.process.wait()


@pytest.fixture(scope="module")
def cluster(postgres_server, tmp_path_factory) -> Iterator[Cluster]:
    work = tmp_path_factory.mktemp("scale-out")
    redis = RedisServer(work / "redis").start()
    model = ModelServer(ModelServerState(echo_delay=0.04)).start()
    instances: list[Instance] = []
    proxy: RoundRobinProxy | None = None
    try:
        with postgres_server.throwaway_database() as database_url:
            proxy_port = _proxy_port()
            public_url = f"http://localhost:{proxy_port}"
            shared = {
                **os.environ,
                "CARMENTA_ENV": "development",
                "DATABASE_URL": database_url,
                "REDIS_URL": redis.url,
                "PUBLIC_URL": public_url,
                # What every instance must agree on (README: "Several instances").
                "SESSION_SIGNING_KEY": _signing_key_pem(),
                "ENCRYPTION_KEYS": "k1:" + base64.b64encode(os.urandom(32)).decode(),
                "STORAGE_URL_SECRET": base64.b64encode(os.urandom(32)).decode(),
                "JOB_WORKER": "inline",
                "OPENAI_BASE_URL": model.openai_base_url,
                "OPENAI_API_KEY": "sk-scale-local",
                "OPENAI_MODELS": E2E_MODEL,
                "DEFAULT_MODEL": f"openai:{E2E_MODEL}",
            }
            # One after the other: the first builds the interface, the second reuses it.
            instances.append(_start_instance("a", shared, work / "a"))
            instances.append(_start_instance("b", shared, work / "b"))
            proxy = RoundRobinProxy(
                backends=[("127.0.0.1", instance.port) for instance in instances],
                port=proxy_port,
            ).start()
            try:
                yield Cluster(proxy, instances, database_url, model, redis)
            finally:
                for instance in instances:
                    _stop(instance)
    finally:
        if proxy is not None:
            proxy.stop()
        model.stop()
        redis.stop()


@pytest.fixture(scope="module")
def person(cluster) -> Person:
    """Signed up on instance A; the one-time code redeemed for the cookie on B."""
    a, b = cluster.instances
    email = f"scale-{uuid.uuid4().hex[:8]}@example.com"
    updates = _call(
        base_url=a.url,
        handler=SIGN_UP,
        payload={
            "form_data": {
                "email": email,
                "password": "a long enough passphrase 42",
                "display_name": "Ada",
            }
        },
        path="/sign-up",
        timeout=60,
        until=lambda updates: bool(_sign_in_codes(updates)),
    )
    codes = _sign_in_codes(updates)
    assert codes, f"sign-up answered no sign-in code: {json.dumps(updates)[:2000]}"
    response = httpx.post(
        f"{b.url}/auth/session",
        json={"code": codes[0]},
        headers={"Origin": cluster.proxy.url},
    )
    assert response.status_code == 204, response.text
    ((name, value),) = response.cookies.items()
    return Person(email=email, cookie=f"{name}={value}")


def test_a_person_signed_in_through_one_instance_stays_signed_in_on_the_other(cluster, person):
    a, b = cluster.instances
    tab = str(uuid.uuid4())
    on_a = _call(
        base_url=a.url, handler=REQUIRE_SIGN_IN, payload={}, cookie=person.cookie, token=tab
    )
    assert True in _values_sent(on_a, "signed_in")
    assert person.email in _values_sent(on_a, "user_email")
    # Not sent to sign in (the page's "Sign in again" link aside, which is always sent).
    assert "sign-in" not in json.dumps(_without_field(on_a, "sign_in_again_path"))

    # The same tab reconnects to the other instance, without even sending its cookie:
    # the page state A wrote is what B reads (from Redis), not a fresh one.
    on_b = _call(base_url=b.url, handler=HYDRATE, payload={}, token=tab)
    assert _values_sent(on_b, "signed_in") == [True]
    assert _values_sent(on_b, "user_email") == [person.email]

    # Through the load balancer, each connection lands on the next instance, and the
    # session cookie is recognised by both.
    before = len(cluster.proxy.websocket_backends())
    for _ in range(2):
        via_proxy = _call(
            base_url=cluster.proxy.url, handler=REQUIRE_SIGN_IN, payload={}, cookie=person.cookie
        )
        assert person.email in _values_sent(via_proxy, "user_email")
        assert "sign-in" not in json.dumps(_without_field(via_proxy, "sign_in_again_path"))
    assert sorted(cluster.proxy.websocket_backends()[before:]) == [0, 1]


def _last_reply(updates: list[dict]) -> dict | None:
    threads = [value for value in _values_sent(updates, "messages") if value]
    return threads[-1][-1] if threads else None


def _reply_row(database_url: str, conversation_id: str) -> tuple[str, str, uuid.UUID]:
    with psycopg.connect(database_url) as connection:
        return connection.execute(
            "select status, content, id from messages where conversation_id = %s"
            " and role = 'assistant' order by created_at desc limit 1",
            (conversation_id,),
        ).fetchone()


def _send_new_conversation(instance: Instance, person: Person, text: str) -> str:
    updates = _call(
        base_url=instance.url,
        handler=CHAT_SEND,
        payload={"form": {"message": text}},
        cookie=person.cookie,
        path="/",
    )
    ids = [value for value in _values_sent(updates, "conversation_id") if value]
    assert ids, f"the message was not sent: {json.dumps(updates)[:2000]}"
    return ids[-1]


def test_a_reply_streamed_by_one_instance_is_followed_and_complete_on_the_other(cluster, person):
    a, b = cluster.instances
    text = " ".join(f"word{n}" for n in range(80))
    conversation_id = _send_new_conversation(a, person, text)

    # B has no live reply in memory: it reads the one A writes from the database
    # until it ends, and the person sees it grow.
    on_b = _call(
        base_url=b.url,
        handler=CHAT_LOAD,
        payload={},
        cookie=person.cookie,
        path=f"/chat/{conversation_id}",
        timeout=60,
        until=lambda updates: any(s == "complete" for s, _ in _assistant_states(updates)),
    )
    seen = _assistant_states(on_b)
    expected = "".join(echo_words(text))
    assert ("complete", expected) in seen
    assert any(status == "streaming" and expected.startswith(content) for status, content in seen)
    assert _reply_row(cluster.database_url, conversation_id)[:2] == ("complete", expected)

    # Read afresh on B once more: the finished conversation, nothing left streaming.
    again = _last_reply(
        _call(
            base_url=b.url,
            handler=CHAT_LOAD,
            payload={},
            cookie=person.cookie,
            path=f"/chat/{conversation_id}",
        )
    )
    assert again is not None and (again["status"], again["content"]) == ("complete", expected)


async def _enqueue_extractions(database_url: str, count: int) -> list[int]:
    """Jobs anyone may queue many of: exchanges that do not exist are skipped quickly."""
    engine = create_async_engine(sqlalchemy_url(database_url))
    try:
        async with AsyncSession(engine) as session:
            ids = [
                await jobs_service.enqueue(
                    task_name=memory_tasks.EXTRACT_TASK,
                    task_kwargs={
                        "owner_id": str(uuid.uuid4()),
                        "user_message_id": str(uuid.uuid4()),
                        "assistant_message_id": str(uuid.uuid4()),
                    },
                    session=session,
                )
                for _ in range(count)
            ]
            await session.commit()
            return ids
    finally:
        await engine.dispose()


def test_jobs_enqueued_are_each_done_exactly_once_by_the_two_workers(cluster, person):
    a, _ = cluster.instances
    # A job the app itself enqueues: memory extraction after a complete exchange on A.
    conversation_id = _send_new_conversation(a, person, "I live in Lisbon and like tea.")
    with ThreadPoolExecutor(max_workers=1) as pool:
        queued_ids = pool.submit(
            asyncio.run, _enqueue_extractions(cluster.database_url, 20)
        ).result()

    deadline = time.monotonic() + 90
    with psycopg.connect(cluster.database_url, autocommit=True) as connection:
        while True:
            reply_status = _reply_row(cluster.database_url, conversation_id)[0]
            memory_jobs = connection.execute(
                "select id, status from procrastinate_jobs where task_name like 'memory.%%'"
                " and args::text like %s",
                (f"%{_reply_row(cluster.database_url, conversation_id)[2]}%",),
            ).fetchall()
            statuses = dict(
                connection.execute(
                    "select id, status::text from procrastinate_jobs where id = any(%s)",
                    (queued_ids,),
                ).fetchall()
            )
            finished = {"succeeded", "failed"}
            if (
                reply_status == "complete"
                and memory_jobs
                and all(status in finished for _, status in memory_jobs)
                and all(status in finished for status in statuses.values())
            ):
                break
            assert time.monotonic() < deadline, (reply_status, memory_jobs, statuses)
            time.sleep(0.3)
        job_ids = [*queued_ids, *(job_id for job_id, _ in memory_jobs)]
        starts = dict(
            connection.execute(
                "select job_id, count(*) from procrastinate_events"
                " where type = 'started' and job_id = any(%s) group by job_id",
                (job_ids,),
            ).fetchall()
        )
        workers = connection.execute("select count(*) from procrastinate_workers").fetchone()[0]
    assert set(statuses.values()) == {"succeeded"}
    assert starts == dict.fromkeys(job_ids, 1)
    # Both instances' workers were there to take them: still each ran once.
    assert workers == 2


def test_sigterm_saves_the_reply_in_flight_as_interrupted_and_exits_cleanly(cluster, person):
    a, b = cluster.instances
    cluster.model.state.echo_delay = 0.25
    text = " ".join(f"slow{n}" for n in range(200))
    conversation_id = _send_new_conversation(a, person, text)
    deadline = time.monotonic() + 30
    while len(_reply_row(cluster.database_url, conversation_id)[1].split()) < 8:
        assert time.monotonic() < deadline, "the reply did not start streaming"
        time.sleep(0.2)

    # What `docker stop` and Render do: SIGTERM to the main process.
    stopped_at = time.monotonic()
    a.process.send_signal(signal.SIGTERM)
    code = a.process.wait(timeout=SHUTDOWN_BOUND_SECONDS + 10)
    took = time.monotonic() - stopped_at
    log = a.log_path.read_text()
    assert code == 0, log[-4000:]
    assert took < SHUTDOWN_BOUND_SECONDS, f"took {took:.1f} s"

    status, content, _ = _reply_row(cluster.database_url, conversation_id)
    expected = "".join(echo_words(text))
    assert status == "interrupted"
    assert len(content.split()) >= 8 and expected.startswith(content)

    # The other instance serves the conversation, the reply's text kept, marked interrupted.
    on_b = _last_reply(
        _call(
            base_url=b.url,
            handler=CHAT_LOAD,
            payload={},
            cookie=person.cookie,
            path=f"/chat/{conversation_id}",
        )
    )
    assert on_b is not None and (on_b["status"], on_b["content"]) == ("interrupted", content)
    # A's job worker stopped with it; B's is still running. Workers beat every
    # WORKER_HEARTBEAT_SECONDS: after longer than that, only live workers have a fresh one.
    time.sleep(WORKER_HEARTBEAT_SECONDS + 2)
    with psycopg.connect(cluster.database_url) as connection:
        workers = connection.execute(
            "select count(*) from procrastinate_workers"
            " where last_heartbeat > now() - make_interval(secs => %s)",
            (WORKER_HEARTBEAT_SECONDS + 1,),
        ).fetchone()[0]
    assert workers == 1
