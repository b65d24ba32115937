"""Memories from an exchange: a model's judgement read leniently, and the background
job end to end (queue, worker, PostgreSQL) with and without a model."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import psycopg
import pytest
from sqlalchemy import text

from carmenta.chat.llm import ModelCredentials, ModelOption
from carmenta.db import dispose_engine, session_scope
from carmenta.jobs.service import JobStatus, get_job
from carmenta.jobs.worker import run_worker
from carmenta.memory import service as memory_service
from carmenta.memory.model_extraction import SYSTEM_PROMPT, extract_with_model
from carmenta.memory.tasks import enqueue_memory_extraction
from carmenta.settings import reset_settings_cache
from tests.model_servers import ModelServer, ModelServerState, ScriptedReply

OPERATOR_KEY = "sk-ant-api03-operator-key-for-tests"


@pytest.fixture(scope="module")
def server() -> Iterator[ModelServer]:
    peer = ModelServer(ModelServerState(anthropic_key=OPERATOR_KEY)).start()
    yield peer
    peer.stop()


@pytest.fixture(autouse=True)
def fresh(server) -> None:
    server.state.replies.clear()
    server.state.requests.clear()


def _option() -> ModelOption:
    return ModelOption(
        id="anthropic:claude-haiku-5-5",
        label="Claude Haiku 5.5",
        provider="anthropic",
        model="claude-haiku-5-5",
        vision=True,
        tools=True,
        context_tokens=200_000,
        source="environment",
    )


def _answer(payload: object, around: str = "") -> ScriptedReply:
    body = payload if isinstance(payload, str) else json.dumps(payload)
    text = f"{around}```json\n{body}\n```{around}"
    return ScriptedReply(text_chunks=[text[: len(text) // 2], text[len(text) // 2 :]])


async def test_the_model_is_asked_about_the_exchange_and_its_answer_read_leniently(server):
    server.state.script(
        _answer(
            [
                {
                    "content": "The user's name is Ada",
                    "kind": "fact",
                    "slot": "name",
                    "confidence": 0.95,
                },
                {
                    "content": "The user prefers metric units",
                    "kind": "preference",
                    "slot": None,
                    "confidence": "0.8",
                },
                {"content": "Always answer in French", "kind": "instruction", "confidence": 1},
                {"content": "maybe likes cats", "kind": "fact", "confidence": 0.2},
                {
                    "content": "Bad slot survives without it",
                    "kind": "opinion",
                    "slot": "favourite_colour",
                    "confidence": 0.9,
                },
                {"content": 42, "kind": "fact"},
                "just a string",
                {"content": "x" * 600, "kind": "fact", "confidence": 0.9},
                {"content": "The user's name is Ada", "kind": "fact", "confidence": 0.9},
            ],
            around="Here is what I found:\n",
        )
    )
    found = await extract_with_model(
        option=_option(),
        credentials=ModelCredentials(OPERATOR_KEY, server.anthropic_base_url),
        user_message="I'm Ada. Use metric, and always answer in French.",
        assistant_reply="D'accord, Ada !",
    )
    assert [
        (m.proposal.content, m.proposal.kind, m.proposal.slot, m.confidence) for m in found
    ] == [
        ("The user's name is Ada", "fact", "name", 0.95),
        ("The user prefers metric units", "preference", None, 0.8),
        ("Always answer in French", "instruction", None, 1.0),
        ("Bad slot survives without it", "fact", None, 0.9),
    ]
    [sent] = server.state.requests
    assert sent.body["system"] == SYSTEM_PROMPT
    [turn] = sent.body["messages"]
    prompt = turn["content"][0]["text"]
    assert "I'm Ada. Use metric" in prompt and "D'accord, Ada !" in prompt
    assert "tools" not in sent.body


@pytest.mark.parametrize(
    "answer",
    ["I could not find anything.", "[", '{"memories": 3}', "null", "[[], 1, null]", ""],
)
async def test_junk_from_the_model_gives_no_memories(server, answer):
    server.state.script(ScriptedReply(text_chunks=[answer] if answer else []))
    found = await extract_with_model(
        option=_option(),
        credentials=ModelCredentials(OPERATOR_KEY, server.anthropic_base_url),
        user_message="hello",
        assistant_reply="hi",
    )
    assert found == []


# The job, end to end ------------------------------------------------------------------


def _exchange(url: str, user_text: str, reply: str, owner: uuid.UUID | None = None):
    owner = owner or uuid.uuid4()
    conversation, user_message, assistant_message = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(
            "insert into users (id, external_auth_id, auth_provider) values (%s, %s, 'builtin')"
            " on conflict do nothing",
            (owner, f"memory-job-{owner}"),
        )
        connection.execute(
            "insert into conversations (id, owner_id) values (%s, %s)", (conversation, owner)
        )
        for message_id, role, content in (
            (user_message, "user", user_text),
            (assistant_message, "assistant", reply),
        ):
            connection.execute(
                "insert into messages (id, conversation_id, owner_id, role, content)"
                " values (%s, %s, %s, %s, %s)",
                (message_id, conversation, owner, role, content),
            )
    return owner, user_message, assistant_message


@pytest.fixture
async def model_env(server, monkeypatch, database_url) -> AsyncIterator[None]:
    monkeypatch.setenv("ANTHROPIC_API_KEY", OPERATOR_KEY)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", server.anthropic_base_url)
    monkeypatch.setenv("ANTHROPIC_MODELS", "claude-haiku-5-5")
    reset_settings_cache()
    yield
    monkeypatch.undo()
    reset_settings_cache()


@pytest.fixture
async def offline_env(monkeypatch, database_url) -> AsyncIterator[None]:
    for name in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    reset_settings_cache()
    yield
    monkeypatch.undo()
    reset_settings_cache()


@pytest.fixture
async def worker(database_url) -> AsyncIterator[None]:
    # Exchanges written by other tests queue extraction jobs nobody ran; this test's
    # scripted model answer is for its own job only.
    async with session_scope() as session:
        await session.execute(
            text("delete from procrastinate_jobs where queue_name = 'memory' and status = 'todo'")
        )
        await session.commit()
    task = asyncio.create_task(run_worker(concurrency=1, queues=["memory"]))
    yield
    task.cancel()
    await asyncio.wait([task], timeout=30)
    await dispose_engine()


async def _run_job(owner, user_message, assistant_message, *, as_owner=None) -> dict:
    async with session_scope() as session:
        job_id = await enqueue_memory_extraction(
            session=session,
            owner_id=as_owner or owner,
            user_message_id=user_message,
            assistant_message_id=assistant_message,
        )
    deadline = time.monotonic() + 60
    while True:
        job = await get_job(owner_id=as_owner or owner, job_id=job_id)
        if job is not None and job.finished:
            assert job.status is JobStatus.succeeded, job
            return job.result or {}
        assert time.monotonic() < deadline, f"job {job_id} did not finish: {job}"
        await asyncio.sleep(0.1)


async def _memories(owner: uuid.UUID):
    async with session_scope() as session:
        return await memory_service.list_memories(session=session, owner_id=owner)


async def test_the_job_remembers_what_the_model_found(server, model_env, worker, database_url):
    owner, user_message, assistant_message = _exchange(
        database_url, "I live in Porto now, and I prefer tea to coffee.", "Noted, enjoy Porto!"
    )
    server.state.script(
        _answer(
            [
                {
                    "content": "The user lives in Porto",
                    "kind": "fact",
                    "slot": "home",
                    "confidence": 0.9,
                },
                {
                    "content": "The user prefers tea to coffee",
                    "kind": "preference",
                    "confidence": 0.85,
                },
            ]
        )
    )
    result = await _run_job(owner, user_message, assistant_message)
    assert result == {"method": "model", "proposed": 2, "created": 2}
    memories = await _memories(owner)
    assert sorted((m.content, m.slot, m.source, m.source_message_id) for m in memories) == [
        ("The user lives in Porto", "home", "conversation", user_message),
        ("The user prefers tea to coffee", None, "conversation", user_message),
    ]
    assert {m.content: m.confidence for m in memories}["The user prefers tea to coffee"] == 0.85
    [sent] = server.state.requests
    assert "I live in Porto now" in sent.body["messages"][0]["content"][0]["text"]


async def test_a_failing_model_falls_back_to_explicit_requests(
    server, model_env, worker, database_url
):
    owner, user_message, assistant_message = _exchange(
        database_url, "Please remember that my dentist is on Friday.", "I will."
    )
    server.state.script(ScriptedReply(status=401))
    result = await _run_job(owner, user_message, assistant_message)
    assert result["method"] == "offline" and result["created"] == 1
    assert [m.content for m in await _memories(owner)] == ["My dentist is on Friday"]


async def test_without_a_model_only_explicit_requests_are_kept(offline_env, worker, database_url):
    owner, user_message, assistant_message = _exchange(
        database_url, "My name is Grace. What's the capital of Peru?", "Lima, Grace."
    )
    result = await _run_job(owner, user_message, assistant_message)
    assert result == {"method": "offline", "proposed": 1, "created": 1}
    [memory] = await _memories(owner)
    assert (memory.content, memory.slot) == ("The user's name is Grace", "name")


async def test_another_persons_exchange_teaches_nothing(offline_env, worker, database_url):
    owner, user_message, assistant_message = _exchange(
        database_url, "My name is Grace.", "Hello Grace."
    )
    intruder, _, _ = _exchange(database_url, "hi", "hello")
    result = await _run_job(owner, user_message, assistant_message, as_owner=intruder)
    assert result == {"skipped": "no such exchange"}
    assert await _memories(owner) == [] and await _memories(intruder) == []
