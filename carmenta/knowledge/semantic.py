"""Semantic and hybrid search over document chunks (pgvector, cosine distance).

Chunk embeddings are computed by the `knowledge.embed_chunks` job, never while a
request waits; only the short query is embedded at search time.
"""

from __future__ import annotations

import asyncio
import inspect
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel.ext.asyncio.session import AsyncSession

from carmenta import db
from carmenta.knowledge.embeddings import Embedder
from carmenta.knowledge.paths import validate_path
from carmenta.knowledge.search import SearchHit, clean_query, search_documents

# Reciprocal rank fusion constant: damps the weight of the very first ranks.
RRF_K = 60
EMBED_BATCH = 32


def engine_of(session: AsyncSession) -> AsyncEngine:
    bind = session.bind
    return bind if isinstance(bind, AsyncEngine) else bind.engine


def _vector_literal(vector: np.ndarray) -> str:
    return "[" + ",".join(f"{value:.7f}" for value in vector.tolist()) + "]"


# Served by the partial index ix_document_chunks_unembedded (migration 0018): only
# the chunks still waiting are read, however many are embedded.
CLAIM_PENDING_CHUNKS_SQL = (
    "select owner_id, id, content from document_chunks where embedding is null"
    " and (cast(:owner as uuid) is null or owner_id = :owner)"
    " order by created_at limit :limit for update skip locked"
)


async def embed_pending_chunks(
    *,
    session: AsyncSession,
    embedder: Embedder,
    limit: int = EMBED_BATCH,
    owner_id: uuid.UUID | None = None,
) -> int:
    """Embed up to `limit` chunks that have none yet, oldest first (only `owner_id`'s
    when given); returns how many were embedded.

    Rows are claimed with SKIP LOCKED, so several workers share the backlog.
    """
    rows = (
        await session.execute(text(CLAIM_PENDING_CHUNKS_SQL), {"limit": limit, "owner": owner_id})
    ).all()
    if not rows:
        return 0
    vectors = await embedder.embed_async([row.content for row in rows])
    now = datetime.now(UTC)
    for row, vector in zip(rows, vectors, strict=True):
        await session.execute(
            text(
                "update document_chunks set embedding = cast(:vector as vector),"
                " embedded_at = :now where owner_id = :owner and id = :id"
            ),
            {"vector": _vector_literal(vector), "now": now, "owner": row.owner_id, "id": row.id},
        )
    return len(rows)


async def pending_chunks(*, session: AsyncSession, owner_id: uuid.UUID | None = None) -> int:
    result = await session.execute(
        text(
            "select count(*) from document_chunks where embedding is null"
            " and (cast(:owner as uuid) is null or owner_id = :owner)"
        ),
        {"owner": owner_id},
    )
    return result.scalar_one()


# Below this many chunks a person's search compares the query with each of their
# chunks (about 2.5 µs a chunk, 25 ms at the limit) rather than walking the HNSW graph
# of their part of the table: the graph is shared with a 32nd of everyone, and
# finding a small owner's nearest chunks in it means stepping over many others'.
EXACT_SEARCH_BELOW_CHUNKS = 10_000

# Which way is decided inside the statement: `scale` counts the owner's chunks (up to
# the limit, from the primary key) once, and each branch runs only when its one-time
# condition holds. The exact branch orders outside a fence (`offset 0`), so the
# planner cannot hand it to the graph. A subtree is checked per chunk with `exists`,
# which the planner drops when there is no subtree.
SEMANTIC_SQL = db.driver_sql(
    """
    with scale as (
        select count(*) as chunks
          from (select 1 from document_chunks where owner_id = :owner
                 limit :exact_below) as owned
    ),
    nearest as (
        (select c.document_id, c.content,
                c.embedding <=> cast(:vector as vector) as distance
           from document_chunks c
          where c.owner_id = :owner and c.embedding is not null
            and (cast(:subtree as ltree) is null
                 or exists (select 1 from documents d where d.id = c.document_id
                             and d.path <@ cast(:subtree as ltree)))
            and (select chunks from scale) >= :exact_below
          order by c.embedding <=> cast(:vector as vector)
          limit :candidates)
        union all
        (select every_chunk.*
           from (select c.document_id, c.content,
                        c.embedding <=> cast(:vector as vector) as distance
                   from document_chunks c
                  where c.owner_id = :owner and c.embedding is not null
                    and (cast(:subtree as ltree) is null
                         or exists (select 1 from documents d where d.id = c.document_id
                                     and d.path <@ cast(:subtree as ltree)))
                    and (select chunks from scale) < :exact_below
                 offset 0) as every_chunk
          order by every_chunk.distance
          limit :candidates)
    )
    select distinct on (n.document_id) n.document_id, d.path::text as path,
           d.title, n.content, n.distance
      from nearest n join documents d on d.id = n.document_id
     order by n.document_id, n.distance
    """
)


# A part's HNSW graph holds other people's chunks too: a plain index scan stops after
# ef_search neighbours, some of them others', and could return too few. Iterative
# scanning keeps walking the graph until enough of the owner's chunks are found.
# Relaxed order is much faster than strict and loses nothing here: candidates are
# re-sorted below.
db.set_on_every_connection("hnsw.iterative_scan", "relaxed_order")
# Chunks read for each document wanted. Several chunks of one document often come
# together, so some slack is needed; each one more costs graph walking.
CANDIDATE_CHUNKS_PER_HIT = 2


