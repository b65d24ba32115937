"""Rules the Knowledge and Memory pages rely on, against a real PostgreSQL: profile
documents stay in place, the size limit's message, and searching memories."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import text

from carmenta.knowledge.embeddings import get_local_embedder
from carmenta.knowledge.service import (
    MAX_CONTENT_BYTES,
    ProfileDocumentFixed,
    content_size_problem,
    create_document,
    delete_subtree,
    get_by_path,
    list_tree,
    move_subtree,
    seed_profile,
    update_document,
)
from carmenta.memory import service as memory_service
from carmenta.memory.extraction import ProposedMemory


async def _user(session) -> uuid.UUID:
    user_id = uuid.uuid4()
    await session.execute(
        text(
            "insert into users (id, external_auth_id, auth_provider)"
            " values (:id, :external, 'builtin')"
        ),
        {"id": user_id, "external": f"page-rules-{user_id}"},
    )
    return user_id


async def test_profile_documents_can_be_edited_but_not_moved_or_deleted(session):
    owner = await _user(session)
    await seed_profile(session=session, owner_id=owner, display_name="Ada")
    identity = await get_by_path(session=session, owner_id=owner, path="profile.identity")
    folder = await create_document(
        session=session, owner_id=owner, parent_path="knowledge", title="Elsewhere"
    )
    with pytest.raises(ProfileDocumentFixed, match="stays where it is"):
        await move_subtree(
            session=session, owner_id=owner, document_id=identity.id, new_parent_path=folder.path
        )
    with pytest.raises(ProfileDocumentFixed, match="cannot be deleted"):
        await delete_subtree(session=session, owner_id=owner, document_id=identity.id)
    edited = await update_document(
        session=session, owner_id=owner, document_id=identity.id, content="# About Ada\n"
    )
    assert edited.content == "# About Ada\n"
    assert {
        doc.path for doc in await list_tree(session=session, owner_id=owner, root="profile")
    } == {
        "profile.identity",
        "profile.preferences",
        "profile.voice",
    }


async def test_a_profile_document_the_user_added_can_be_deleted(session):
    owner = await _user(session)
    extra = await create_document(
        session=session, owner_id=owner, parent_path="profile", title="Hobbies"
    )
    assert await delete_subtree(session=session, owner_id=owner, document_id=extra.id) == 1


def test_the_size_message_states_the_size_and_the_limit():
    assert content_size_problem(MAX_CONTENT_BYTES) is None
    message = content_size_problem(5_000_000)
    assert "5.0 MB" in message and "limit is 1 MB" in message


async def test_searching_memories_finds_words_and_meaning_but_not_everything(session):
    owner = await _user(session)
    embedder = get_local_embedder()
    for content, kind in (
        ("The user is vegetarian and never eats meat", "preference"),
        ("The user's sister is called Lena", "fact"),
        ("Answer in British English", "instruction"),
    ):
        await memory_service.remember(
            session=session,
            owner_id=owner,
            proposal=ProposedMemory(content, kind),
            embedder=embedder,
            source="manual",
        )
    by_word = await memory_service.search_memories(
        session=session, owner_id=owner, query="Lena", embedder=embedder
    )
    assert [memory.content for memory in by_word][0] == "The user's sister is called Lena"
    by_meaning = await memory_service.search_memories(
        session=session, owner_id=owner, query="food diet", embedder=embedder
    )
    assert by_meaning and by_meaning[0].content.startswith("The user is vegetarian")
    assert all("Lena" not in memory.content for memory in by_meaning)
    assert (
        await memory_service.search_memories(
            session=session, owner_id=owner, query="   ", embedder=embedder
        )
        == []
    )
    other = await _user(session)
    assert (
        await memory_service.search_memories(
            session=session, owner_id=other, query="Lena", embedder=embedder
        )
        == []
    )
