"""Memories: short facts and preferences, merged when repeated, replaced with history.

A proposal that says the same as a current memory (cosine similarity at or above
SAME_THRESHOLD) updates it; one for the same slot ("name", "home") with different
content replaces it, and the old memory stays as history (`superseded_by_id`).
"""

# ruff: noqa: S608  (only the module constants _COLUMNS and `current` are interpolated)
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from sqlalchemy import text
from sqlmodel.ext.asyncio.session import AsyncSession

from carmenta.knowledge.embeddings import Embedder
from carmenta.memory.extraction import MAX_MEMORY_CHARS, ProposedMemory

SAME_THRESHOLD = 0.9
RRF_K = 60


class MemoryError(ValueError):
    """Refused input; the message is shown as is."""


@dataclass(frozen=True)
class MemoryView:
    id: uuid.UUID
    content: str
    kind: str
    slot: str | None
    source: str
    source_message_id: uuid.UUID | None
    confidence: float
    pinned: bool
    created_at: datetime
    updated_at: datetime


_COLUMNS = (
    "id, content, kind, slot, source, source_message_id, confidence, pinned, created_at, updated_at"
)


def _view(row) -> MemoryView:
    return MemoryView(**{name.strip(): getattr(row, name.strip()) for name in _COLUMNS.split(",")})


def _vector(vector: np.ndarray) -> str:
    return "[" + ",".join(f"{value:.7f}" for value in vector.tolist()) + "]"


def _checked(content: str) -> str:
    content = " ".join(content.split())
    if not content:
        raise MemoryError("A memory needs some words.")
    if len(content) > MAX_MEMORY_CHARS:
        raise MemoryError(f"A memory holds at most {MAX_MEMORY_CHARS} characters.")
    return content


async def remember(
    *,
    session: AsyncSession,
    owner_id: uuid.UUID,
    proposal: ProposedMemory,
    embedder: Embedder,
    source: str = "conversation",
    source_message_id: uuid.UUID | None = None,
    confidence: float = 1.0,
) -> tuple[MemoryView, str]:
    """Keep a proposed memory; returns it and what happened: created, updated, replaced."""
    content = _checked(proposal.content)
    vector = (await embedder.embed_async([content]))[0]
    nearest = (
        await session.execute(
            text(
                f"select {_COLUMNS}, 1 - (embedding <=> cast(:vector as vector)) as similarity"
                " from memories where owner_id = :owner and superseded_by_id is null"
                " and embedding is not null"
                " order by embedding <=> cast(:vector as vector) limit 1 for update"
            ),
            {"owner": owner_id, "vector": _vector(vector)},
        )
    ).first()
    if nearest is not None and nearest.similarity >= SAME_THRESHOLD:
        row = (
            await session.execute(
                text(
                    "update memories set content = :content, embedding = cast(:vector as vector),"
                    " confidence = greatest(confidence, :confidence), updated_at = now()"
                    f" where id = :id returning {_COLUMNS}"
                ),
                {
                    "content": content,
                    "vector": _vector(vector),
                    "confidence": confidence,
                    "id": nearest.id,
                },
            )
        ).one()
        return _view(row), "updated"

    row = (
        await session.execute(
            text(
                "insert into memories (owner_id, content, kind, slot, source, source_message_id,"
                " confidence, embedding) values (:owner, :content, :kind, :slot, :source,"
                " :message, :confidence, cast(:vector as vector))"
                f" returning {_COLUMNS}"
            ),
            {
                "owner": owner_id,
                "content": content,
                "kind": proposal.kind,
                "slot": proposal.slot,
                "source": source,
                "message": source_message_id,
                "confidence": confidence,
                "vector": _vector(vector),
            },
        )
    ).one()
    action = "created"
    if proposal.slot is not None:
        replaced = await session.execute(
            text(
                "update memories set superseded_by_id = :new, updated_at = now()"
                " where owner_id = :owner and slot = :slot and id <> :new"
                " and superseded_by_id is null returning id"
            ),
            {"new": row.id, "owner": owner_id, "slot": proposal.slot},
        )
        if replaced.first() is not None:
            action = "replaced"
    return _view(row), action


