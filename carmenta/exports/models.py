"""A person's export of all their data: a zip in the file store, kept for a while."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, CheckConstraint, Column, DateTime, Text
from sqlmodel import Field, SQLModel

from carmenta.model_fields import (
    created_at_field,
    defaulted,
    optional_timestamp,
    owner_key,
    updated_at_field,
    uuid_primary_key,
)


class ExportStatus(StrEnum):
    building = "building"
    ready = "ready"
    failed = "failed"


class DataExport(SQLModel, table=True):
    __tablename__ = "data_exports"
    __table_args__ = (
        CheckConstraint("status IN ('building', 'ready', 'failed')", name="status"),
        CheckConstraint("size_bytes >= 0", name="size_not_negative"),
    )

    id: uuid.UUID = uuid_primary_key()
    owner_id: uuid.UUID = owner_key()
    # The job building it; progress is read from the job while it runs.
    job_id: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    status: str = defaulted(ExportStatus.building.value, sa_type=Text)
    # The zip's key in the file store, under the owner's prefix; set once it is stored.
    object_key: str | None = Field(default=None, sa_type=Text)
    size_bytes: int = defaulted(0, sa_type=BigInteger)
    error: str | None = Field(default=None, sa_type=Text)
    completed_at: datetime | None = optional_timestamp()
    # After this the zip is deleted from the store and the row with it.
    expires_at: datetime = Field(
        sa_column=Column(DateTime(timezone=True), nullable=False, index=True)
    )
    created_at: datetime = created_at_field()
    updated_at: datetime = updated_at_field()
