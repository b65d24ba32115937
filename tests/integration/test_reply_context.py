"""The context gathered before a reply: the message is embedded at most once, and not at
all for a person with nothing embedded, with the same memories and documents found."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import numpy as np
from sqlalchemy import text

from carmenta.chat.concierge import gather_sources
from carmenta.knowledge import semantic
from carmenta.knowledge import service as knowledge
from carmenta.knowledge.embeddings import get_local_embedder
from carmenta.memory import service as memory
from carmenta.memory.extraction import ProposedMemory

QUESTION = "When is Sarah's birthday?"


class CountingEmbedder:
    """The real local model, keeping a list of every batch it is asked to embed."""

    def __init__(self) -> None:
        self.inner = get_local_embedder()
        self.dimensions = self.inner.dimensions
        self.batches: list[list[str]] = []

    def embed(self, texts: Sequence[str], *, batch_size: int = 32) -> np.ndarray:
        self.batches.append(list(texts))
        return self.inner.embed(texts, batch_size=batch_size)

    async def embed_async(self, texts: Sequence[str], *, batch_size: int = 32) -> np.ndarray:
        self.batches.append(list(texts))
        return await self.inner.embed_async(texts, batch_size=batch_size)


async def _new_user(session) -> uuid.UUID:
    user_id = uuid.uuid4()
    await session.execute(
        text(
            "insert into users (id, external_auth_id, auth_provider, display_name)"
            " values (:id, :external, 'builtin', 'Ada')"
        ),
        {"id": user_id, "external": f"context-{user_id}"},
    )
    return user_id


async def _gather(session, owner: uuid.UUID, embedder: CountingEmbedder):
    return await gather_sources(
        session=session,
        owner_id=owner,
        query=QUESTION,
        embedder=embedder,
        budget_tokens=6000,
        attachments=[],
    )


async def test_a_person_with_nothing_embedded_is_answered_without_embedding_the_message(
    session,
):
    owner = await _new_user(session)
    await knowledge.create_document(
        session=session,
        owner_id=owner,
        parent_path="knowledge",
        title="Sarah's birthday",
        content="Sarah's birthday is on the 12th of March; she loves orchids.",
    )
    embedder = CountingEmbedder()

    _, memories, documents, _ = await _gather(session, owner, embedder)

    assert embedder.batches == []
    assert memories == []
    # Full-text search still finds the document whose chunks are not embedded yet.
    assert [source.title for source in documents] == ["Sarah's birthday"]


async def test_the_message_is_embedded_once_and_finds_what_two_searches_found(session):
    owner = await _new_user(session)
    embedder = CountingEmbedder()
    await memory.remember(
        session=session,
        owner_id=owner,
        proposal=ProposedMemory(content="Sarah loves orchids and hates loud places", kind="fact"),
        embedder=embedder,
    )
    for title, content in (
        ("Sarah's birthday", "Sarah's birthday is on the 12th of March."),
        ("Car", "The car needs new tyres before winter."),
    ):
        await knowledge.create_document(
            session=session,
            owner_id=owner,
            parent_path="knowledge",
            title=title,
            content=content,
        )
    await semantic.embed_pending_chunks(
        session=session, embedder=embedder, limit=100, owner_id=owner
    )
    embedder.batches.clear()

    _, memories, documents, _ = await _gather(session, owner, embedder)

    assert embedder.batches == [[QUESTION]]
    # The same as each search finds when it embeds the message itself.
    recalled = await memory.recall(
        session=session, owner_id=owner, query=QUESTION, embedder=embedder, limit=8
    )
    hits = await semantic.hybrid_search(
        session=session,
        owner_id=owner,
        query=QUESTION,
        embedder=embedder,
        subtree="knowledge",
        limit=6,
    )
    assert [source.id for source in memories] == [str(item.id) for item in recalled]
    assert [source.id for source in documents] == [str(hit.id) for hit in hits]
    assert "Sarah loves orchids and hates loud places" in [source.text for source in memories]
    assert documents[0].title == "Sarah's birthday"
