"""Who is making this request: one answer for Clerk and built-in accounts alike.

`authenticate` takes the raw session token the browser presented and returns the
verified user, or None. Every page load and every event goes through it.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any

import psycopg
from sqlmodel.ext.asyncio.session import AsyncSession

from carmenta import db
from carmenta.auth import builtin
from carmenta.auth import keys as auth_keys
from carmenta.auth.tokens import InvalidTokenError, TokenVerifier, VerifiedToken
from carmenta.knowledge import service as knowledge_service
from carmenta.observability import logs
from carmenta.settings import Settings
from carmenta.users import service as users_service

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AuthenticatedUser:
    user_id: uuid.UUID
    external_auth_id: str
    provider: str
    email: str | None
    display_name: str | None
    is_admin: bool
    # Built-in accounts: the auth_sessions row. Clerk: Clerk's session id.
    session_id: str | None


_verifiers: dict[tuple, TokenVerifier] = {}


def verifier_for(settings: Settings) -> TokenVerifier:
    """One verifier per configuration, so the JWKS cache lives as long as the process."""
    if settings.uses_clerk:
        cache_key = (
            "clerk",
            settings.clerk_publishable_key,
            settings.clerk_jwt_key,
            settings.clerk_issuer,
            settings.clerk_jwks_url,
            settings.clerk_authorized_parties,
            settings.app_url,
        )
        if cache_key not in _verifiers:
            _verifiers[cache_key] = auth_keys.clerk_verifier(settings)
    else:
        cache_key = (
            "builtin",
            settings.session_signing_key,
            str(settings.keys_dir),
            settings.app_url,
        )
        if cache_key not in _verifiers:
            _verifiers[cache_key] = auth_keys.builtin_verifier(
                signing_key=builtin.signing_key_for(settings),
                issuer=builtin.builtin_issuer(settings),
                authorized_parties=[settings.app_url],
            )
    return _verifiers[cache_key]


def _display_name(email: str | None, name: str | None) -> str | None:
    return name or (email.split("@", 1)[0] if email else None)


async def authenticate(
    *, session: AsyncSession, settings: Settings, token: str | None
) -> AuthenticatedUser | None:
    verified = await _verified_token(settings=settings, token=token)
    if verified is None:
        return None
    if settings.uses_clerk:
        user = await _clerk_user(session=session, verified=verified)
    else:
        user = await _builtin_user(
            connection=await db.driver_connection(session), settings=settings, verified=verified
        )
    return _named_in_logs(user)


def _named_in_logs(user: AuthenticatedUser | None) -> AuthenticatedUser | None:
    if user is not None:
        # Log lines of the request (or event) being served name who made it, by id only.
        logs.bind(user_id=str(user.user_id))
    return user


async def _verified_token(*, settings: Settings, token: str | None) -> VerifiedToken | None:
    if not token:
        return None
    try:
        return await verifier_for(settings).verify(token)
    except InvalidTokenError as error:
        logger.info("session token rejected: %s", error.reason)
        return None


async def _clerk_user(
    *, session: AsyncSession, verified: VerifiedToken
) -> AuthenticatedUser | None:
    if not verified.session_id:
        # Session tokens carry `sid`; Clerk's other tokens (JWT templates) do not.
        logger.info("session token rejected: no session id")
        return None
    user = await users_service.get_user_by_external_id(
        session=session, external_auth_id=verified.subject
    )
    if user is None:
        if await users_service.was_deleted(session=session, external_auth_id=verified.subject):
            return None
        # The first verified request of a Clerk user creates their row.
        user = await users_service.upsert_external_user(
            session=session, external_auth_id=verified.subject, auth_provider="clerk"
        )
        await knowledge_service.seed_profile(
            session=session, owner_id=user.id, display_name=user.display_name or ""
        )
    return AuthenticatedUser(
        user_id=user.id,
        external_auth_id=user.external_auth_id,
        provider="clerk",
        email=user.email,
        display_name=_display_name(user.email, user.display_name),
        is_admin=user.is_admin,
        session_id=verified.session_id,
    )


async def _builtin_user(
    *, connection: psycopg.AsyncConnection[Any], settings: Settings, verified: VerifiedToken
) -> AuthenticatedUser | None:
    found = await builtin.active_session(
        connection=connection, session_id=verified.session_id, external_auth_id=verified.subject
    )
    if found is None:
        return None
    return AuthenticatedUser(
        user_id=found.user_id,
        external_auth_id=found.external_auth_id,
        provider=builtin.AUTH_PROVIDER,
        email=found.email,
        display_name=_display_name(found.email, found.display_name),
        # ADMIN_EMAILS is read now, so a change applies without a new sign-in; the
        # stored flag is an operator's grant (`python -m carmenta create-admin`).
        is_admin=found.is_admin or (bool(found.email) and found.email in settings.admin_email_set),
        session_id=str(found.session_id),
    )


async def current_user(*, settings: Settings, token: str | None) -> AuthenticatedUser | None:
    """`authenticate` in a transaction of its own, for callers without a session."""
    if not token:
        return None
    if settings.uses_clerk:
        # A first visit creates the user and their profile: one transaction.
        async with db.session_scope() as session:
            return await authenticate(session=session, settings=settings, token=token)
    verified = await _verified_token(settings=settings, token=token)
    if verified is None:
        return None
    # Every event of a page comes here: one read (and now and then a `last_seen_at`
    # write that stands alone), on a connection of its own, with no session around it.
    async with db.statement_connection() as connection:
        user = await _builtin_user(connection=connection, settings=settings, verified=verified)
    return _named_in_logs(user)


async def sign_out(*, session_id: str) -> None:
    """Revoke a built-in session by its id (from a verified token)."""
    async with db.session_scope() as session:
        await builtin.sign_out(session=session, session_id=uuid.UUID(session_id))


@dataclass(frozen=True)
class SignInAttempt:
    """What the sign-in and sign-up forms get back: a handoff code, or a message."""

    handoff_code: str | None = None
    error: str | None = None


async def sign_in_with_password(
    *,
    settings: Settings,
    email: str,
    password: str,
    user_agent: str | None,
    ip_address: str | None,
) -> SignInAttempt:
    async with db.session_scope() as session:
        result = await builtin.sign_in(
            session=session,
            settings=settings,
            email=email,
            password=password,
            user_agent=user_agent,
            ip_address=ip_address,
        )
        if result.session_id is None:
            return SignInAttempt(error=result.message)
        code = await builtin.create_handoff(session=session, session_id=result.session_id)
        return SignInAttempt(handoff_code=code)


async def sign_up_with_password(
    *,
    settings: Settings,
    email: str,
    password: str,
    display_name: str | None,
    user_agent: str | None,
    ip_address: str | None,
) -> SignInAttempt:
    try:
        async with db.session_scope() as session:
            auth_session = await builtin.sign_up(
                session=session,
                settings=settings,
                email=email,
                password=password,
                display_name=display_name,
                user_agent=user_agent,
                ip_address=ip_address,
            )
            code = await builtin.create_handoff(session=session, session_id=auth_session.id)
    except builtin.SignUpError as error:
        # The transaction rolled back: no half-made account is left behind.
        return SignInAttempt(error=str(error))
    return SignInAttempt(handoff_code=code)


async def sessions_of(*, user: AuthenticatedUser) -> list[builtin.SessionInfo]:
    if user.provider != builtin.AUTH_PROVIDER:
        return []
    async with db.session_scope() as session:
        return await builtin.list_sessions(session=session, user_id=user.user_id)


async def revoke_session_of(*, user: AuthenticatedUser, session_id: str) -> bool:
    """Sign out one of `user`'s sessions; an id that is not theirs changes nothing."""
    try:
        parsed = uuid.UUID(session_id)
    except (ValueError, TypeError):
        return False
    async with db.session_scope() as session:
        return await builtin.revoke_session(
            session=session, user_id=user.user_id, session_id=parsed
        )


async def revoke_other_sessions_of(*, user: AuthenticatedUser) -> int:
    if user.session_id is None or user.provider != builtin.AUTH_PROVIDER:
        return 0
    async with db.session_scope() as session:
        return await builtin.revoke_other_sessions(
            session=session, user_id=user.user_id, keep_session_id=uuid.UUID(user.session_id)
        )


async def rename(*, user: AuthenticatedUser, display_name: str) -> str | None:
    """Change the user's display name; returns an error message or None."""
    display_name = " ".join(display_name.split())
    if len(display_name) > 80:
        return "Use at most 80 characters."
    async with db.session_scope() as session:
        await users_service.update_display_name(
            session=session, user_id=user.user_id, display_name=display_name or None
        )
    return None