@dataclass(frozen=True)
class SemanticHit:
    id: uuid.UUID
    path: str
    title: str
    passage: str
    distance: float


async def semantic_search(
    *,
    session: AsyncSession,
    owner_id: uuid.UUID,
    query_vector: np.ndarray,
    subtree: str | None = None,
    limit: int = 20,
) -> list[SemanticHit]:
    """The owner's documents whose closest chunk is nearest the query, best first."""
    if subtree is not None:
        validate_path(subtree)
    candidates = limit * CANDIDATE_CHUNKS_PER_HIT
    # Straight through the driver, as the full-text search is (search.py).
    connection = await db.driver_connection(session)
    cursor = await connection.execute(
        SEMANTIC_SQL,
        {
            "vector": _vector_literal(query_vector),
            "owner": owner_id,
            "subtree": subtree,
            "candidates": candidates,
            "exact_below": EXACT_SEARCH_BELOW_CHUNKS,
        },
    )
    hits = [
        SemanticHit(
            id=document_id, path=path, title=title, passage=content, distance=float(distance)
        )
        for document_id, path, title, content, distance in await cursor.fetchall()
    ]
    return sorted(hits, key=lambda hit: hit.distance)[:limit]


@dataclass(frozen=True)
class HybridHit:
    id: uuid.UUID
    path: str
    title: str
    snippet: str
    score: float
    # Which lists found it: "text", "semantic" or both.
    found_by: tuple[str, ...]


async def hybrid_search(
    *,
    session: AsyncSession,
    owner_id: uuid.UUID,
    query: str,
    embedder: Embedder,
    subtree: str | None = None,
    limit: int = 10,
    parallel: bool = False,
    query_vector: np.ndarray | Awaitable[np.ndarray | None] | None = None,
    semantic: bool = True,
) -> list[HybridHit]:
    """Full-text and semantic results merged by reciprocal rank fusion.

    The query is embedded while the full-text search runs, unless the caller passes
    `query_vector` (the cleaned query, embedded for another use too). It may be still
    on its way (an awaitable): the full-text search does not wait for it, and a None
    from it skips the semantic side. `semantic=False` when the caller knows none of
    the owner's chunks is embedded: nothing could be found.
    With `parallel` the semantic search also runs meanwhile, on a second connection from
    the session's engine; that connection sees committed rows only, so pass it only when
    the caller's transaction has written no documents or chunks of its own.
    """
    cleaned = clean_query(query)
    if not cleaned or not semantic:
        if inspect.iscoroutine(query_vector):
            query_vector.close()  # not needed: never awaited
        if not cleaned:
            return []

    async def embedded() -> np.ndarray | None:
        if query_vector is None:
            return (await embedder.embed_async([cleaned]))[0]
        if inspect.isawaitable(query_vector):
            return await query_vector
        return query_vector

    async def semantic_apart() -> list[SemanticHit]:
        vector = await embedding
        if vector is None:
            return []
        # One statement: no transaction around it.
        reads = db.statement_engine_for(engine_of(session))
        async with AsyncSession(bind=reads, expire_on_commit=False) as apart:
            return await semantic_search(
                session=apart,
                owner_id=owner_id,
                query_vector=vector,
                subtree=subtree,
                limit=limit * 2,
            )

    embedding = asyncio.ensure_future(embedded()) if semantic else None
    semantic_task = asyncio.ensure_future(semantic_apart()) if parallel and semantic else None
    semantic_hits: list[SemanticHit] = []
    try:
        text_hits: list[SearchHit] = await search_documents(
            session=session, owner_id=owner_id, query=cleaned, subtree=subtree, limit=limit * 2
        )
        if semantic_task is not None:
            semantic_hits = await semantic_task
        elif embedding is not None and (vector := await embedding) is not None:
            semantic_hits = await semantic_search(
                session=session,
                owner_id=owner_id,
                query_vector=vector,
                subtree=subtree,
                limit=limit * 2,
            )
    finally:
        # A failure on one side stops the other; nothing is left running unawaited.
        tasks = [task for task in (embedding, semantic_task) if task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    fused: dict[uuid.UUID, dict] = {}
    for rank, hit in enumerate(text_hits):
        entry = fused.setdefault(
            hit.id,
            {
                "path": hit.path,
                "title": hit.title,
                "snippet": hit.snippet,
                "score": 0.0,
                "found_by": [],
            },
        )
        entry["score"] += 1.0 / (RRF_K + rank + 1)
        entry["found_by"].append("text")
    for rank, hit in enumerate(semantic_hits):
        entry = fused.setdefault(
            hit.id,
            {
                "path": hit.path,
                "title": hit.title,
                "snippet": hit.passage[:300],
                "score": 0.0,
                "found_by": [],
            },
        )
        entry["score"] += 1.0 / (RRF_K + rank + 1)
        entry["found_by"].append("semantic")
    ranked = sorted(fused.items(), key=lambda item: item[1]["score"], reverse=True)[:limit]
    return [
        HybridHit(
            id=document_id,
            path=entry["path"],
            title=entry["title"],
            snippet=entry["snippet"],
            score=entry["score"],
            found_by=tuple(entry["found_by"]),
        )
        for document_id, entry in ranked
    ]
