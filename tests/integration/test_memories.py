"""Memories with the real local model: explicit requests, merging, replacing, recall."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import text

from carmenta.knowledge.embeddings import get_local_embedder
from carmenta.memory import service as memory_service
from carmenta.memory.extraction import ProposedMemory, extract_explicit


async def _user(session) -> uuid.UUID:
    user_id = uuid.uuid4()
    await session.execute(
        text(
            "insert into users (id, external_auth_id, auth_provider)"
            " values (:id, :external, 'builtin')"
        ),
        {"id": user_id, "external": f"memory-{user_id}"},
    )
    return user_id


async def _remember(session, owner, content: str, kind: str, *, pinned: bool = False):
    memory, _ = await memory_service.remember(
        session=session,
        owner_id=owner,
        embedder=get_local_embedder(),
        proposal=ProposedMemory(content, kind),
    )
    if pinned:
        await memory_service.set_pinned(
            session=session, owner_id=owner, memory_id=memory.id, pinned=True
        )
    return memory


def test_only_explicit_requests_become_memories():
    found = extract_explicit(
        "Hi! My name is Ada Lovelace. Please remember that my dentist is on Friday. "
        "I prefer short answers."
    )
    assert [(memory.content, memory.slot) for memory in found] == [
        ("My dentist is on Friday", None),
        ("The user's name is Ada Lovelace", "name"),
        ("The user prefers short answers", None),
    ]
    assert extract_explicit("What is the weather like in Lisbon today?") == []
    assert extract_explicit("") == []


async def test_the_same_memory_twice_updates_instead_of_duplicating(session):
    owner = await _user(session)
    embedder = get_local_embedder()
    first, action = await memory_service.remember(
        session=session,
        owner_id=owner,
        embedder=embedder,
        proposal=ProposedMemory("The user prefers tea in the morning", "preference"),
    )
    assert action == "created"
    second, action = await memory_service.remember(
        session=session,
        owner_id=owner,
        embedder=embedder,
        proposal=ProposedMemory("The user prefers tea in the mornings", "preference"),
    )
    assert action == "updated" and second.id == first.id
    current = await memory_service.list_memories(session=session, owner_id=owner)
    assert [memory.content for memory in current] == ["The user prefers tea in the mornings"]


async def test_a_contradiction_replaces_and_keeps_the_history(session):
    owner = await _user(session)
    embedder = get_local_embedder()
    old, _ = await memory_service.remember(
        session=session,
        owner_id=owner,
        embedder=embedder,
        proposal=ProposedMemory("The user's name is Ada", "fact", "name"),
    )
    new, action = await memory_service.remember(
        session=session,
        owner_id=owner,
        embedder=embedder,
        proposal=ProposedMemory("The user's name is Grace", "fact", "name"),
    )
    assert action == "replaced"
    current = await memory_service.list_memories(session=session, owner_id=owner)
    assert [memory.id for memory in current] == [new.id]
    history = await memory_service.history_of(session=session, owner_id=owner, memory_id=new.id)
    assert [memory.id for memory in history] == [old.id]


async def test_recall_returns_pinned_and_relevant_memories_of_one_user(session):
    owner, stranger = await _user(session), await _user(session)
    embedder = get_local_embedder()
    tea = await _remember(session, owner, "The user prefers green tea", "preference")
    pinned = await _remember(
        session, owner, "Always answer in British English", "instruction", pinned=True
    )
    await _remember(session, owner, "The user's car is a blue hatchback", "fact")
    await _remember(session, stranger, "The stranger prefers tea with milk", "preference")
    recalled = await memory_service.recall(
        session=session,
        owner_id=owner,
        query="what drink should I offer?",
        embedder=embedder,
        limit=3,
    )
    assert recalled[0].id == pinned.id
    assert recalled[1].id == tea.id
    assert all("stranger" not in memory.content for memory in recalled)


async def test_edit_pin_and_delete_only_touch_the_owners_memory(session):
    owner, stranger = await _user(session), await _user(session)
    embedder = get_local_embedder()
    memory, _ = await memory_service.remember(
        session=session,
        owner_id=owner,
        embedder=embedder,
        proposal=ProposedMemory("The user works at the observatory", "fact"),
    )
    assert (
        await memory_service.edit_memory(
            session=session,
            owner_id=stranger,
            memory_id=memory.id,
            content="hijacked",
            embedder=embedder,
        )
        is None
    )
    assert not await memory_service.set_pinned(
        session=session, owner_id=stranger, memory_id=memory.id, pinned=True
    )
    assert not await memory_service.delete_memory(
        session=session, owner_id=stranger, memory_id=memory.id
    )
    edited = await memory_service.edit_memory(
        session=session,
        owner_id=owner,
        memory_id=memory.id,
        content="The user works at the planetarium",
        embedder=embedder,
    )
    assert edited.content == "The user works at the planetarium" and edited.source == "manual"
    with pytest.raises(memory_service.MemoryError, match="at most 500"):
        await memory_service.edit_memory(
            session=session,
            owner_id=owner,
            memory_id=memory.id,
            content="x" * 501,
            embedder=embedder,
        )
    assert await memory_service.delete_memory(session=session, owner_id=owner, memory_id=memory.id)
    assert await memory_service.list_memories(session=session, owner_id=owner) == []


async def test_recall_without_meaning_or_words_still_gives_pinned_and_keyword_matches(session):
    owner = await _user(session)
    embedder = get_local_embedder()
    bike = await _remember(session, owner, "The user rides a red bicycle to work", "fact")
    pinned = await _remember(session, owner, "Keep answers short", "instruction", pinned=True)
    # No word long enough to look for: the pinned memory alone.
    short = await memory_service.recall(
        session=session, owner_id=owner, query="hi", embedder=embedder
    )
    assert [memory.id for memory in short] == [pinned.id]
    # Without the semantic side (nothing embedded, the caller knows), words still match.
    by_words = await memory_service.recall(
        session=session, owner_id=owner, query="my bicycle", embedder=embedder, semantic=False
    )
    assert [memory.id for memory in by_words] == [pinned.id, bike.id]
