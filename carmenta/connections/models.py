from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import ARRAY, CheckConstraint, Column, DateTime, Index, Text, text
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


class ConnectionStatus(StrEnum):
    connected = "connected"
    needs_reauth = "needs_reauth"
    error = "error"
    revoked = "revoked"


class CredentialType(StrEnum):
    oauth = "oauth"
    api_key = "api_key"


class ServiceConnection(SQLModel, table=True):
    """One account of one provider, connected by one user."""

    __tablename__ = "service_connections"
    __table_args__ = (
        CheckConstraint(
            "status IN ('connected', 'needs_reauth', 'error', 'revoked')",
            name="status",
        ),
        CheckConstraint(
            "credential_type IN ('oauth', 'api_key')",
            name="credential_type",
        ),
        Index(
            "uq_service_connections_account",
            "owner_id",
            "provider",
            "account_id",
            unique=True,
        ),
        # At most one default account per provider and user.
        Index(
            "uq_service_connections_default",
            "owner_id",
            "provider",
            unique=True,
            postgresql_where=text("is_default"),
        ),
    )

    id: uuid.UUID = uuid_primary_key()
    owner_id: uuid.UUID = owner_key()
    provider: str = Field(sa_type=Text, nullable=False)
    credential_type: str = Field(sa_type=Text, nullable=False)
    account_id: str = Field(sa_type=Text, nullable=False)
    account_label: str = Field(sa_type=Text, nullable=False)
    is_default: bool = defaulted(False)
    status: str = defaulted(ConnectionStatus.connected.value, sa_type=Text)
    # AES-256-GCM ciphertext with its key id; never the plaintext.
    encrypted_credentials: str | None = Field(default=None, sa_type=Text)
    scopes: list[str] = Field(
        default_factory=list,
        sa_column=Column(ARRAY(Text), nullable=False, server_default=text("'{}'::text[]")),
    )
    expires_at: datetime | None = optional_timestamp()
    last_error: str | None = Field(default=None, sa_type=Text)
    connected_at: datetime = Field(
        sa_type=DateTime(timezone=True),
        sa_column_kwargs={"server_default": text("now()"), "nullable": False},
        default_factory=utcnow,
    )
    last_refreshed_at: datetime | None = optional_timestamp()
    last_used_at: datetime | None = optional_timestamp()
    created_at: datetime = created_at_field()
    updated_at: datetime = updated_at_field()


class OAuthState(SQLModel, table=True):
    """A pending authorization: single use, short-lived, bound to its user."""

    __tablename__ = "oauth_states"

    id: uuid.UUID = uuid_primary_key()
    # SHA-256 of the state sent to the provider; the state itself is never stored.
    state_hash: str = Field(sa_type=Text, unique=True, nullable=False)
    owner_id: uuid.UUID = owner_key()
    provider: str = Field(sa_type=Text, nullable=False)
    code_verifier: str | None = Field(default=None, sa_type=Text)
    return_path: str = defaulted("/", sa_type=Text)
    created_at: datetime = created_at_field()
    expires_at: datetime = Field(sa_type=DateTime(timezone=True), nullable=False, index=True)


class ConnectionEventType(StrEnum):
    connected = "connected"
    reconnected = "reconnected"
    refreshed = "refreshed"
    refresh_failed = "refresh_failed"
    needs_reauth = "needs_reauth"
    revoked = "revoked"
    disconnected = "disconnected"


class ConnectionEvent(SQLModel, table=True):
    """The audit trail of a connection: what happened, when, and who caused it."""

    __tablename__ = "connection_events"
    __table_args__ = (
        CheckConstraint("source IN ('user', 'system', 'provider')", name="source"),
        Index("ix_connection_events_owner_created", "owner_id", "created_at"),
    )

    id: uuid.UUID = uuid_primary_key()
    owner_id: uuid.UUID = owner_key()
    # Kept after the connection is deleted, so a disconnect stays on record.
    connection_id: uuid.UUID | None = Field(
        default=None, foreign_key="service_connections.id", ondelete="SET NULL", index=True
    )
    provider: str = Field(sa_type=Text, nullable=False)
    account_id: str | None = Field(default=None, sa_type=Text)
    event: str = Field(sa_type=Text, nullable=False)
    source: str = Field(sa_type=Text, nullable=False)
    detail: str | None = Field(default=None, sa_type=Text)
    created_at: datetime = created_at_field()
