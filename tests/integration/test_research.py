"""Research replies: a durable job that reports progress, posts a report with its
sources into the thread, and can be cancelled keeping what it found."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import text

from carmenta.chat import research
from carmenta.conversations import service as conversations
from carmenta.db import session_scope
from carmenta.jobs.service import JobStatus, cancel_job, get_job
from carmenta.jobs.worker import run_worker
from carmenta.knowledge import service as knowledge
from carmenta.knowledge.embeddings import get_local_embedder
from carmenta.knowledge.semantic import embed_pending_chunks, pending_chunks

pytestmark = pytest.mark.usefixtures("database_url")


async def _owner_with_notes() -> tuple[uuid.UUID, uuid.UUID]:
    owner = uuid.uuid4()
    async with session_scope() as session:
        await session.execute(
            text(
                "insert into users (id, external_auth_id, auth_provider)"
                " values (:id, :external, 'builtin')"
            ),
            {"id": owner, "external": f"research-{owner}"},
        )
        for title, content in (
            ("Garden soil", "The garden soil is heavy clay. Compost every autumn helps drainage."),
            ("Tomatoes", "Tomatoes go in after the last frost, in mid May, in full sun."),
            ("Car", "The car needs new tyres before winter."),
        ):
            await knowledge.create_document(
                session=session,
                owner_id=owner,
                parent_path="knowledge",
                title=title,
                content=content,
            )
        conversation = await conversations.create_conversation(
            session=session, owner_id=owner, model="offline"
        )
        await session.commit()
    # This owner's only: other tests may leave a backlog of their own.
    async with session_scope() as session:
        await embed_pending_chunks(
            session=session, embedder=get_local_embedder(), limit=500, owner_id=owner
        )
        assert await pending_chunks(session=session, owner_id=owner) == 0
        await session.commit()
    return owner, conversation.id


async def _reply(owner, message_id):
    async with session_scope() as session:
        return await conversations.get_message(
            session=session, owner_id=owner, message_id=message_id
        )


async def _until(predicate, seconds: float = 60.0):
    for _ in range(int(seconds / 0.2)):
        value = await predicate()
        if value:
            return value
        await asyncio.sleep(0.2)
    raise AssertionError("timed out")


def test_offline_facets_start_with_the_question_and_add_its_subjects():
    facets = research.facets_offline("How should I prepare the garden soil for tomatoes?")
    assert facets[0] == "How should I prepare the garden soil for tomatoes?"
    assert any("garden" in facet.lower() for facet in facets[1:])
    assert len(facets) <= research.MAX_FACETS
    assert research.parse_facets("1. soil drainage\n- tomato planting date\n\n", "Q?") == [
        "Q?",
        "soil drainage",
        "tomato planting date",
    ]


async def test_a_research_job_posts_a_report_with_sources_into_the_thread():
    owner, conversation_id = await _owner_with_notes()
    async with session_scope() as session:
        reply, job_id = await research.start_research(
            session=session,
            owner_id=owner,
            conversation_id=conversation_id,
            question="How should I prepare the garden soil for tomatoes?",
        )
        await session.commit()
    queued = await _reply(owner, reply.id)
    assert queued.status == "streaming" and queued.details["research"]["job_id"] == job_id

    worker = asyncio.create_task(run_worker(concurrency=2, queues=[research.RESEARCH_QUEUE]))
    try:
        done = await _until(lambda: _finished(owner, reply.id), seconds=120)
    finally:
        worker.cancel()
        await asyncio.wait([worker], timeout=30)
    assert done.status == "complete"
    assert done.content.startswith("## Research: How should I prepare the garden soil")
    assert "clay" in done.content and "mid May" in done.content
    assert "tyres" not in done.content
    assert "[Garden soil](/knowledge?doc=" in done.content
    assert done.details["research"]["percent"] == 100
    assert done.details["context"]["summary"]["document"] >= 2
    job = await get_job(owner_id=owner, job_id=job_id)
    assert job is not None and job.status == JobStatus.succeeded and job.percent == 100
    # Not mistaken for a reply whose server died: research belongs to its job.
    async with session_scope() as session:
        await session.execute(
            text(
                "update messages set status = 'streaming', updated_at = now() - interval '1 hour'"
                " where id = :id"
            ),
            {"id": reply.id},
        )
        await conversations.mark_stale_replies_interrupted(session=session)
        still = await conversations.get_message(
            session=session, owner_id=owner, message_id=reply.id
        )
        await session.rollback()
    assert still.status == "streaming"


async def _finished(owner, message_id):
    message = await _reply(owner, message_id)
    return message if message.status != "streaming" else None


async def test_cancelling_research_keeps_what_was_found(monkeypatch):
    owner, conversation_id = await _owner_with_notes()
    gate = asyncio.Event()
    original = research.gather_sources
    calls = 0

    async def slow_second_facet(**kwargs):
        nonlocal calls
        calls += 1
        if calls == 2:
            gate.set()
            await asyncio.sleep(3600)
        return await original(**kwargs)

    monkeypatch.setattr(research, "gather_sources", slow_second_facet)
    async with session_scope() as session:
        reply, job_id = await research.start_research(
            session=session,
            owner_id=owner,
            conversation_id=conversation_id,
            question="garden soil tomatoes planting",
        )
        await session.commit()
    worker = asyncio.create_task(run_worker(concurrency=2, queues=[research.RESEARCH_QUEUE]))
    try:
        await asyncio.wait_for(gate.wait(), 60)
        running = await _reply(owner, reply.id)
        assert running.details["research"]["percent"] > 0
        assert await cancel_job(owner_id=owner, job_id=job_id)
        stopped = await _until(lambda: _finished(owner, reply.id), seconds=60)
    finally:
        worker.cancel()
        await asyncio.wait([worker], timeout=30)
    assert stopped.status == "stopped"
    assert "Cancelled" in stopped.content and "clay" in stopped.content


async def test_research_needs_a_real_question_and_another_person_cannot_start_it():
    owner, conversation_id = await _owner_with_notes()
    stranger, _ = await _owner_with_notes()
    async with session_scope() as session:
        with pytest.raises(research.ResearchRefused):
            await research.start_research(
                session=session, owner_id=owner, conversation_id=conversation_id, question="hm"
            )
        with pytest.raises(conversations.ConversationNotFound):
            await research.start_research(
                session=session,
                owner_id=stranger,
                conversation_id=conversation_id,
                question="What is in their notes?",
            )
        await session.rollback()
