"""Chunk embeddings with the real local model, semantic and hybrid search, per user."""

from __future__ import annotations

import re
import uuid

import pytest
from sqlalchemy import text

from carmenta.db import driver_connection
from carmenta.knowledge import semantic as semantic_module
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


async def _embed_all(session, *owners: uuid.UUID) -> int:
    """Embed these owners' chunks: only theirs, since other tests may leave a backlog."""
    embedder = get_local_embedder()
    total = 0
    for owner in owners:
        while done := await embed_pending_chunks(
            session=session, embedder=embedder, limit=64, owner_id=owner
        ):
            total += done
    return total


async def test_chunks_wait_for_the_job_then_carry_unit_vectors(session):
    owner = await _user(session)
    await _library(session, owner)
    assert await pending_chunks(session=session, owner_id=owner) == 3
    assert await _embed_all(session, owner) == 3
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
    await _embed_all(session, owner)
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
    await _embed_all(session, owner, stranger)
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


async def test_one_owners_backlog_can_be_embedded_alone(session):
    owner, other = await _user(session), await _user(session)
    await _library(session, owner)
    await _library(session, other)
    embedded = await embed_pending_chunks(
        session=session, embedder=get_local_embedder(), limit=100, owner_id=owner
    )
    assert embedded == 3
    assert await pending_chunks(session=session, owner_id=owner) == 0
    assert await pending_chunks(session=session, owner_id=other) == 3


async def test_the_embedding_job_reads_only_the_chunks_still_waiting(session):
    # With the table scanned instead, each minute's run read every chunk ever embedded
    # (80 ms at 100,000 chunks). Sequential scans are priced out, so a plan that still
    # scans a part means the index cannot answer the job's question.
    owner = await _user(session)
    await _library(session, owner)
    await session.execute(text("set local enable_seqscan = off"))
    plans = []
    for scope in (None, owner):
        connection = await driver_connection(session)
        cursor = await connection.execute(
            "explain (costs off) "
            + semantic_module.CLAIM_PENDING_CHUNKS_SQL.replace(":owner", "%(owner)s").replace(
                ":limit", "%(limit)s"
            ),
            {"owner": scope, "limit": 32},
        )
        plans.append([line for (line,) in await cursor.fetchall()])
    for plan in plans:
        index_scans = [line.strip() for line in plan if "Index Scan" in line]
        assert index_scans, plan
        assert all("_created_at_idx" in line for line in index_scans), plan
        assert not any("Seq Scan" in line for line in plan), plan


async def test_a_query_vector_on_its_way_holds_up_only_the_semantic_side(session, monkeypatch):
    import asyncio
    import functools
    import inspect

    owner = await _user(session)
    garden, car, trip = await _library(session, owner)
    await _embed_all(session, owner)
    embedder = get_local_embedder()
    vector = (await embedder.embed_async(["watering tomatoes"]))[0]
    search = functools.partial(
        hybrid_search, session=session, owner_id=owner, query="watering tomatoes", embedder=embedder
    )
    direct = await search(query_vector=vector)
    text_searched = asyncio.Event()
    search_documents = semantic_module.search_documents

    async def seen_search_documents(**kwargs):
        hits = await search_documents(**kwargs)
        text_searched.set()
        return hits

    async def vector_after_the_text_search():
        # Had the full-text search waited for the vector, this would time out.
        await asyncio.wait_for(text_searched.wait(), timeout=5)
        return vector

    async def no_vector():
        return None

    with monkeypatch.context() as patched:
        patched.setattr(semantic_module, "search_documents", seen_search_documents)
        arriving = await search(query_vector=vector_after_the_text_search())
    assert arriving == direct
    assert set(arriving[0].found_by) == {"text", "semantic"}
    # None from it: nothing of the owner's is embedded to compare with.
    text_only = await search(query_vector=no_vector())
    assert text_only and all(hit.found_by == ("text",) for hit in text_only)
    # An empty query needs no vector: the one on its way is closed, never left pending.
    unused = no_vector()
    assert (
        await hybrid_search(
            session=session, owner_id=owner, query="  ", embedder=embedder, query_vector=unused
        )
        == []
    )
    assert inspect.getcoroutinestate(unused) == inspect.CORO_CLOSED


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
            await _embed_all(writer, owner, stranger)
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


