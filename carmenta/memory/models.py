from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from pgvector.sqlalchemy import Vector
from sqlalchemy import CheckConstraint, Column, Float, Index, Text
from sqlmodel import Field, SQLModel

from carmenta.model_fields import (
    created_at_field,
    defaulted,
    owner_key,
    updated_at_field,
    uuid_primary_key,
)

# Dimensions of the local embedding model (all-MiniLM-L6-v2).
EMBEDDING_DIMENSIONS = 384


class MemoryKind(StrEnum):
    fact = "fact"
    preference = "preference"
    instruction = "instruction"


class Memory(SQLModel, table=True):
    """A short fact or preference the assistant keeps about its user."""

    __tablename__ = "memories"
    __table_args__ = (
        CheckConstraint("confidence >= 0 AND confidence <= 1", name="confidence_range"),
        Index(
            "ix_memories_embedding_hnsw",
            "embedding",
            postgresql_using="hnsw",
            postgresql_ops={"embedding": "vector_cosine_ops"},
        ),
    )

    id: uuid.UUID = uuid_primary_key()
    owner_id: uuid.UUID = owner_key()
    content: str = Field(sa_type=Text, nullable=False)
    kind: str = defaulted(MemoryKind.fact.value, sa_type=Text)
    # Where it came from: "manual", or "conversation" with the message below.
    source: str = defaulted("manual", sa_type=Text)
    source_message_id: uuid.UUID | None = Field(
        default=None, foreign_key="messages.id", ondelete="SET NULL"
    )
    # What the memory is about when only one can hold at a time ("name", "home"):
    # a new memory for the same slot replaces the old one, which is kept as history.
    slot: str | None = Field(default=None, sa_type=Text, index=True)
    confidence: float = defaulted(1.0, sa_type=Float)
    pinned: bool = defaulted(False)
    # A replaced memory points at the one that replaced it, keeping the history.
    superseded_by_id: uuid.UUID | None = Field(
        default=None, foreign_key="memories.id", ondelete="SET NULL"
    )
    embedding: list[float] | None = Field(
        default=None, sa_column=Column(Vector(EMBEDDING_DIMENSIONS), nullable=True)
    )
    created_at: datetime = created_at_field()
    updated_at: datetime = updated_at_field()
