"""Service connections as the rest of the app sees them: save, list, use, refresh,
disconnect, and re-encrypt under a new key.

Credentials are one encrypted JSON blob per connection (carmenta.connections.crypto),
bound to the row's id; nothing here returns, logs or stores a secret in clear, except
`get_access_token` and `api_key_credentials`, whose results are for server-side
callers only.

Functions that take `session` run in the caller's transaction (the caller commits).
`get_access_token`, `test_connection`, `refresh_expiring_connections` and
`rotate_encryption` run their own short transactions, so they can be called anywhere.
Everything a user asks for is filtered by their verified id: another user's
connection looks like no connection at all.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import logging
import re
import ssl
import uuid
import weakref
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx
from sqlalchemy import (
    Integer,
    Text,
    Uuid,
    and_,
    bindparam,
    cast,
    column,
    delete,
    exists,
    func,
    or_,
    select,
    update,
)
from sqlalchemy import table as sql_table
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel.ext.asyncio.session import AsyncSession

from carmenta.connections.crypto import (
    ENCRYPTED_COLUMNS,
    DecryptionError,
    KeyRing,
    credential_aad,
    field_aad,
    get_key_ring,
)
from carmenta.connections.models import (
    ConnectionEvent,
    ConnectionEventType,
    ConnectionStatus,
    CredentialType,
    ServiceConnection,
)
from carmenta.connections.providers._tokens import standard_token_set
from carmenta.connections.providers.base import AccountIdentity, ProviderSpec, TokenSet
from carmenta.db import get_async_engine
from carmenta.errors import CarmentaError, ConfigurationError
from carmenta.model_fields import utcnow
from carmenta.settings import Settings, get_settings
from carmenta.users.service import register_account_cleanup

logger = logging.getLogger(__name__)

_sc = ServiceConnection.__table__  # type: ignore[attr-defined]
_ev = ConnectionEvent.__table__  # type: ignore[attr-defined]

# get_access_token refreshes a token that expires within this margin.
REFRESH_MARGIN = timedelta(minutes=5)
# The background job refreshes tokens that expire within this window.
BACKGROUND_REFRESH_WINDOW = timedelta(minutes=15)
# last_used_at is advisory: written at most this often, so reads stay reads.
LAST_USED_RESOLUTION = timedelta(minutes=1)
# After a failed refresh, callers for this long use the current token (or fail fast)
# instead of each retrying against a provider that is down.
FAILED_REFRESH_COOLDOWN = timedelta(seconds=30)
# A token still valid this long is handed out when a refresh fails temporarily.
MIN_USABLE_LIFETIME = timedelta(seconds=60)
REVOKE_TIMEOUT_SECONDS = 10.0
BACKGROUND_REFRESH_CONCURRENCY = 4
# Token-endpoint errors that mean the grant is gone: only a new authorization helps.
_REAUTH_ERRORS = frozenset(
    # GitHub answers a dead refresh token with bad_refresh_token.
    {
        "invalid_grant",
        "invalid_refresh_token",
        "token_revoked",
        "token_expired",
        "bad_refresh_token",
    }
)
_ERROR_CODE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_SOURCES = frozenset({"user", "system", "provider"})
# Namespace of the advisory locks that serialize default-account changes.
_DEFAULT_LOCK_CLASS = 0x636E6E  # "cnn"


# Errors ---------------------------------------------------------------------------


class ConnectionServiceError(CarmentaError):
    """A connection cannot be used; the message is meant for a person."""


class ConnectionNotFound(ConnectionServiceError, LookupError):
    """No such connection for this user."""


class ReauthorizationRequired(ConnectionServiceError):
    """The provider no longer honours the grant: the user must reconnect."""

    def __init__(self, message: str, *, connection_id: uuid.UUID, provider_id: str) -> None:
        super().__init__(message)
        self.connection_id = connection_id
        self.provider_id = provider_id


class TemporaryProviderError(ConnectionServiceError):
    """The provider did not answer usefully (timeout, 5xx); the connection is intact."""


class RefreshRejected(ConnectionServiceError):
    """The provider refused the refresh for a reason reconnecting would not fix
    (the app's client credentials, a malformed answer); the connection is intact."""


# Views ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ConnectionView:
    """A connection as pages show it: no secrets."""

    id: uuid.UUID
    provider: str
    account_id: str
    account_label: str
    is_default: bool
    status: str
    credential_type: str
    scopes: list[str]
    expires_at: datetime | None
    connected_at: datetime
    last_refreshed_at: datetime | None
    last_used_at: datetime | None
    last_error: str | None

    @property
    def needs_reauth(self) -> bool:
        return self.status == ConnectionStatus.needs_reauth.value


@dataclass(frozen=True)
class ConnectionEventView:
    id: uuid.UUID
    connection_id: uuid.UUID | None
    provider: str
    account_id: str | None
    event: str
    source: str
    detail: str | None
    created_at: datetime


@dataclass(frozen=True)
class AccessToken:
    """A usable credential, for server-side calls only (never put it in UI state)."""

    token: str = field(repr=False)
    connection_id: uuid.UUID
    account_id: str
    expires_at: datetime | None
    extra: Mapping[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class RetryPolicy:
    """How refreshes retry a provider that times out or answers 5xx/429."""

    # Waits before each retry: len(delays) + 1 attempts in all.
    delays: tuple[float, ...] = (0.5, 1.0, 2.0)
    timeout_seconds: float = 10.0
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep


DEFAULT_RETRY = RetryPolicy()


@dataclass
class RefreshSummary:
    refreshed: int = 0
    already_fresh: int = 0
    needs_reauth: int = 0
    failed: int = 0
    skipped: int = 0


@dataclass
class RotationReport:
    key_id: str
    rotated: int = 0
    # (table, row id) of values no key in the ring can decrypt; left as they are.
    unreadable: list[tuple[str, str]] = field(default_factory=list)


_VIEW_COLUMNS = (
    _sc.c.id,
    _sc.c.provider,
    _sc.c.account_id,
    _sc.c.account_label,
    _sc.c.is_default,
    _sc.c.status,
    _sc.c.credential_type,
    _sc.c.scopes,
    _sc.c.expires_at,
    _sc.c.connected_at,
    _sc.c.last_refreshed_at,
    _sc.c.last_used_at,
    _sc.c.last_error,
)
_TOKEN_COLUMNS = (
    _sc.c.id,
    _sc.c.owner_id,
    _sc.c.provider,
    _sc.c.account_id,
    _sc.c.credential_type,
    _sc.c.status,
    _sc.c.encrypted_credentials,
    _sc.c.expires_at,
    _sc.c.is_default,
    _sc.c.connected_at,
    _sc.c.last_refreshed_at,
    _sc.c.last_used_at,
)


def _view(row: Any) -> ConnectionView:
    return ConnectionView(
        id=row.id,
        provider=row.provider,
        account_id=row.account_id,
        account_label=row.account_label,
        is_default=row.is_default,
        status=row.status,
        credential_type=row.credential_type,
        scopes=list(row.scopes or []),
        expires_at=row.expires_at,
        connected_at=row.connected_at,
        last_refreshed_at=row.last_refreshed_at,
        last_used_at=row.last_used_at,
        last_error=row.last_error,
    )


# Helpers --------------------------------------------------------------------------


def _seal(connection_id: uuid.UUID, payload: Mapping[str, Any], ring: KeyRing) -> str:
    blob = json.dumps(payload, separators=(",", ":"), default=str).encode("utf-8")
    return ring.encrypt(blob, aad=credential_aad(connection_id))


def _open(connection_id: uuid.UUID, value: str | None, ring: KeyRing) -> dict[str, Any]:
    if value is None:
        return {}
    return json.loads(ring.decrypt(value, aad=credential_aad(connection_id)))


def _check_source(source: str) -> None:
    if source not in _SOURCES:
        raise ValueError(f"source must be one of {sorted(_SOURCES)}")


async def _connection(session: AsyncSession) -> AsyncConnection:
    # Core statements on the session's own connection: inside the caller's transaction.
    return await session.connection()


async def _lock_defaults(conn: AsyncConnection, owner_id: uuid.UUID, provider_id: str) -> None:
    """Serialize changes to which account of (owner, provider) is the default."""
    await conn.execute(
        select(
            func.pg_advisory_xact_lock(
                cast(_DEFAULT_LOCK_CLASS, Integer), func.hashtext(f"{owner_id}|{provider_id}")
            )
        )
    )


async def _record(
    conn: AsyncConnection,
    *,
    owner_id: uuid.UUID,
    connection_id: uuid.UUID | None,
    provider_id: str,
    account_id: str | None,
    event: ConnectionEventType,
    source: str,
    detail: str | None = None,
) -> None:
    await conn.execute(
        _ev.insert().values(
            id=uuid.uuid4(),
            owner_id=owner_id,
            connection_id=connection_id,
            provider=provider_id,
            account_id=account_id,
            event=event.value,
            source=source,
            detail=detail,
            # The app's clock, so events of one transaction keep their order.
            created_at=utcnow(),
        )
    )


async def _promote_default(conn: AsyncConnection, owner_id: uuid.UUID, provider_id: str) -> None:
    """Make the oldest remaining account the default when none is (lock held)."""
    other = _sc.alias("other")
    candidate = _sc.alias("candidate")
    oldest = (
        select(candidate.c.id)
        .where(candidate.c.owner_id == owner_id, candidate.c.provider == provider_id)
        .order_by(candidate.c.connected_at, candidate.c.id)
        .limit(1)
        .scalar_subquery()
    )
    await conn.execute(
        update(_sc)
        .where(
            _sc.c.id == oldest,
            ~exists().where(
                other.c.owner_id == owner_id,
                other.c.provider == provider_id,
                other.c.is_default,
            ),
        )
        .values(is_default=True)
    )


async def _provider_for(provider_id: str, settings: Settings) -> ProviderSpec | None:
    """The registry's spec, ready for network use (OIDC discovery); None if unknown."""
    from carmenta.connections.providers import registry

    try:
        return await registry.load_provider(provider_id, settings)
    except LookupError:
        return None


def _error_kind(error: BaseException) -> str:
    """What went wrong, without the exception's text (URLs there may carry tokens)."""
    status = _status_of(error)
    if status is not None:
        return f"HTTP {status}"
    return type(error).__name__


def _status_of(error: BaseException) -> int | None:
    if isinstance(error, httpx.HTTPStatusError):
        return error.response.status_code
    status = getattr(error, "status_code", None)
    return status if isinstance(status, int) else None


# Saving ---------------------------------------------------------------------------


async def _upsert(
    session: AsyncSession,
    *,
    owner_id: uuid.UUID,
    provider_id: str,
    account_id: str,
    columns: dict[str, Any],
    payload: dict[str, Any],
    source: str,
) -> tuple[ConnectionView, bool]:
    _check_source(source)
    if not account_id:
        raise ValueError("the account identity has no account id")
    ring = get_key_ring()
    conn = await _connection(session)
    await _lock_defaults(conn, owner_id, provider_id)
    now = utcnow()
    # The id is chosen here so the ciphertext can be bound to it before the insert.
    new_id = uuid.uuid4()
    statement = pg_insert(_sc).values(
        id=new_id,
        owner_id=owner_id,
        provider=provider_id,
        account_id=account_id,
        is_default=False,
        encrypted_credentials=_seal(new_id, payload, ring),
        connected_at=now,
        created_at=now,
        updated_at=now,
        **columns,
    )
    statement = statement.on_conflict_do_update(
        index_elements=[_sc.c.owner_id, _sc.c.provider, _sc.c.account_id],
        set_={
            **{name: statement.excluded[name] for name in columns},
            "connected_at": now,
            "updated_at": now,
        },
    ).returning(_sc.c.id)
    connection_id = (await conn.execute(statement)).scalar_one()
    created = connection_id == new_id
    if not created:
        # The account was already connected: the row keeps its id (its events point
        # at it), so the secret is sealed again for that id.
        payload = await _carry_over_refresh_token(conn, connection_id, payload, ring)
        await conn.execute(
            update(_sc)
            .where(_sc.c.id == connection_id)
            .values(encrypted_credentials=_seal(connection_id, payload, ring))
        )
    # The first account of a provider becomes its default.
    other = _sc.alias("other")
    await conn.execute(
        update(_sc)
        .where(
            _sc.c.id == connection_id,
            ~exists().where(
                other.c.owner_id == owner_id,
                other.c.provider == provider_id,
                other.c.is_default,
            ),
        )
        .values(is_default=True)
    )
    await _record(
        conn,
        owner_id=owner_id,
        connection_id=connection_id,
        provider_id=provider_id,
        account_id=account_id,
        event=ConnectionEventType.connected if created else ConnectionEventType.reconnected,
        source=source,
    )
    row = (await conn.execute(select(*_VIEW_COLUMNS).where(_sc.c.id == connection_id))).one()
    return _view(row), created


async def _carry_over_refresh_token(
    conn: AsyncConnection, connection_id: uuid.UUID, payload: dict[str, Any], ring: KeyRing
) -> dict[str, Any]:
    # Google grants a refresh token only on first consent; a reconnect without one
    # keeps the one already held for the same account.
    if "refresh_token" not in payload or payload["refresh_token"]:
        return payload
    stored = (
        await conn.execute(select(_sc.c.encrypted_credentials).where(_sc.c.id == connection_id))
    ).scalar_one()
    try:
        previous = _open(connection_id, stored, ring)
    except (DecryptionError, ValueError):
        return payload
    if previous.get("refresh_token"):
        return {**payload, "refresh_token": previous["refresh_token"]}
    return payload


async def save_oauth_connection(
    *,
    session: AsyncSession,
    owner_id: uuid.UUID,
    provider: ProviderSpec,
    identity: AccountIdentity,
    tokens: TokenSet,
    requested_scopes: Sequence[str],
    source: str = "user",
) -> tuple[ConnectionView, bool]:
    """Store the tokens of a completed authorization; returns (view, created).

    Reconnecting an account already connected updates its row (same id, default
    flag kept) and records `reconnected`; a new account records `connected` and
    becomes the provider's default when it is the user's first.
    """
    if tokens.granted_scopes is not None:
        scopes = sorted(tokens.granted_scopes)
    else:
        scopes = list(dict.fromkeys(requested_scopes))
    return await _upsert(
        session,
        owner_id=owner_id,
        provider_id=provider.id,
        account_id=identity.account_id,
        columns={
            "credential_type": CredentialType.oauth.value,
            "account_label": identity.label,
            "status": ConnectionStatus.connected.value,
            "scopes": scopes,
            "expires_at": tokens.expires_at,
            "last_error": None,
        },
        payload={
            "access_token": tokens.access_token,
            "refresh_token": tokens.refresh_token,
            "extra": dict(tokens.extra),
        },
        source=source,
    )


async def save_api_key_connection(
    *,
    session: AsyncSession,
    owner_id: uuid.UUID,
    provider: ProviderSpec,
    identity: AccountIdentity,
    api_key: str,
    base_url: str | None,
    source: str = "user",
) -> ConnectionView:
    """Store a checked API key (and its base URL, kept in the encrypted blob too)."""
    if not api_key:
        raise ValueError("the API key is empty")
    view, _ = await _upsert(
        session,
        owner_id=owner_id,
        provider_id=provider.id,
        account_id=identity.account_id,
        columns={
            "credential_type": CredentialType.api_key.value,
            "account_label": identity.label,
            "status": ConnectionStatus.connected.value,
            "scopes": [],
            "expires_at": None,
            "last_error": None,
        },
        payload={"api_key": api_key, "base_url": base_url},
        source=source,
    )
    return view


# Reading --------------------------------------------------------------------------


async def list_connections(*, session: AsyncSession, owner_id: uuid.UUID) -> list[ConnectionView]:
    conn = await _connection(session)
    rows = await conn.execute(
        select(*_VIEW_COLUMNS)
        .where(_sc.c.owner_id == owner_id)
        .order_by(_sc.c.provider, _sc.c.is_default.desc(), _sc.c.connected_at, _sc.c.id)
    )
    return [_view(row) for row in rows]


async def get_connection(
    *, session: AsyncSession, owner_id: uuid.UUID, connection_id: uuid.UUID
) -> ConnectionView | None:
    conn = await _connection(session)
    row = (
        await conn.execute(
            select(*_VIEW_COLUMNS).where(_sc.c.id == connection_id, _sc.c.owner_id == owner_id)
        )
    ).first()
    return _view(row) if row is not None else None


@dataclass(frozen=True)
class ApiKeyCredentials:
    """An API-key connection's key and base URL, for server-side calls only."""

    connection_id: uuid.UUID
    provider: str
    account_label: str
    api_key: str = field(repr=False)
    base_url: str | None = None


async def api_key_credentials(
    *,
    session: AsyncSession,
    owner_id: uuid.UUID,
    providers: Collection[str],
    connection_id: uuid.UUID | None = None,
) -> list[ApiKeyCredentials]:
    """The owner's usable API-key connections of these providers, decrypted.

    Only connected api_key connections; `connection_id` narrows to one. Another
    user's connection is simply not there. A value no key of the ring can open is
    left out (and logged without it), so one broken row does not hide the others.
    """
    ring = get_key_ring()
    conn = await _connection(session)
    statement = (
        select(_sc.c.id, _sc.c.provider, _sc.c.account_label, _sc.c.encrypted_credentials)
        .where(
            _sc.c.owner_id == owner_id,
            _sc.c.provider.in_(list(providers)),
            _sc.c.credential_type == CredentialType.api_key.value,
            _sc.c.status == ConnectionStatus.connected.value,
            _sc.c.encrypted_credentials.is_not(None),
        )
        .order_by(_sc.c.provider, _sc.c.is_default.desc(), _sc.c.connected_at, _sc.c.id)
    )
    if connection_id is not None:
        statement = statement.where(_sc.c.id == connection_id)
    found: list[ApiKeyCredentials] = []
    for row in await conn.execute(statement):
        try:
            credentials = _open(row.id, row.encrypted_credentials, ring)
        except (DecryptionError, ValueError):
            logger.error("the key of connection %s cannot be decrypted", row.id)
            continue
        api_key = credentials.get("api_key")
        if not isinstance(api_key, str) or not api_key:
            continue
        base_url = credentials.get("base_url")
        found.append(
            ApiKeyCredentials(
                connection_id=row.id,
                provider=row.provider,
                account_label=row.account_label,
                api_key=api_key,
                base_url=base_url if isinstance(base_url, str) and base_url else None,
            )
        )
    return found


async def set_default(
    *, session: AsyncSession, owner_id: uuid.UUID, connection_id: uuid.UUID
) -> bool:
    """Make this account its provider's default; False when it is not the user's."""
    conn = await _connection(session)
    provider_id = (
        await conn.execute(
            select(_sc.c.provider).where(_sc.c.id == connection_id, _sc.c.owner_id == owner_id)
        )
    ).scalar_one_or_none()
    if provider_id is None:
        return False
    await _lock_defaults(conn, owner_id, provider_id)
    # Two statements: a unique index is checked row by row, so one UPDATE setting
    # the new default before clearing the old one could trip it.
    await conn.execute(
        update(_sc)
        .where(
            _sc.c.owner_id == owner_id,
            _sc.c.provider == provider_id,
            _sc.c.is_default,
            _sc.c.id != connection_id,
        )
        .values(is_default=False)
    )
    result = await conn.execute(
        update(_sc)
        .where(_sc.c.id == connection_id, _sc.c.owner_id == owner_id)
        .values(is_default=True)
    )
    return result.rowcount > 0


async def connection_events(
    *,
    session: AsyncSession,
    owner_id: uuid.UUID,
    connection_id: uuid.UUID | None = None,
    limit: int = 50,
) -> list[ConnectionEventView]:
    """The user's audit trail, newest first (of one connection when given)."""
    conn = await _connection(session)
    statement = select(_ev).where(_ev.c.owner_id == owner_id)
    if connection_id is not None:
        statement = statement.where(_ev.c.connection_id == connection_id)
    statement = statement.order_by(_ev.c.created_at.desc(), _ev.c.id).limit(max(1, limit))
    rows = await conn.execute(statement)
    return [
        ConnectionEventView(
            id=row.id,
            connection_id=row.connection_id,
            provider=row.provider,
            account_id=row.account_id,
            event=row.event,
            source=row.source,
            detail=row.detail,
            created_at=row.created_at,
        )
        for row in rows
    ]


# Access tokens --------------------------------------------------------------------


def _usable_or_raise(row: Any) -> None:
    if row.status != ConnectionStatus.connected.value or row.encrypted_credentials is None:
        raise ReauthorizationRequired(
            f"The {row.provider} account {row.account_id} needs to be reconnected",
            connection_id=row.id,
            provider_id=row.provider,
        )


def _expiring(row: Any, now: datetime, margin: timedelta) -> bool:
    return (
        row.credential_type == CredentialType.oauth.value
        and row.expires_at is not None
        and row.expires_at <= now + margin
    )


def _token_from(row: Any, credentials: Mapping[str, Any]) -> AccessToken:
    if row.credential_type == CredentialType.api_key.value:
        base_url = credentials.get("base_url")
        return AccessToken(
            token=credentials["api_key"],
            connection_id=row.id,
            account_id=row.account_id,
            expires_at=None,
            extra={"base_url": base_url} if base_url else {},
        )
    return AccessToken(
        token=credentials["access_token"],
        connection_id=row.id,
        account_id=row.account_id,
        expires_at=row.expires_at,
        extra=dict(credentials.get("extra") or {}),
    )


def _select_for_use(owner_id: uuid.UUID, provider_id: str, account_id: str | None) -> Any:
    statement = select(*_TOKEN_COLUMNS).where(
        _sc.c.owner_id == owner_id, _sc.c.provider == provider_id
    )
    if account_id is not None:
        return statement.where(_sc.c.account_id == account_id)
    # The default account; should none be marked, the oldest one.
    return statement.order_by(_sc.c.is_default.desc(), _sc.c.connected_at, _sc.c.id).limit(1)


async def get_access_token(
    *,
    owner_id: uuid.UUID,
    provider_id: str,
    account_id: str | None = None,
    settings: Settings | None = None,
    provider: ProviderSpec | None = None,
    retry: RetryPolicy | None = None,
) -> AccessToken:
    """A usable access token (or API key) for the user's account of a provider.

    `account_id` None means the provider's default account. A token valid for more
    than REFRESH_MARGIN costs one read and a decrypt. Otherwise it is refreshed,
    once per connection however many callers and processes ask at the same time.
    If the refresh fails temporarily and the current token is still valid for
    MIN_USABLE_LIFETIME, that token is returned; otherwise TemporaryProviderError.

    Raises ConnectionNotFound, ReauthorizationRequired (the user must reconnect),
    TemporaryProviderError (try later) or RefreshRejected.
    `provider` overrides the registry's spec (tests); `retry` the retry policy.
    """
    settings = settings or get_settings()
    ring = get_key_ring(settings)
    now = utcnow()
    async with get_async_engine().connect() as conn:
        row = (await conn.execute(_select_for_use(owner_id, provider_id, account_id))).first()
        if row is None:
            raise ConnectionNotFound(
                f"No {provider_id} account "
                + (f"{account_id} " if account_id is not None else "")
                + "is connected"
            )
        _usable_or_raise(row)
        if not _expiring(row, now, REFRESH_MARGIN):
            token = _token_from(row, _open(row.id, row.encrypted_credentials, ring))
            if row.last_used_at is None or now - row.last_used_at >= LAST_USED_RESOLUTION:
                # Skipped while a refresh holds the row: a read never waits on one.
                mine = _sc.alias("mine")
                unlocked = (
                    select(mine.c.id)
                    .where(
                        mine.c.id == row.id,
                        or_(
                            mine.c.last_used_at.is_(None),
                            mine.c.last_used_at < now - LAST_USED_RESOLUTION,
                        ),
                    )
                    .with_for_update(skip_locked=True)
                    .scalar_subquery()
                )
                await conn.execute(update(_sc).where(_sc.c.id == unlocked).values(last_used_at=now))
                await conn.commit()
            return token
    outcome = await _refresh(
        connection_id=row.id,
        owner_id=owner_id,
        margin=REFRESH_MARGIN,
        settings=settings,
        ring=ring,
        provider=provider,
        retry=retry or DEFAULT_RETRY,
    )
    if outcome.error is not None:
        raise outcome.error
    assert outcome.token is not None
    return outcome.token


@dataclass
class _Outcome:
    token: AccessToken | None
    # "refreshed"; "fresh" (nothing to do); "stale" (the refresh failed, the current
    # token is still usable); "failed" or "needs_reauth" (then `error` says why)
    state: str
    error: ConnectionServiceError | None = None


class _InvalidGrant(Exception):
    pass


class _Temporary(Exception):
    pass


class _Rejected(Exception):
    pass


class _Flight:
    """The in-process side of one connection's refresh: a lock, and what it gave."""

    __slots__ = ("__weakref__", "lock", "token")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.token: AccessToken | None = None


# Concurrent callers in this process wait on the flight rather than each holding a
# database connection while blocked on the row lock, then share its token. Other
# processes are kept out by the row lock itself. Entries vanish with their last
# waiter, so no token outlives the calls that asked for it.
_flights: weakref.WeakValueDictionary[tuple[int, uuid.UUID], _Flight] = (
    weakref.WeakValueDictionary()
)
_SINGLE_FLIGHT_IN_PROCESS = True


def _flight(connection_id: uuid.UUID) -> _Flight:
    key = (id(asyncio.get_running_loop()), connection_id)
    flight = _flights.get(key)
    if flight is None:
        flight = _Flight()
        _flights[key] = flight
    return flight


async def _refresh(
    *,
    connection_id: uuid.UUID,
    owner_id: uuid.UUID,
    margin: timedelta,
    settings: Settings,
    ring: KeyRing,
    provider: ProviderSpec | None,
    retry: RetryPolicy,
) -> _Outcome:
    if not _SINGLE_FLIGHT_IN_PROCESS:
        return await _shielded(
            _refresh_locked(connection_id, owner_id, margin, settings, ring, provider, retry)
        )
    flight = _flight(connection_id)
    if flight.lock.locked():
        # A caller in this process is refreshing: wait for it and take its token.
        async with flight.lock:
            pass
        token = flight.token
        if token is not None and (token.expires_at is None or token.expires_at > utcnow() + margin):
            return _Outcome(token, "fresh")
        fresh = await _read_if_fresh(connection_id, owner_id, margin, ring)
        if fresh is not None:
            return fresh
    async with flight.lock:
        flight.token = None
        outcome = await _shielded(
            _refresh_locked(connection_id, owner_id, margin, settings, ring, provider, retry)
        )
        flight.token = outcome.token
        return outcome


# Refreshes whose caller went away, kept referenced until they finish.
_detached: set[asyncio.Task[Any]] = set()


async def _shielded(work: Awaitable[_Outcome]) -> _Outcome:
    """Run a refresh to its commit even if the caller is cancelled: a provider that
    rotates refresh tokens has already retired the old one once it answers, so
    abandoning the save would lose the connection."""
    task = asyncio.ensure_future(work)
    _detached.add(task)

    def finished(done: asyncio.Task[Any]) -> None:
        _detached.discard(done)
        if not done.cancelled():
            # Marks a failure as seen, so an abandoned one is not reported as
            # unhandled; a caller still waiting receives it through the shield.
            done.exception()

    task.add_done_callback(finished)
    return await asyncio.shield(task)


async def _read_if_fresh(
    connection_id: uuid.UUID, owner_id: uuid.UUID, margin: timedelta, ring: KeyRing
) -> _Outcome | None:
    async with get_async_engine().connect() as conn:
        row = (
            await conn.execute(
                select(*_TOKEN_COLUMNS).where(_sc.c.id == connection_id, _sc.c.owner_id == owner_id)
            )
        ).first()
    if row is None:
        raise ConnectionNotFound("The connection no longer exists")
    _usable_or_raise(row)
    if _expiring(row, utcnow(), margin):
        return None
    return _Outcome(_token_from(row, _open(row.id, row.encrypted_credentials, ring)), "fresh")


async def _refresh_locked(
    connection_id: uuid.UUID,
    owner_id: uuid.UUID,
    margin: timedelta,
    settings: Settings,
    ring: KeyRing,
    provider: ProviderSpec | None,
    retry: RetryPolicy,
) -> _Outcome:
    async with get_async_engine().connect() as conn:
        # The row lock makes the refresh single-flight across processes; whoever
        # waited re-reads here and finds the token another caller already renewed.
        row = (
            await conn.execute(
                select(*_TOKEN_COLUMNS)
                .where(_sc.c.id == connection_id, _sc.c.owner_id == owner_id)
                .with_for_update()
            )
        ).first()
        if row is None:
            raise ConnectionNotFound("The connection no longer exists")
        _usable_or_raise(row)
        now = utcnow()
        credentials = _open(row.id, row.encrypted_credentials, ring)
        current = _token_from(row, credentials)
        if not _expiring(row, now, margin):
            return _Outcome(current, "fresh")
        still_usable = row.expires_at > now + MIN_USABLE_LIFETIME

        try:
            spec = provider or await _provider_for(row.provider, settings)
        except Exception as error:
            logger.warning(
                "the %s provider could not be loaded (%s)", row.provider, _error_kind(error)
            )
            return _Outcome(
                current if still_usable else None,
                "stale" if still_usable else "failed",
                None
                if still_usable
                else TemporaryProviderError(f"{row.provider} cannot be reached right now"),
            )
        refresh_token = credentials.get("refresh_token")
        if spec is None or not spec.supports_refresh or not refresh_token:
            if still_usable:
                return _Outcome(current, "fresh")
            reason = "the access token expired and cannot be renewed"
            return await _needs_reauth(conn, row, reason)
        if not spec.endpoints.token_url:
            raise ConfigurationError(f"The {spec.name} provider has no token endpoint")

        if await _failed_recently(conn, row, now):
            # A refresh just failed: do not pile retries onto a struggling provider.
            if still_usable:
                return _Outcome(current, "stale")
            return _Outcome(
                None,
                "failed",
                TemporaryProviderError(
                    f"{spec.name} could not renew the access token a moment ago; try again shortly"
                ),
            )

        try:
            tokens = await _request_refresh(spec, refresh_token, settings, retry)
        except _InvalidGrant as error:
            return await _needs_reauth(
                conn, row, f"{spec.name} no longer accepts the grant ({error})"
            )
        except (_Temporary, _Rejected) as error:
            reason = str(error)
            await _record_failure(
                conn, row, event=ConnectionEventType.refresh_failed, reason=reason
            )
            logger.warning("refreshing %s connection %s failed: %s", row.provider, row.id, reason)
            if isinstance(error, _Rejected):
                return _Outcome(
                    None, "failed", RefreshRejected(f"{spec.name} refused to renew: {reason}")
                )
            if still_usable:
                return _Outcome(current, "stale")
            return _Outcome(
                None,
                "failed",
                TemporaryProviderError(f"{spec.name} could not renew the access token: {reason}"),
            )

        # Providers that do not rotate send no refresh token back: keep the old one.
        new_credentials = {
            "access_token": tokens.access_token,
            "refresh_token": tokens.refresh_token or refresh_token,
            # What the refresh answer does not repeat (Slack's team name) is kept.
            "extra": {
                **(credentials.get("extra") or {}),
                **{key: value for key, value in tokens.extra.items() if value is not None},
            },
        }
        values: dict[str, Any] = {
            "encrypted_credentials": _seal(row.id, new_credentials, ring),
            "expires_at": tokens.expires_at,
            "last_refreshed_at": now,
            "last_used_at": now,
            "last_error": None,
            "updated_at": now,
        }
        if tokens.granted_scopes is not None:
            values["scopes"] = sorted(tokens.granted_scopes)
        # Saved in the transaction that holds the row lock, so no caller anywhere can
        # present the refresh token the provider has just retired.
        await conn.execute(update(_sc).where(_sc.c.id == row.id).values(**values))
        await _record(
            conn,
            owner_id=row.owner_id,
            connection_id=row.id,
            provider_id=row.provider,
            account_id=row.account_id,
            event=ConnectionEventType.refreshed,
            source="system",
        )
        await conn.commit()
        return _Outcome(
            AccessToken(
                token=tokens.access_token,
                connection_id=row.id,
                account_id=row.account_id,
                expires_at=tokens.expires_at,
                extra=new_credentials["extra"],
            ),
            "refreshed",
        )


async def _record_failure(
    conn: AsyncConnection,
    row: Any,
    *,
    event: ConnectionEventType,
    reason: str,
    status: ConnectionStatus | None = None,
) -> None:
    """Keep the reason on the connection (and its new status, if any) and in its history."""
    values: dict[str, Any] = {"last_error": reason, "updated_at": utcnow()}
    if status is not None:
        values["status"] = status.value
    await conn.execute(update(_sc).where(_sc.c.id == row.id).values(**values))
    await _record(
        conn,
        owner_id=row.owner_id,
        connection_id=row.id,
        provider_id=row.provider,
        account_id=row.account_id,
        event=event,
        source="system",
        detail=reason,
    )
    await conn.commit()


async def _needs_reauth(conn: AsyncConnection, row: Any, reason: str) -> _Outcome:
    await _record_failure(
        conn,
        row,
        event=ConnectionEventType.needs_reauth,
        reason=reason,
        status=ConnectionStatus.needs_reauth,
    )
    logger.info("%s connection %s needs to be reconnected: %s", row.provider, row.id, reason)
    return _Outcome(
        None,
        "needs_reauth",
        ReauthorizationRequired(
            f"The {row.provider} account {row.account_id} needs to be reconnected",
            connection_id=row.id,
            provider_id=row.provider,
        ),
    )


async def _failed_recently(conn: AsyncConnection, row: Any, now: datetime) -> bool:
    # A failure before the last refresh or reconnect no longer counts.
    since = max(
        now - FAILED_REFRESH_COOLDOWN,
        row.last_refreshed_at or row.connected_at,
        row.connected_at,
    )
    found = await conn.execute(
        select(_ev.c.id)
        .where(
            _ev.c.connection_id == row.id,
            _ev.c.event == ConnectionEventType.refresh_failed.value,
            _ev.c.created_at > since,
        )
        .limit(1)
    )
    return found.first() is not None


@functools.cache
def _tls_context() -> ssl.SSLContext:
    # Loading the CA bundle costs ~20 ms: once per process, not once per refresh.
    return httpx.create_ssl_context()


def _http_client(timeout: httpx.Timeout | float) -> httpx.AsyncClient:
    return httpx.AsyncClient(timeout=timeout, verify=_tls_context(), follow_redirects=False)


def _client_credentials(provider_id: str, settings: Settings) -> tuple[str, str | None]:
    # Settings name them `<provider>_client_id` / `_client_secret` (`oidc_*` for the
    # generic OpenID Connect provider).
    prefix = provider_id.replace("-", "_")
    client_id = getattr(settings, f"{prefix}_client_id", None)
    client_secret = getattr(settings, f"{prefix}_client_secret", None)
    if not client_id:
        raise ConfigurationError(
            f"{prefix.upper()}_CLIENT_ID is not set, so {provider_id} tokens cannot be renewed"
        )
    return client_id, client_secret


def _basic_authorization(client_id: str, client_secret: str | None) -> str:
    # RFC 6749 2.3.1: both parts are form-encoded before the Basic encoding.
    raw = f"{quote(client_id, safe='')}:{quote(client_secret or '', safe='')}"
    return "Basic " + base64.b64encode(raw.encode()).decode("ascii")


async def _request_refresh(
    spec: ProviderSpec, refresh_token: str, settings: Settings, retry: RetryPolicy
) -> TokenSet:
    client_id, client_secret = _client_credentials(spec.id, settings)
    data = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    # GitHub answers form-encoded unless JSON is asked for.
    headers = {"Accept": "application/json"}
    if spec.token_auth_method == "client_secret_basic":  # noqa: S105 (a method name)
        headers["Authorization"] = _basic_authorization(client_id, client_secret)
    else:
        data["client_id"] = client_id
        if client_secret:
            data["client_secret"] = client_secret
    url = spec.endpoints.token_url
    assert url is not None
    timeout = httpx.Timeout(retry.timeout_seconds, connect=min(5.0, retry.timeout_seconds))
    async with _http_client(timeout) as client:
        attempt = 0
        while True:
            try:
                response = await client.post(url, data=data, headers=headers)
            except httpx.TimeoutException:
                failure = "the token endpoint did not answer in time"
            except httpx.TransportError:
                failure = "the token endpoint could not be reached"
            else:
                if response.status_code >= 500 or response.status_code == 429:
                    failure = f"the token endpoint answered HTTP {response.status_code}"
                else:
                    return _read_token_response(spec, response)
            if attempt >= len(retry.delays):
                raise _Temporary(failure)
            await retry.sleep(retry.delays[attempt])
            attempt += 1


def _read_token_response(spec: ProviderSpec, response: httpx.Response) -> TokenSet:
    try:
        body = response.json()
    except ValueError:
        body = None
    status = response.status_code
    if not isinstance(body, Mapping):
        raise _Rejected(f"the token endpoint answered HTTP {status} without JSON")
    code = body.get("error")
    code = code if isinstance(code, str) and _ERROR_CODE.fullmatch(code) else None
    if status >= 400 or body.get("ok") is False or (code and "access_token" not in body):
        if code in _REAUTH_ERRORS:
            raise _InvalidGrant(code)
        raise _Rejected(f"the token endpoint refused ({code or f'HTTP {status}'})")
    try:
        if spec.parse_token_response is not None:
            return spec.parse_token_response(body)
        return standard_token_set(body)
    except (KeyError, TypeError, ValueError):
        raise _Rejected("the token endpoint's answer could not be read") from None


async def refresh_expiring_connections(
    *,
    within: timedelta = BACKGROUND_REFRESH_WINDOW,
    settings: Settings | None = None,
    providers: Mapping[str, ProviderSpec] | None = None,
    retry: RetryPolicy | None = None,
) -> RefreshSummary:
    """Refresh every connected OAuth token that expires within `within`.

    For the background job, so a connection used rarely stays alive. Each refresh
    takes the same lock as get_access_token; one failure does not stop the rest.
    `providers` replaces the registry (tests): connections of other providers are
    skipped.
    """
    settings = settings or get_settings()
    ring = get_key_ring(settings)
    horizon = utcnow() + within
    async with get_async_engine().connect() as conn:
        candidates = (
            await conn.execute(
                select(_sc.c.id, _sc.c.owner_id, _sc.c.provider)
                .where(
                    _sc.c.credential_type == CredentialType.oauth.value,
                    _sc.c.status == ConnectionStatus.connected.value,
                    _sc.c.encrypted_credentials.is_not(None),
                    _sc.c.expires_at.is_not(None),
                    _sc.c.expires_at <= horizon,
                )
                .order_by(_sc.c.expires_at)
            )
        ).all()
    summary = RefreshSummary()
    gate = asyncio.Semaphore(BACKGROUND_REFRESH_CONCURRENCY)

    async def refresh_one(connection_id: uuid.UUID, owner_id: uuid.UUID, provider_id: str) -> None:
        try:
            if providers is not None:
                spec = providers.get(provider_id)
            else:
                spec = await _provider_for(provider_id, settings)
        except Exception as error:
            logger.warning(
                "the %s provider could not be loaded (%s)", provider_id, _error_kind(error)
            )
            spec = None
        if spec is None or not spec.supports_refresh:
            summary.skipped += 1
            return
        async with gate:
            try:
                outcome = await _refresh(
                    connection_id=connection_id,
                    owner_id=owner_id,
                    margin=within,
                    settings=settings,
                    ring=ring,
                    provider=spec,
                    retry=retry or DEFAULT_RETRY,
                )
            except ReauthorizationRequired:
                summary.needs_reauth += 1
                return
            except ConnectionNotFound:
                summary.skipped += 1
                return
            except Exception as error:
                summary.failed += 1
                logger.warning(
                    "background refresh of %s connection %s failed (%s)",
                    provider_id,
                    connection_id,
                    _error_kind(error),
                )
                return
        if outcome.state == "refreshed":
            summary.refreshed += 1
        elif outcome.state == "fresh":
            summary.already_fresh += 1
        elif outcome.state == "needs_reauth":
            summary.needs_reauth += 1
        else:
            summary.failed += 1

    await asyncio.gather(*(refresh_one(*candidate) for candidate in candidates))
    return summary


# Checking -------------------------------------------------------------------------


async def test_connection(
    *,
    owner_id: uuid.UUID,
    connection_id: uuid.UUID,
    settings: Settings | None = None,
    provider: ProviderSpec | None = None,
    retry: RetryPolicy | None = None,
) -> str | None:
    """Check the connection against the provider: None when it works, else what is
    wrong in plain words. A credential the provider rejects (401) marks the
    connection as needing to be reconnected."""
    settings = settings or get_settings()
    async with get_async_engine().connect() as conn:
        row = (
            await conn.execute(
                select(*_TOKEN_COLUMNS).where(_sc.c.id == connection_id, _sc.c.owner_id == owner_id)
            )
        ).first()
    if row is None:
        return "This connection no longer exists."
    try:
        spec = provider or await _provider_for(row.provider, settings)
    except Exception as error:
        logger.warning("the %s provider could not be loaded (%s)", row.provider, _error_kind(error))
        return "This service cannot be reached right now; try again in a few minutes."
    if spec is None:
        return "This service is no longer configured on this Carmenta."
    try:
        token = await get_access_token(
            owner_id=owner_id,
            provider_id=row.provider,
            account_id=row.account_id,
            settings=settings,
            provider=spec,
            retry=retry,
        )
    except ReauthorizationRequired:
        return f"{spec.name} needs you to reconnect this account."
    except TemporaryProviderError:
        return f"{spec.name} is not answering right now; try again in a few minutes."
    except RefreshRejected:
        return f"{spec.name} refused to renew access; ask the administrator to check its setup."
    except ConnectionNotFound:
        return "This connection no longer exists."
    try:
        async with _http_client(REVOKE_TIMEOUT_SECONDS) as client:
            if row.credential_type == CredentialType.api_key.value:
                if spec.validate_api_key is not None:
                    await spec.validate_api_key(client, token.token, token.extra.get("base_url"))
            elif spec.fetch_identity is not None:
                await spec.fetch_identity(
                    client, TokenSet(access_token=token.token, extra=token.extra)
                )
    except Exception as error:
        status = _status_of(error)
        if status == 401:
            async with get_async_engine().connect() as conn:
                await _needs_reauth(conn, row, f"{spec.name} rejected the credentials")
            return f"{spec.name} no longer accepts these credentials; reconnect the account."
        if isinstance(error, httpx.TimeoutException | httpx.TransportError):
            return f"{spec.name} could not be reached; try again in a few minutes."
        logger.info(
            "checking %s connection %s failed (%s)", row.provider, row.id, _error_kind(error)
        )
        if status is not None:
            return f"{spec.name} answered with an error (HTTP {status})."
        return f"Checking the connection with {spec.name} failed."
    async with get_async_engine().connect() as conn:
        await conn.execute(
            update(_sc)
            .where(_sc.c.id == row.id, _sc.c.last_error.is_not(None))
            .values(last_error=None)
        )
        await conn.commit()
    return None


# A service function, not a test: keeps pytest from collecting it where it is imported.
test_connection.__test__ = False  # type: ignore[attr-defined]


# Disconnecting --------------------------------------------------------------------


async def _revoke_at_provider(
    spec: ProviderSpec | None, row: Any, credentials: Mapping[str, Any]
) -> bool:
    """Best effort; True when the provider confirmed. Failures are logged only."""
    if spec is None or spec.revoke is None:
        return False
    # The access token while it is valid: every provider revokes by it (some only
    # by it), and those with refresh tokens end the whole grant (RFC 7009 2.1). An
    # expired one proves nothing, so then the refresh token, where there is one.
    access_token = credentials.get("access_token")
    refresh_token = credentials.get("refresh_token")
    expired = row.expires_at is not None and row.expires_at <= utcnow()
    token = refresh_token if expired and refresh_token else access_token or refresh_token
    if not token:
        return False
    try:
        async with _http_client(REVOKE_TIMEOUT_SECONDS) as client:
            await spec.revoke(client, token)
    except Exception as error:
        logger.warning(
            "revoking %s connection %s at the provider failed (%s); its credentials "
            "are deleted anyway",
            row.provider,
            row.id,
            _error_kind(error),
        )
        return False
    return True


async def disconnect(
    *,
    session: AsyncSession,
    owner_id: uuid.UUID,
    connection_id: uuid.UUID,
    source: str = "user",
    provider: ProviderSpec | None = None,
) -> bool:
    """Revoke at the provider where possible, then delete the credentials.

    Idempotent: False when the connection is already gone (or is not the user's).
    The events stay, their connection_id cleared by the foreign key. When the
    default account goes, the oldest remaining one becomes the default.
    """
    _check_source(source)
    conn = await _connection(session)
    found = (
        await conn.execute(
            select(_sc.c.provider).where(_sc.c.id == connection_id, _sc.c.owner_id == owner_id)
        )
    ).scalar_one_or_none()
    if found is None:
        return False
    await _lock_defaults(conn, owner_id, found)
    row = (
        await conn.execute(
            select(*_TOKEN_COLUMNS)
            .where(_sc.c.id == connection_id, _sc.c.owner_id == owner_id)
            .with_for_update()
        )
    ).first()
    if row is None:
        return False
    try:
        credentials = _open(row.id, row.encrypted_credentials, get_key_ring())
    except DecryptionError:
        logger.warning("connection %s cannot be decrypted; deleting it unrevoked", row.id)
        credentials = {}
    spec = provider
    if spec is None and row.credential_type == CredentialType.oauth.value:
        try:
            spec = await _provider_for(row.provider, get_settings())
        except Exception as error:
            logger.warning(
                "the %s provider could not be loaded (%s)", row.provider, _error_kind(error)
            )
    if await _revoke_at_provider(spec, row, credentials):
        await _record(
            conn,
            owner_id=owner_id,
            connection_id=row.id,
            provider_id=row.provider,
            account_id=row.account_id,
            event=ConnectionEventType.revoked,
            source=source,
        )
    await _delete_rows(conn, [row], source=source)
    return True


async def _delete_rows(conn: AsyncConnection, rows: Sequence[Any], *, source: str) -> None:
    """Record `disconnected`, delete, and promote new defaults (locks held)."""
    for row in rows:
        # Written while the row exists; the delete then clears its connection_id.
        await _record(
            conn,
            owner_id=row.owner_id,
            connection_id=row.id,
            provider_id=row.provider,
            account_id=row.account_id,
            event=ConnectionEventType.disconnected,
            source=source,
        )
    await conn.execute(delete(_sc).where(_sc.c.id.in_([row.id for row in rows])))
    for owner_id, provider_id in sorted(
        {(row.owner_id, row.provider) for row in rows if row.is_default}
    ):
        await _promote_default(conn, owner_id, provider_id)


async def disconnect_matching(
    *,
    session: AsyncSession,
    provider_id: str,
    account_ids: Collection[str] | None = None,
    account_id_prefix: str | None = None,
    source: str = "provider",
) -> int:
    """Delete every user's connections of `provider_id` whose account id is in
    `account_ids` or starts with `account_id_prefix`; returns how many.

    For provider webhooks (an app uninstalled, a grant revoked): the provider has
    already revoked the tokens, so it is not called. Idempotent.
    """
    _check_source(source)
    accounts = [account for account in (account_ids or ()) if account]
    if not accounts and not account_id_prefix:
        raise ValueError("give account_ids or a non-empty account_id_prefix")
    matches = []
    if accounts:
        matches.append(_sc.c.account_id.in_(accounts))
    if account_id_prefix:
        # starts_with, not LIKE: account ids may contain % or _.
        matches.append(func.starts_with(_sc.c.account_id, account_id_prefix))
    criteria = and_(_sc.c.provider == provider_id, or_(*matches))
    conn = await _connection(session)
    owners = (await conn.execute(select(_sc.c.owner_id).where(criteria).distinct())).scalars()
    # In a fixed order, so two webhooks at once cannot deadlock.
    for owner_id in sorted(owners, key=str):
        await _lock_defaults(conn, owner_id, provider_id)
    rows = (
        await conn.execute(
            select(*_TOKEN_COLUMNS).where(criteria).order_by(_sc.c.id).with_for_update()
        )
    ).all()
    if not rows:
        return 0
    for row in rows:
        await _record(
            conn,
            owner_id=row.owner_id,
            connection_id=row.id,
            provider_id=row.provider,
            account_id=row.account_id,
            event=ConnectionEventType.revoked,
            source=source,
            detail="revoked at the provider",
        )
    await _delete_rows(conn, rows, source=source)
    return len(rows)


async def revoke_account_connections(*, session: AsyncSession, user_id: uuid.UUID) -> None:
    """Account deletion: revoke the user's tokens at the providers (rows cascade)."""
    conn = await _connection(session)
    rows = (await conn.execute(select(*_TOKEN_COLUMNS).where(_sc.c.owner_id == user_id))).all()
    if not rows:
        return
    ring = get_key_ring()
    settings = get_settings()

    async def revoke(row: Any) -> None:
        if row.credential_type != CredentialType.oauth.value:
            return
        try:
            credentials = _open(row.id, row.encrypted_credentials, ring)
            spec = await _provider_for(row.provider, settings)
        except Exception as error:
            logger.warning(
                "connection %s is not revoked at %s (%s)", row.id, row.provider, _error_kind(error)
            )
            return
        await _revoke_at_provider(spec, row, credentials)

    await asyncio.gather(*(revoke(row) for row in rows))


# Best effort: a provider that is down must not keep an account from being deleted.
register_account_cleanup(revoke_account_connections, best_effort=True)


# Key rotation ---------------------------------------------------------------------


async def rotate_encryption(
    *,
    batch_size: int = 100,
    ring: KeyRing | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> RotationReport:
    """Re-encrypt every stored secret not under the ring's first key.

    Batch by batch, each in its own transaction: an interrupted run resumes where it
    stopped (rows already under the new key are not selected again). Rows another
    process holds are skipped (SKIP LOCKED); whoever holds them writes them under
    the new key anyway, and a second run picks up any left. `on_batch(count)` runs
    after each committed batch.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    ring = ring or get_key_ring()
    current = f"v1.{ring.primary_kid}."
    report = RotationReport(key_id=ring.primary_kid)
    engine = get_async_engine()
    for spec in ENCRYPTED_COLUMNS:
        target = sql_table(spec.table, column(spec.id_column, Uuid()), column(spec.column, Text()))
        row_id = target.c[spec.id_column]
        value = target.c[spec.column]
        after: uuid.UUID | None = None
        while True:
            async with engine.begin() as conn:
                statement = (
                    select(row_id, value)
                    .where(
                        # Only values of this module; a column may also hold clear text.
                        func.starts_with(value, "v1."),
                        ~func.starts_with(value, current),
                    )
                    .order_by(row_id)
                    .limit(batch_size)
                    .with_for_update(skip_locked=True)
                )
                if after is not None:
                    statement = statement.where(row_id > after)
                rows = (await conn.execute(statement)).all()
                if not rows:
                    break
                after = rows[-1][0]
                updates = []
                for identifier, stored in rows:
                    aad = field_aad(table=spec.table, row_id=identifier, field=spec.column)
                    try:
                        plaintext = ring.decrypt(stored, aad=aad)
                    except DecryptionError as error:
                        report.unreadable.append((spec.table, str(identifier)))
                        logger.error(
                            "%s %s cannot be re-encrypted: %s", spec.table, identifier, error
                        )
                        continue
                    updates.append(
                        {"b_id": identifier, "b_value": ring.encrypt(plaintext, aad=aad)}
                    )
                if updates:
                    await conn.execute(
                        update(target)
                        .where(row_id == bindparam("b_id"))
                        .values({spec.column: bindparam("b_value")}),
                        updates,
                    )
            report.rotated += len(updates)
            if on_batch is not None:
                on_batch(len(updates))
    return report
