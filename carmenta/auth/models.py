"""Tables of authentication: built-in accounts, their sessions, throttling, webhooks."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import DateTime, Index, Integer, Text
from sqlmodel import Field, SQLModel

from carmenta.model_fields import (
    created_at_field,
    defaulted,
    optional_timestamp,
    owner_key,
    updated_at_field,
    uuid_primary_key,
)


class PasswordCredential(SQLModel, table=True):
    """The email and Argon2id hash of a built-in account (never the password)."""

    __tablename__ = "password_credentials"

    user_id: uuid.UUID = Field(foreign_key="users.id", ondelete="CASCADE", primary_key=True)
    # Lower-cased and trimmed, so one address cannot hold two accounts.
    email: str = Field(sa_type=Text, unique=True, nullable=False)
    password_hash: str = Field(sa_type=Text, nullable=False)
    created_at: datetime = created_at_field()
    updated_at: datetime = updated_at_field()


class AuthSession(SQLModel, table=True):
    """A signed-in browser of a built-in account; its id is the token's `sid`."""

    __tablename__ = "auth_sessions"

    id: uuid.UUID = uuid_primary_key()
    user_id: uuid.UUID = owner_key()
    created_at: datetime = created_at_field()
    expires_at: datetime = Field(sa_type=DateTime(timezone=True), nullable=False)
    last_seen_at: datetime | None = optional_timestamp()
    revoked_at: datetime | None = optional_timestamp()
    user_agent: str | None = Field(default=None, sa_type=Text)
    ip_address: str | None = Field(default=None, sa_type=Text)


class SessionHandoff(SQLModel, table=True):
    """A single-use, short-lived code that turns into the session cookie.

    Sign-in happens over the websocket, which cannot set an HttpOnly cookie; the
    browser trades this code for the cookie in one same-origin request.
    """

    __tablename__ = "session_handoffs"

    code_hash: str = Field(sa_type=Text, primary_key=True)
    session_id: uuid.UUID = Field(
        foreign_key="auth_sessions.id", ondelete="CASCADE", nullable=False, index=True
    )
    expires_at: datetime = Field(sa_type=DateTime(timezone=True), nullable=False)


class LoginThrottle(SQLModel, table=True):
    """Failed sign-ins per account (`email:...`) and per address (`ip:...`)."""

    __tablename__ = "login_throttles"

    key: str = Field(sa_type=Text, primary_key=True)
    failures: int = defaulted(0, sa_type=Integer)
    first_failure_at: datetime = created_at_field()
    blocked_until: datetime | None = optional_timestamp()


class WebhookEvent(SQLModel, table=True):
    """Webhook deliveries already handled, so a replay is answered but not re-applied."""

    __tablename__ = "webhook_events"
    __table_args__ = (Index("uq_webhook_events_source_event", "source", "event_id", unique=True),)

    id: uuid.UUID = uuid_primary_key()
    source: str = Field(sa_type=Text, nullable=False)
    event_id: str = Field(sa_type=Text, nullable=False)
    event_type: str | None = Field(default=None, sa_type=Text)
    received_at: datetime = created_at_field()