async def list_memories(
    *, session: AsyncSession, owner_id: uuid.UUID, include_history: bool = False
) -> list[MemoryView]:
    rows = await session.execute(
        text(
            f"select {_COLUMNS} from memories where owner_id = :owner"
            " and (:history or superseded_by_id is null)"
            " order by pinned desc, updated_at desc"
        ),
        {"owner": owner_id, "history": include_history},
    )
    return [_view(row) for row in rows]


async def history_of(
    *, session: AsyncSession, owner_id: uuid.UUID, memory_id: uuid.UUID
) -> list[MemoryView]:
    """The memories this one replaced, newest first."""
    rows = await session.execute(
        text(
            f"""
            with recursive chain as (
                select id, superseded_by_id from memories
                 where owner_id = :owner and superseded_by_id = :id
                union all
                select m.id, m.superseded_by_id from memories m
                  join chain c on m.superseded_by_id = c.id where m.owner_id = :owner
            )
            select {_COLUMNS} from memories where id in (select id from chain)
             order by updated_at desc
            """
        ),
        {"owner": owner_id, "id": memory_id},
    )
    return [_view(row) for row in rows]


async def edit_memory(
    *,
    session: AsyncSession,
    owner_id: uuid.UUID,
    memory_id: uuid.UUID,
    content: str,
    embedder: Embedder,
) -> MemoryView | None:
    content = _checked(content)
    vector = (await embedder.embed_async([content]))[0]
    row = (
        await session.execute(
            text(
                "update memories set content = :content, embedding = cast(:vector as vector),"
                f" source = 'manual', updated_at = now() where id = :id and owner_id = :owner"
                f" returning {_COLUMNS}"
            ),
            {"content": content, "vector": _vector(vector), "id": memory_id, "owner": owner_id},
        )
    ).first()
    return _view(row) if row else None


async def set_pinned(
    *, session: AsyncSession, owner_id: uuid.UUID, memory_id: uuid.UUID, pinned: bool
) -> bool:
    result = await session.execute(
        text(
            "update memories set pinned = :pinned, updated_at = now()"
            " where id = :id and owner_id = :owner returning id"
        ),
        {"pinned": pinned, "id": memory_id, "owner": owner_id},
    )
    return result.first() is not None


async def delete_memory(
    *, session: AsyncSession, owner_id: uuid.UUID, memory_id: uuid.UUID
) -> bool:
    result = await session.execute(
        text("delete from memories where id = :id and owner_id = :owner returning id"),
        {"id": memory_id, "owner": owner_id},
    )
    return result.first() is not None


async def recall(
    *,
    session: AsyncSession,
    owner_id: uuid.UUID,
    query: str,
    embedder: Embedder,
    limit: int = 8,
    query_vector: np.ndarray | None = None,
    semantic: bool = True,
) -> list[MemoryView]:
    """Pinned memories, then those relevant to `query` (semantic and keyword, fused).

    `query_vector` is the query already embedded by a caller that needs it elsewhere
    too; `semantic=False` when the caller knows none of the owner's memories is
    embedded, which saves embedding the query for a search that cannot find anything.
    """
    words = [word for word in " ".join(query.split()).split(" ") if len(word) > 2][:12]
    semantic = semantic and bool(words)
    vector = None
    if semantic:
        vector = query_vector if query_vector is not None else await _embedded(embedder, query)
    rows = await session.execute(
        _RECALL_SQL,
        {
            "owner": owner_id,
            "semantic": semantic,
            "vector": _vector(vector) if vector is not None else None,
            "limit": limit * 2,
            "patterns": [f"%{word.replace('%', '').replace('_', '')}%" for word in words],
        },
    )
    found: dict[int, list] = {PINNED: [], NEAREST: [], BY_WORDS: []}
    for row in rows:
        found[row.found_by].append(row)
    chosen: dict[uuid.UUID, MemoryView] = {row.id: _view(row) for row in found[PINNED]}
    scores: dict[uuid.UUID, float] = {}
    views: dict[uuid.UUID, MemoryView] = {}
    for ranked in (found[NEAREST], found[BY_WORDS]):
        for rank, row in enumerate(ranked):
            scores[row.id] = scores.get(row.id, 0.0) + 1.0 / (RRF_K + rank + 1)
            views[row.id] = _view(row)
    for memory_id in sorted(scores, key=scores.get, reverse=True):
        chosen.setdefault(memory_id, views[memory_id])
    return list(chosen.values())[:limit]


