from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Text
from sqlmodel import Field, SQLModel

from carmenta.model_fields import (
    created_at_field,
    defaulted,
    optional_timestamp,
    updated_at_field,
    uuid_primary_key,
)


class User(SQLModel, table=True):
    """A person using Carmenta. Keyed internally; the auth system's id is unique."""

    __tablename__ = "users"

    id: uuid.UUID = uuid_primary_key()
    # The verified token's subject: a Clerk user id, or a built-in account id.
    external_auth_id: str = Field(sa_type=Text, unique=True, index=True, nullable=False)
    auth_provider: str = Field(sa_type=Text, nullable=False)
    # Contact details only; never used to relate rows (emails change).
    email: str | None = Field(default=None, sa_type=Text, index=True)
    display_name: str | None = Field(default=None, sa_type=Text)
    image_url: str | None = Field(default=None, sa_type=Text)
    # Clerk: from public_metadata.role. Built-in accounts: from ADMIN_EMAILS.
    is_admin: bool = defaulted(False)
    created_at: datetime = created_at_field()
    updated_at: datetime = updated_at_field()
    last_seen_at: datetime | None = optional_timestamp()


class DeletedAccount(SQLModel, table=True):
    """The auth id of a deleted account, so a token still in flight cannot revive it."""

    __tablename__ = "deleted_accounts"

    external_auth_id: str = Field(sa_type=Text, primary_key=True)
    deleted_at: datetime = created_at_field()
