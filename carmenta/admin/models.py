"""The trail of every change made through the admin console."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, Column, Index, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from carmenta.model_fields import created_at_field, uuid_primary_key


class AdminAuditLog(SQLModel, table=True):
    """One change an admin made: who, to which row, what it was before and after.

    `before` and `after` hold only the columns that changed, never a secret column.
    """

    __tablename__ = "admin_audit_log"
    __table_args__ = (
        CheckConstraint("action IN ('edit', 'retry', 'cancel')", name="action"),
        Index("ix_admin_audit_log_table_row", "table_name", "row_id"),
    )

    id: uuid.UUID = uuid_primary_key()
    # Kept when the admin's own account is deleted: the change still happened.
    admin_user_id: uuid.UUID | None = Field(
        default=None, foreign_key="users.id", ondelete="SET NULL", index=True
    )
    # Whose data the row is (None for rows of no one); their account deletion removes
    # the entry, because `before`/`after` may quote their data.
    owner_id: uuid.UUID | None = Field(
        default=None, foreign_key="users.id", ondelete="CASCADE", index=True
    )
    table_name: str = Field(sa_type=Text, nullable=False)
    row_id: str = Field(sa_type=Text, nullable=False)
    action: str = Field(sa_type=Text, nullable=False)
    before: dict[str, Any] = Field(
        default_factory=dict, sa_column=Column(JSONB, nullable=False, server_default="{}")
    )
    after: dict[str, Any] = Field(
        default_factory=dict, sa_column=Column(JSONB, nullable=False, server_default="{}")
    )
    created_at: datetime = created_at_field()
