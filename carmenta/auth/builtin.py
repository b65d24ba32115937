"""Built-in accounts: sign-up, sign-in, and server-side sessions behind signed tokens.

A session is a row in `auth_sessions`; the browser holds an RS256 token naming it
(`sid`), signed with the app's own key and verified by the same code as Clerk's
tokens. Signing out or revoking marks the row, so a token stops working at once.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import psycopg
from sqlalchemy import text
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from carmenta import db
from carmenta.auth import keys as auth_keys
from carmenta.auth import passwords, throttle
from carmenta.auth.models import AuthSession, PasswordCredential, SessionHandoff
from carmenta.knowledge import service as knowledge_service
from carmenta.settings import Settings
from carmenta.users.models import User

AUTH_PROVIDER = "builtin"
HANDOFF_TTL = timedelta(seconds=60)
# Writing last_seen_at on every event would turn reads into writes; once in a while is enough.
LAST_SEEN_RESOLUTION = timedelta(minutes=5)


def builtin_issuer(settings: Settings) -> str:
    return f"{settings.app_url}/auth"


def _now() -> datetime:
    return datetime.now(UTC)


def _hash_code(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


class SignUpError(ValueError):
    """Sign-up refused; the message is shown to the person as is."""


class SignInOutcome(StrEnum):
    signed_in = "signed_in"
    invalid = "invalid"
    throttled = "throttled"


@dataclass(frozen=True)
class SignInResult:
    outcome: SignInOutcome
    user_id: uuid.UUID | None = None
    session_id: uuid.UUID | None = None
    retry_after_seconds: float = 0.0

    @property
    def message(self) -> str:
        # One message for a wrong password and an unknown email alike.
        if self.outcome is SignInOutcome.invalid:
            return "That email and password do not match an account."
        if self.outcome is SignInOutcome.throttled:
            seconds = max(1, round(self.retry_after_seconds))
            return f"Too many attempts. Wait {seconds} seconds, then try again."
        return ""


@dataclass(frozen=True)
class SessionInfo:
    id: uuid.UUID
    created_at: datetime
    last_seen_at: datetime | None
    expires_at: datetime
    user_agent: str | None
    ip_address: str | None


async def sign_up(
    *,
    session: AsyncSession,
    settings: Settings,
    email: str,
    password: str,
    display_name: str | None = None,
    user_agent: str | None = None,
    ip_address: str | None = None,
) -> AuthSession:
    """Create an account and its first session. Raises SignUpError with a reason."""
    email = passwords.normalize_email(email)
    if problem := passwords.email_problem(email):
        raise SignUpError(problem)
    if problems := passwords.password_problems(password, email=email):
        raise SignUpError("Choose a stronger password: " + "; ".join(problems).lower() + ".")
    existing = await session.execute(
        select(PasswordCredential.user_id).where(PasswordCredential.email == email)
    )
    if existing.first() is not None:
        raise SignUpError("An account with this email already exists. Sign in instead.")

    password_hash = await passwords.hash_password(password)
    user_id = uuid.uuid4()
    user = User(
        id=user_id,
        external_auth_id=f"local_{user_id.hex}",
        auth_provider=AUTH_PROVIDER,
        email=email,
        display_name=(display_name or "").strip() or None,
        # ADMIN_EMAILS is applied when the session is verified; the column keeps
        # only what an operator granted (`python -m carmenta create-admin`).
        is_admin=False,
    )
    session.add(user)
    await session.flush()
    # The unique email constraint settles a race between two sign-ups: one fails here.
    inserted = await session.execute(
        text(
            "insert into password_credentials (user_id, email, password_hash)"
            " values (:user_id, :email, :hash) on conflict (email) do nothing returning user_id"
        ),
        {"user_id": user_id, "email": email, "hash": password_hash},
    )
    if inserted.first() is None:
        raise SignUpError("An account with this email already exists. Sign in instead.")
    # Every account starts with the profile documents the assistant always reads.
    await knowledge_service.seed_profile(
        session=session, owner_id=user_id, display_name=user.display_name or email.split("@")[0]
    )
    return await create_session(
        session=session,
        settings=settings,
        user_id=user_id,
        user_agent=user_agent,
        ip_address=ip_address,
    )


async def sign_in(
    *,
    session: AsyncSession,
    settings: Settings,
    email: str,
    password: str,
    user_agent: str | None = None,
    ip_address: str | None = None,
) -> SignInResult:
    """Check a password. Failures are recorded (the caller commits in every case)."""
    email = passwords.normalize_email(email)
    now = _now()
    keys = [throttle.account_key(email)]
    if address := throttle.address_key(ip_address):
        keys.append(address)
    wait = await throttle.seconds_to_wait(session=session, keys=keys, now=now)
    if wait > 0:
        return SignInResult(SignInOutcome.throttled, retry_after_seconds=wait)

    row = (
        await session.execute(select(PasswordCredential).where(PasswordCredential.email == email))
    ).scalar_one_or_none()
    valid = await passwords.verify_password(row.password_hash if row else None, password)
    if not valid or row is None:
        await throttle.record_failure(session=session, keys=keys, now=now)
        return SignInResult(SignInOutcome.invalid)

    await throttle.clear(session=session, keys=[throttle.account_key(email)])
    if passwords.needs_rehash(row.password_hash):
        row.password_hash = await passwords.hash_password(password)
    auth_session = await create_session(
        session=session,
        settings=settings,
        user_id=row.user_id,
        user_agent=user_agent,
        ip_address=ip_address,
    )
    return SignInResult(SignInOutcome.signed_in, user_id=row.user_id, session_id=auth_session.id)


async def create_session(
    *,
    session: AsyncSession,
    settings: Settings,
    user_id: uuid.UUID,
    user_agent: str | None = None,
    ip_address: str | None = None,
) -> AuthSession:
    auth_session = AuthSession(
        user_id=user_id,
        expires_at=_now() + timedelta(hours=settings.session_ttl_hours),
        user_agent=(user_agent or "")[:300] or None,
        ip_address=ip_address,
    )
    session.add(auth_session)
    await session.flush()
    return auth_session


async def create_handoff(*, session: AsyncSession, session_id: uuid.UUID) -> str:
    """A one-time code the browser exchanges for its session cookie within a minute."""
    code = secrets.token_urlsafe(32)
    session.add(
        SessionHandoff(
            code_hash=_hash_code(code), session_id=session_id, expires_at=_now() + HANDOFF_TTL
        )
    )
    await session.flush()
    return code


async def redeem_handoff(
    *, session: AsyncSession, settings: Settings, code: str
) -> tuple[str, AuthSession] | None:
    """Consume a handoff code (once) and return a session token for it."""
    if not code or len(code) > 128:
        return None
    result = await session.execute(
        text(
            "delete from session_handoffs where code_hash = :hash returning session_id, expires_at"
        ),
        {"hash": _hash_code(code)},
    )
    row = result.first()
    if row is None or row.expires_at <= _now():
        return None
    auth_session = await session.get(AuthSession, row.session_id)
    if auth_session is None or not _is_active(auth_session):
        return None
    user = await session.get(User, auth_session.user_id)
    if user is None:
        return None
    return session_token(settings=settings, auth_session=auth_session, user=user), auth_session


def session_token(*, settings: Settings, auth_session: AuthSession, user: User) -> str:
    signing_key = signing_key_for(settings)
    return auth_keys.sign_session_token(
        signing_key=signing_key,
        subject=user.external_auth_id,
        session_id=str(auth_session.id),
        issuer=builtin_issuer(settings),
        authorized_party=settings.app_url,
        issued_at=_now(),
        expires_at=auth_session.expires_at,
    )


_signing_keys: dict[tuple[str | None, str], auth_keys.SigningKey] = {}


def signing_key_for(settings: Settings) -> auth_keys.SigningKey:
    cache_key = (settings.session_signing_key, str(settings.keys_dir))
    if cache_key not in _signing_keys:
        _signing_keys[cache_key] = auth_keys.load_signing_key(
            pem=settings.session_signing_key, keys_dir=settings.keys_dir
        )
    return _signing_keys[cache_key]


def _is_active(auth_session: AuthSession) -> bool:
    return auth_session.revoked_at is None and auth_session.expires_at > _now()


@dataclass(frozen=True)
class ActiveSession:
    """A live built-in session and the user it belongs to, as read for one request."""

    session_id: uuid.UUID
    user_id: uuid.UUID
    external_auth_id: str
    email: str | None
    display_name: str | None
    is_admin: bool


async def active_session(
    *, connection: psycopg.AsyncConnection[Any], session_id: str | None, external_auth_id: str
) -> ActiveSession | None:
    """The session named by a verified token, if it is still live and its user exists.

    Every event of a signed-in page comes through here, the send of a message among
    them: one plain query, and a write only when `last_seen_at` is stale.
    """
    try:
        parsed = uuid.UUID(session_id or "")
    except ValueError:
        return None
    now = _now()
    # On a psycopg connection (`db.statement_connection`, or `db.driver_connection` of a
    # session), the row unpacked by position: SQLAlchemy's statement and result layers
    # cost as much again as the read, on every event of every page.
    cursor = await connection.execute(
        ACTIVE_SESSION_SQL, {"id": parsed, "now": now, "subject": external_auth_id}
    )
    row = await cursor.fetchone()
    if row is None:
        return None
    found_id, last_seen_at, user_id, external_id, email, display_name, is_admin = row
    if last_seen_at is None or now - last_seen_at > LAST_SEEN_RESOLUTION:
        await connection.execute(SEEN_NOW_SQL, {"id": parsed, "now": now})
    return ActiveSession(
        session_id=found_id,
        user_id=user_id,
        external_auth_id=external_id,
        email=email,
        display_name=display_name,
        is_admin=bool(is_admin),
    )


ACTIVE_SESSION_SQL = db.driver_sql(
    "select s.id, s.last_seen_at, u.id, u.external_auth_id, u.email, u.display_name,"
    " u.is_admin"
    " from auth_sessions s join users u on u.id = s.user_id"
    " where s.id = :id and s.revoked_at is null and s.expires_at > :now"
    " and u.external_auth_id = :subject"
)
SEEN_NOW_SQL = db.driver_sql("update auth_sessions set last_seen_at = :now where id = :id")


async def sign_out(*, session: AsyncSession, session_id: uuid.UUID) -> None:
    await session.execute(
        text("update auth_sessions set revoked_at = now() where id = :id and revoked_at is null"),
        {"id": session_id},
    )


async def list_sessions(*, session: AsyncSession, user_id: uuid.UUID) -> list[SessionInfo]:
    rows = await session.execute(
        select(AuthSession)
        .where(
            AuthSession.user_id == user_id,
            AuthSession.revoked_at.is_(None),  # type: ignore[union-attr]
            AuthSession.expires_at > _now(),
        )
        .order_by(AuthSession.created_at.desc())  # type: ignore[attr-defined]
    )
    return [
        SessionInfo(
            id=row.id,
            created_at=row.created_at,
            last_seen_at=row.last_seen_at,
            expires_at=row.expires_at,
            user_agent=row.user_agent,
            ip_address=row.ip_address,
        )
        for row in rows.scalars()
    ]


async def revoke_session(
    *, session: AsyncSession, user_id: uuid.UUID, session_id: uuid.UUID
) -> bool:
    """Sign out one of the user's own sessions; someone else's is left untouched."""
    result = await session.execute(
        text(
            "update auth_sessions set revoked_at = now()"
            " where id = :id and user_id = :user_id and revoked_at is null returning id"
        ),
        {"id": session_id, "user_id": user_id},
    )
    return result.first() is not None


async def revoke_other_sessions(
    *, session: AsyncSession, user_id: uuid.UUID, keep_session_id: uuid.UUID
) -> int:
    result = await session.execute(
        text(
            "update auth_sessions set revoked_at = now()"
            " where user_id = :user_id and id <> :keep and revoked_at is null returning id"
        ),
        {"user_id": user_id, "keep": keep_session_id},
    )
    return len(result.all())


async def confirm_password(
    *, session: AsyncSession, user_id: uuid.UUID, password: str, ip_address: str | None = None
) -> SignInResult:
    """Check the password of a signed-in user before something irreversible.

    Throttled and recorded like a sign-in, so a stolen session cannot be used to
    guess the password (the caller commits in every case).
    """
    row = (
        await session.execute(
            select(PasswordCredential).where(PasswordCredential.user_id == user_id)
        )
    ).scalar_one_or_none()
    if row is None:
        return SignInResult(SignInOutcome.invalid)
    now = _now()
    keys = [throttle.account_key(row.email)]
    if address := throttle.address_key(ip_address):
        keys.append(address)
    wait = await throttle.seconds_to_wait(session=session, keys=keys, now=now)
    if wait > 0:
        return SignInResult(SignInOutcome.throttled, retry_after_seconds=wait)
    if not await passwords.verify_password(row.password_hash, password):
        await throttle.record_failure(session=session, keys=keys, now=now)
        return SignInResult(SignInOutcome.invalid)
    return SignInResult(SignInOutcome.signed_in, user_id=user_id)


async def create_account(
    *,
    session: AsyncSession,
    email: str,
    password: str,
    is_admin: bool = False,
    display_name: str | None = None,
) -> User:
    """An account made by an operator: like a sign-up, without a session. Raises SignUpError."""
    email = passwords.normalize_email(email)
    if problem := passwords.email_problem(email):
        raise SignUpError(problem)
    if problems := passwords.password_problems(password, email=email):
        raise SignUpError("Choose a stronger password: " + "; ".join(problems).lower() + ".")
    password_hash = await passwords.hash_password(password)
    user_id = uuid.uuid4()
    user = User(
        id=user_id,
        external_auth_id=f"local_{user_id.hex}",
        auth_provider=AUTH_PROVIDER,
        email=email,
        display_name=(display_name or "").strip() or None,
        is_admin=is_admin,
    )
    session.add(user)
    await session.flush()
    inserted = await session.execute(
        text(
            "insert into password_credentials (user_id, email, password_hash)"
            " values (:user_id, :email, :hash) on conflict (email) do nothing returning user_id"
        ),
        {"user_id": user_id, "email": email, "hash": password_hash},
    )
    if inserted.first() is None:
        raise SignUpError("An account with this email already exists.")
    await knowledge_service.seed_profile(
        session=session, owner_id=user_id, display_name=user.display_name or email.split("@")[0]
    )
    return user