PINNED, NEAREST, BY_WORDS = 0, 1, 2
_CURRENT = "owner_id = :owner and superseded_by_id is null"
# The three lists of `recall` in one statement, each in its own order (`position`).
_RECALL_SQL = text(
    f"""
    (select {PINNED} as found_by,
            row_number() over (order by updated_at desc) as position, {_COLUMNS}
       from memories where {_CURRENT} and pinned)
    union all
    (select {NEAREST}, row_number() over (order by embedding <=> cast(:vector as vector)),
            {_COLUMNS}
       from memories where {_CURRENT} and :semantic and embedding is not null
      order by embedding <=> cast(:vector as vector) limit :limit)
    union all
    (select {BY_WORDS}, row_number() over (order by updated_at desc), {_COLUMNS}
       from memories where {_CURRENT}
        and content ilike any(cast(:patterns as text[]))
      order by updated_at desc limit :limit)
    order by found_by, position
    """
)


async def _embedded(embedder: Embedder, query: str) -> np.ndarray:
    return (await embedder.embed_async([query]))[0]


# Below this cosine similarity a memory is not "about" the query, only the least far.
SEARCH_MIN_SIMILARITY = 0.35


async def search_memories(
    *,
    session: AsyncSession,
    owner_id: uuid.UUID,
    query: str,
    embedder: Embedder,
    limit: int = 30,
) -> list[MemoryView]:
    """Current memories containing the query's words or close to it in meaning, best
    first (keyword and semantic ranks fused); [] for an empty query."""
    query = " ".join(query.split())[:MAX_MEMORY_CHARS]
    if not query:
        return []
    current = "owner_id = :owner and superseded_by_id is null"
    vector = (await embedder.embed_async([query]))[0]
    semantic = await session.execute(
        text(
            f"select {_COLUMNS} from memories where {current} and embedding is not null"
            " and 1 - (embedding <=> cast(:vector as vector)) >= :minimum"
            " order by embedding <=> cast(:vector as vector) limit :limit"
        ),
        {
            "owner": owner_id,
            "vector": _vector(vector),
            "minimum": SEARCH_MIN_SIMILARITY,
            "limit": limit,
        },
    )
    patterns = [f"%{word}%" for word in query.replace("%", "").replace("_", "").split() if word]
    keyword = []
    if patterns:
        # Every word must appear: a search narrows, it does not widen.
        keyword = list(
            await session.execute(
                text(
                    f"select {_COLUMNS} from memories where {current}"
                    " and content ilike all(cast(:patterns as text[]))"
                    " order by pinned desc, updated_at desc limit :limit"
                ),
                {"owner": owner_id, "limit": limit, "patterns": patterns},
            )
        )
    scores: dict[uuid.UUID, float] = {}
    views: dict[uuid.UUID, MemoryView] = {}
    for ranked in (keyword, list(semantic)):
        for rank, row in enumerate(ranked):
            scores[row.id] = scores.get(row.id, 0.0) + 1.0 / (RRF_K + rank + 1)
            views[row.id] = _view(row)
    ordered = sorted(scores, key=lambda memory_id: scores[memory_id], reverse=True)
    return [views[memory_id] for memory_id in ordered[:limit]]
