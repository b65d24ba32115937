from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, Column, Integer, Text, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from carmenta.model_fields import (
    created_at_field,
    defaulted,
    owner_key,
    updated_at_field,
    uuid_primary_key,
)


class FileStatus(StrEnum):
    uploading = "uploading"
    processing = "processing"
    ready = "ready"
    failed = "failed"


class StoredFile(SQLModel, table=True):
    """An uploaded file. The stored object's key is generated, never the file's name."""

    __tablename__ = "files"
    __table_args__ = (
        CheckConstraint(
            "status IN ('uploading', 'processing', 'ready', 'failed')",
            name="status",
        ),
        CheckConstraint("size_bytes >= 0", name="size_not_negative"),
        CheckConstraint("revision >= 0", name="revision_not_negative"),
    )

    id: uuid.UUID = uuid_primary_key()
    owner_id: uuid.UUID = owner_key()
    storage_key: str = Field(sa_type=Text, unique=True, nullable=False)
    original_name: str = Field(sa_type=Text, nullable=False)
    content_type: str = Field(sa_type=Text, nullable=False)
    kind: str = Field(sa_type=Text, nullable=False)
    size_bytes: int = Field(sa_type=BigInteger, nullable=False)
    sha256: str = Field(sa_type=Text, nullable=False)
    status: str = defaulted(FileStatus.uploading.value, sa_type=Text)
    error: str | None = Field(default=None, sa_type=Text)
    # What processing found: dimensions, page count, duration, thumbnail key.
    extracted_metadata: dict[str, Any] = Field(
        default_factory=dict,
        sa_column=Column(JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    )
    extracted_text: str | None = Field(default=None, sa_type=Text)
    # Bumped each time the content is replaced; the stored objects' keys include it, so
    # a link, a cached variant or a late processing run of older content never mixes in.
    revision: int = defaulted(0, sa_type=Integer)
    created_at: datetime = created_at_field()
    updated_at: datetime = updated_at_field()
