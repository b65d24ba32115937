"""What the Memory page shows and does, each in a transaction of its own."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from carmenta import db
from carmenta.knowledge.embeddings import get_embedder
from carmenta.memory import service as memory_service
from carmenta.memory.extraction import ProposedMemory
from carmenta.memory.models import MemoryKind
from carmenta.memory.service import MemoryView
from carmenta.settings import get_settings

KIND_LABELS = {
    MemoryKind.fact.value: "Fact",
    MemoryKind.preference.value: "Preference",
    MemoryKind.instruction.value: "Instruction",
}
SOURCE_LABELS = {"manual": "Added by you", "conversation": "From a conversation"}
DATE_FORMAT = "%d %b %Y, %H:%M"


class MemoryRefused(ValueError):
    """Input the page refuses; the message is shown as is."""


@dataclass
class EarlierVersion:
    content: str = ""
    replaced: str = ""


@dataclass
class MemoryCard:
    id: str = ""
    content: str = ""
    kind: str = ""
    kind_label: str = ""
    source_label: str = ""
    confidence_label: str = ""
    created: str = ""
    updated: str = ""
    edited: bool = False
    pinned: bool = False
    # The memories this one replaced, newest first.
    history: list[EarlierVersion] = field(default_factory=list)


def _card(view: MemoryView, history: list[MemoryView]) -> MemoryCard:
    return MemoryCard(
        id=str(view.id),
        content=view.content,
        kind=view.kind,
        kind_label=KIND_LABELS.get(view.kind, view.kind.capitalize()),
        source_label=SOURCE_LABELS.get(view.source, view.source.capitalize()),
        confidence_label=f"{round(view.confidence * 100)}% sure",
        created=view.created_at.strftime(DATE_FORMAT),
        updated=view.updated_at.strftime(DATE_FORMAT),
        edited=(view.updated_at - view.created_at).total_seconds() >= 1,
        pinned=view.pinned,
        history=[
            EarlierVersion(content=old.content, replaced=old.updated_at.strftime(DATE_FORMAT))
            for old in history
        ],
    )


def _parse(memory_id: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(memory_id))
    except (ValueError, TypeError, AttributeError):
        return None


async def _cards(session, owner_id: uuid.UUID, views: list[MemoryView]) -> list[MemoryCard]:
    cards = []
    for view in views:
        # Only a memory with a slot ("name", "home") can have replaced another.
        history = (
            await memory_service.history_of(session=session, owner_id=owner_id, memory_id=view.id)
            if view.slot
            else []
        )
        cards.append(_card(view, history))
    return cards


async def memory_cards(*, owner_id: uuid.UUID) -> list[MemoryCard]:
    """Current memories, pinned first, then the most recently changed."""
    async with db.session_scope() as session:
        views = await memory_service.list_memories(session=session, owner_id=owner_id)
        return await _cards(session, owner_id, views)


async def search(*, owner_id: uuid.UUID, query: str) -> list[MemoryCard]:
    embedder = get_embedder(get_settings())
    async with db.session_scope() as session:
        views = await memory_service.search_memories(
            session=session, owner_id=owner_id, query=query, embedder=embedder
        )
        return await _cards(session, owner_id, views)


async def add(*, owner_id: uuid.UUID, content: str, kind: str) -> str:
    """Keep a memory the user typed; returns what happened (created or updated)."""
    if kind not in KIND_LABELS:
        raise MemoryRefused("Choose whether it is a fact, a preference or an instruction.")
    embedder = get_embedder(get_settings())
    async with db.session_scope() as session:
        _, action = await memory_service.remember(
            session=session,
            owner_id=owner_id,
            proposal=ProposedMemory(content=content, kind=kind),
            embedder=embedder,
            source="manual",
        )
    return action


async def edit(*, owner_id: uuid.UUID, memory_id: str, content: str) -> bool:
    parsed = _parse(memory_id)
    if parsed is None:
        return False
    embedder = get_embedder(get_settings())
    async with db.session_scope() as session:
        edited = await memory_service.edit_memory(
            session=session, owner_id=owner_id, memory_id=parsed, content=content, embedder=embedder
        )
    return edited is not None


async def pin(*, owner_id: uuid.UUID, memory_id: str, pinned: bool) -> bool:
    parsed = _parse(memory_id)
    if parsed is None:
        return False
    async with db.session_scope() as session:
        return await memory_service.set_pinned(
            session=session, owner_id=owner_id, memory_id=parsed, pinned=pinned
        )


async def delete(*, owner_id: uuid.UUID, memory_id: str) -> bool:
    parsed = _parse(memory_id)
    if parsed is None:
        return False
    async with db.session_scope() as session:
        return await memory_service.delete_memory(
            session=session, owner_id=owner_id, memory_id=parsed
        )
