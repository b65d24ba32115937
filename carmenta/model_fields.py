"""Column conventions shared by every table: UUID keys, timestamptz, owner cascade."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, func, text
from sqlmodel import Field, SQLModel

# Deterministic constraint names, so migrations can refer to them on every server.
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


def uuid_primary_key() -> Any:
    return Field(
        default_factory=uuid.uuid4,
        primary_key=True,
        sa_column_kwargs={"server_default": text("gen_random_uuid()")},
    )


def owner_key() -> Any:
    """The owning user; deleting the user deletes the row."""
    return Field(foreign_key="users.id", ondelete="CASCADE", index=True, nullable=False)


def created_at_field() -> Any:
    return Field(
        default_factory=utcnow,
        sa_type=DateTime(timezone=True),
        sa_column_kwargs={"server_default": func.now(), "nullable": False},
    )


def updated_at_field() -> Any:
    return Field(
        default_factory=utcnow,
        sa_type=DateTime(timezone=True),
        sa_column_kwargs={"server_default": func.now(), "onupdate": utcnow, "nullable": False},
    )


def optional_timestamp() -> Any:
    return Field(default=None, sa_type=DateTime(timezone=True), nullable=True)


def defaulted(value: bool | int | float | str, **kwargs: Any) -> Any:
    """A non-null column whose default holds in Python and in the database alike."""
    if isinstance(value, bool):
        literal = "true" if value else "false"
    elif isinstance(value, int | float):
        literal = repr(value)
    else:
        literal = "'" + value.replace("'", "''") + "'"
    return Field(
        default=value,
        nullable=False,
        sa_column_kwargs={"server_default": text(literal)},
        **kwargs,
    )
