"""Chunk embeddings with the real local model, semantic and hybrid search, per user."""

from __future__ import annotations

import uuid

from sqlalchemy import text

from carmenta.knowledge.embeddings import get_local_embedder
from carmenta.knowledge.semantic import (
    embed_pending_chunks,
    hybrid_search,
    pending_chunks,
    semantic_search,
)
from carmenta.knowledge.service import create_document


async def _user(session) -> uuid.UUID:
    user_id = uuid.uuid4()
    await session.execute(
        text(
            "insert into users (id, external_auth_id, auth_provider) values (:id, :ext, 'builtin')"
        ),
        {"id": user_id, "ext": f"semantic-{user_id}"},
    )
    return user_id


async def _library(session, owner):
    garden = await create_document(
        session=session,
        owner_id=owner,
        parent_path=None,
        title="Garden notes",
        content="The tomatoes need watering every morning; the basil likes full sun.",
    )
    car = await create_document(
        session=session,
        owner_id=owner,
        parent_path=None,
        title="Car service",
        content="Oil change due at 90,000 km. The garage on Elm Street does brakes.",
    )
    trip = await create_document(
        session=session,
        owner_id=owner,
        parent_path=None,
        title="Lisbon trip",
        content="Flights booked for May. Hotel near Alfama; try the custard tarts.",
    )
    return garden, car, trip


async def _embed_all(session) -> int:
    embedder = get_local_embedder()
    total = 0
    while done := await embed_pending_chunks(session=session, embedder=embedder, limit=64):
        total += done
    return total


async def test_chunks_wait_for_the_job_then_carry_unit_vectors(session):
    owner = await _user(session)
    await _library(session, owner)
    assert await pending_chunks(session=session, owner_id=owner) == 3
    assert await _embed_all(session) >= 3
    assert await pending_chunks(session=session, owner_id=owner) == 0
    norms = (
        (
            await session.execute(
                text("select vector_norm(embedding) from document_chunks where owner_id = :owner"),
                {"owner": owner},
            )
        )
        .scalars()
        .all()
    )
    assert norms and all(abs(norm - 1.0) < 1e-4 for norm in norms)


async def test_semantic_search_finds_meaning_without_shared_words(session):
    owner = await _user(session)
    garden, car, trip = await _library(session, owner)
    await _embed_all(session)
    query = get_local_embedder().embed(["vehicle maintenance and repairs"])[0]
    hits = await semantic_search(session=session, owner_id=owner, query_vector=query)
    assert hits[0].id == car.id
    query = get_local_embedder().embed(["holiday in Portugal"])[0]
    hits = await semantic_search(session=session, owner_id=owner, query_vector=query)
    assert hits[0].id == trip.id


async def test_hybrid_search_fuses_text_and_meaning_for_one_user_only(session):
    owner, stranger = await _user(session), await _user(session)
    garden, car, trip = await _library(session, owner)
    await create_document(
        session=session,
        owner_id=stranger,
        parent_path=None,
        title="Tomato secrets",
        content="Stranger's tomatoes and their watering schedule.",
    )
    await _embed_all(session)
    hits = await hybrid_search(
        session=session, owner_id=owner, query="watering tomatoes", embedder=get_local_embedder()
    )
    assert hits[0].id == garden.id
    assert set(hits[0].found_by) == {"text", "semantic"}
    assert all(hit.id in {garden.id, car.id, trip.id} for hit in hits)
    assert (
        await hybrid_search(
            session=session, owner_id=owner, query="   ", embedder=get_local_embedder()
        )
        == []
    )


async def test_hybrid_search_in_parallel_finds_what_it_finds_in_sequence(async_engine):
    # The parallel side reads on a second connection, so the library is committed.
    from sqlmodel.ext.asyncio.session import AsyncSession

    async with AsyncSession(async_engine, expire_on_commit=False) as writer:
        owner, stranger = await _user(writer), await _user(writer)
        garden, car, trip = await _library(writer, owner)
        await create_document(
            session=writer,
            owner_id=stranger,
            parent_path=None,
            title="Tomato secrets",
            content="Stranger's tomatoes and their watering schedule.",
        )
        await writer.commit()
    try:
        async with AsyncSession(async_engine) as writer:
            await _embed_all(writer)
            await writer.commit()
        results = {}
        for parallel in (False, True):
            async with AsyncSession(async_engine) as reader:
                results[parallel] = await hybrid_search(
                    session=reader,
                    owner_id=owner,
                    query="watering tomatoes",
                    embedder=get_local_embedder(),
                    parallel=parallel,
                )
        assert results[True] == results[False]
        assert results[True][0].id == garden.id
        assert set(results[True][0].found_by) == {"text", "semantic"}
        assert {hit.id for hit in results[True]} <= {garden.id, car.id, trip.id}
    finally:
        async with AsyncSession(async_engine) as cleaner:
            await cleaner.execute(
                text("delete from users where id in (:owner, :stranger)"),
                {"owner": owner, "stranger": stranger},
            )
            await cleaner.commit()
