from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, Column, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from carmenta.model_fields import created_at_field, defaulted, updated_at_field


class JobProgress(SQLModel, table=True):
    """What a background job reports while it runs, beside the queue's own row.

    The queue (procrastinate) owns the job's status; this table adds who the job is
    for, how far along it is and what it produced, so pages can show it.
    """

    __tablename__ = "job_progress"
    __table_args__ = (CheckConstraint("percent >= 0 AND percent <= 100", name="percent"),)

    job_id: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    owner_id: uuid.UUID | None = Field(
        default=None, foreign_key="users.id", ondelete="CASCADE", index=True
    )
    task_name: str = Field(sa_type=Text, nullable=False)
    percent: int = defaulted(0)
    message: str | None = Field(default=None, sa_type=Text)
    result: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONB, nullable=True))
    created_at: datetime = created_at_field()
    updated_at: datetime = updated_at_field()