async def _user_in_the_same_part(session, owner: uuid.UUID) -> uuid.UUID:
    """Another user whose chunks hash into the owner's part of `document_chunks`."""
    part = (
        await session.execute(
            text(
                "select r from generate_series(0, 31) as r where satisfies_hash_partition("
                " 'document_chunks'::regclass, 32, r, cast(:owner as uuid))"
            ),
            {"owner": owner},
        )
    ).scalar_one()
    neighbour = (
        await session.execute(
            text(
                "select id from (select gen_random_uuid() as id from generate_series(1, 2000)) c"
                " where satisfies_hash_partition('document_chunks'::regclass, 32, :part, c.id)"
                " limit 1"
            ),
            {"part": part},
        )
    ).scalar_one()
    await session.execute(
        text(
            "insert into users (id, external_auth_id, auth_provider) values (:id, :ext, 'builtin')"
        ),
        {"id": neighbour, "ext": f"semantic-{neighbour}"},
    )
    return neighbour


async def _walks_the_graph(session, owner: uuid.UUID, query) -> bool:
    """Whether the graph's branch of the search ran (the other one is then skipped)."""
    connection = await driver_connection(session)
    cursor = await connection.execute(
        "explain (analyze, costs off, timing off) " + semantic_module.SEMANTIC_SQL,
        {
            "vector": semantic_module._vector_literal(query),
            "owner": owner,
            "subtree": None,
            "candidates": 40,
            "exact_below": semantic_module.EXACT_SEARCH_BELOW_CHUNKS,
        },
    )
    plan = [line for (line,) in await cursor.fetchall()]
    # The graph branch reads the part as `c`, the exact branch as `c_1`.
    graph, every_chunk = (
        line for line in plan if re.search(r" on document_chunks_part_\d+ c(_1)? ", line)
    )
    assert "embedding_idx" in graph, graph
    assert ("never executed" in graph) != ("never executed" in every_chunk)
    return "never executed" not in graph


@pytest.mark.parametrize("way", ["graph", "every chunk"])
async def test_both_ways_of_searching_find_the_owners_nearest_and_only_theirs(
    session, monkeypatch, way
):
    # Small owners compare the query with every chunk of theirs; larger ones walk the
    # HNSW graph of their part, which they share with others.
    monkeypatch.setattr(
        semantic_module, "EXACT_SEARCH_BELOW_CHUNKS", 0 if way == "graph" else 10_000
    )
    owner = await _user(session)
    neighbour = await _user_in_the_same_part(session, owner)
    garden, car, trip = await _library(session, owner)
    for title in ("Truck repairs", "Van servicing", "Motorbike tune-up"):
        await create_document(
            session=session,
            owner_id=neighbour,
            parent_path=None,
            title=title,
            content=f"{title}: new brake pads, an oil change and the engine checked.",
        )
    await _embed_all(session, owner, neighbour)
    query = get_local_embedder().embed(["vehicle maintenance and repairs"])[0]
    # A handful of rows would be read whole; the graph is what is under test.
    await session.execute(text("set local enable_seqscan = off"))
    await session.execute(text("set local enable_bitmapscan = off"))
    await session.execute(text("set local enable_sort = off"))
    assert await _walks_the_graph(session, owner, query) is (way == "graph")
    hits = await semantic_search(session=session, owner_id=owner, query_vector=query)
    assert hits[0].id == car.id
    assert {hit.id for hit in hits} == {garden.id, car.id, trip.id}
    theirs = await semantic_search(session=session, owner_id=neighbour, query_vector=query)
    assert len(theirs) == 3 and not {hit.id for hit in theirs} & {garden.id, car.id, trip.id}
    in_subtree = await semantic_search(
        session=session, owner_id=owner, query_vector=query, subtree=trip.path
    )
    assert [hit.id for hit in in_subtree] == [trip.id]
