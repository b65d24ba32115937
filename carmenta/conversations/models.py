from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    Column,
    Computed,
    DateTime,
    Index,
    Integer,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, TSVECTOR
from sqlmodel import Field, SQLModel

from carmenta.model_fields import (
    created_at_field,
    defaulted,
    optional_timestamp,
    owner_key,
    updated_at_field,
    utcnow,
    uuid_primary_key,
)


class MessageRole(StrEnum):
    user = "user"
    assistant = "assistant"
    system = "system"
    tool = "tool"


class MessageStatus(StrEnum):
    streaming = "streaming"
    complete = "complete"
    # The person pressed Stop; what arrived is kept.
    stopped = "stopped"
    # The model asked to act (post, draft, create) and waits for the person's answer.
    waiting = "waiting"
    # The server stopped while the reply was streaming.
    interrupted = "interrupted"
    failed = "failed"


# An explicit text search configuration keeps the expressions immutable, as generated
# columns require.
CONVERSATION_TITLE_VECTOR_SQL = "to_tsvector('english'::regconfig, coalesce(title, ''))"
MESSAGE_CONTENT_VECTOR_SQL = "to_tsvector('english'::regconfig, coalesce(content, ''))"


class Conversation(SQLModel, table=True):
    __tablename__ = "conversations"
    __table_args__ = (
        Index("ix_conversations_owner_activity", "owner_id", text("last_activity_at DESC")),
        Index("ix_conversations_search_vector", "search_vector", postgresql_using="gin"),
    )

    id: uuid.UUID = uuid_primary_key()
    owner_id: uuid.UUID = owner_key()
    title: str = defaulted("New conversation", sa_type=Text)
    title_edited: bool = defaulted(False)
    model: str | None = Field(default=None, sa_type=Text)
    starred: bool = defaulted(False)
    archived_at: datetime | None = optional_timestamp()
    created_at: datetime = created_at_field()
    updated_at: datetime = updated_at_field()
    last_activity_at: datetime = Field(
        default_factory=utcnow,
        sa_type=DateTime(timezone=True),
        sa_column_kwargs={"server_default": func.now(), "nullable": False},
    )
    search_vector: str | None = Field(
        default=None,
        sa_column=Column(TSVECTOR, Computed(CONVERSATION_TITLE_VECTOR_SQL, persisted=True)),
    )


class Message(SQLModel, table=True):
    __tablename__ = "messages"
    __table_args__ = (
        CheckConstraint("role IN ('user', 'assistant', 'system', 'tool')", name="role"),
        CheckConstraint(
            "status IN ('streaming', 'complete', 'stopped', 'waiting', 'interrupted', 'failed')",
            name="status",
        ),
        Index("ix_messages_conversation_created", "conversation_id", "created_at"),
        Index("ix_messages_search_vector", "search_vector", postgresql_using="gin"),
        # Replies left streaming by a stopped server are found without a scan.
        Index(
            "ix_messages_streaming",
            "updated_at",
            postgresql_where=text("status = 'streaming'"),
        ),
        # One reply at a time per conversation: a send stores its exchange with
        # `on conflict do nothing` against this index rather than locking the row.
        Index(
            "uq_messages_one_streaming_reply",
            "conversation_id",
            unique=True,
            postgresql_where=text("status = 'streaming'"),
        ),
    )

    id: uuid.UUID = uuid_primary_key()
    conversation_id: uuid.UUID = Field(
        foreign_key="conversations.id", ondelete="CASCADE", nullable=False
    )
    # Denormalised owner so every query can filter by owner without a join.
    owner_id: uuid.UUID = owner_key()
    role: str = Field(sa_type=Text, nullable=False)
    content: str = defaulted("", sa_type=Text)
    status: str = defaulted(MessageStatus.complete.value, sa_type=Text)
    model: str | None = Field(default=None, sa_type=Text)
    input_tokens: int | None = Field(default=None, sa_type=Integer)
    output_tokens: int | None = Field(default=None, sa_type=Integer)
    error: str | None = Field(default=None, sa_type=Text)
    # Structured parts: tool calls and results, attachment references, context used.
    details: dict[str, Any] = Field(
        default_factory=dict,
        sa_column=Column(JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    )
    created_at: datetime = created_at_field()
    updated_at: datetime = updated_at_field()
    search_vector: str | None = Field(
        default=None,
        sa_column=Column(TSVECTOR, Computed(MESSAGE_CONTENT_VECTOR_SQL, persisted=True)),
    )
