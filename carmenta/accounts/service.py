"""Whole accounts: find one, grant administration, delete one with everything it owns.

The same functions serve the account page, Clerk's webhook and the operators'
command line, so an account deleted any way is deleted the same way.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

from sqlalchemy import func, text
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from carmenta.auth import builtin, clerk_api
from carmenta.auth.service import AuthenticatedUser

# Imported for their account cleanup hooks: stored objects, provider tokens.
from carmenta.connections import service as _connections_service  # noqa: F401
from carmenta.files import service as _files_service  # noqa: F401
from carmenta.settings import Settings
from carmenta.users import service as users_service
from carmenta.users.models import User

logger = logging.getLogger(__name__)

# What a person types to confirm, so a stray click never deletes an account.
CONFIRMATION_PHRASE = "delete my account"


class AccountNotFound(LookupError):
    pass


async def delete_account(*, session: AsyncSession, user_id: uuid.UUID) -> bool:
    """Delete the user, every row they own and every object they stored.

    Their provider tokens are revoked (best effort) and their jobs still waiting are
    cancelled. False if there is no such user. The caller commits.
    """
    # Jobs live in the queue's own table, beyond the owner keys' cascade.
    await session.exec(
        text(
            "update procrastinate_jobs set status = 'cancelled'"
            " where status = 'todo'"
            " and id in (select job_id from job_progress where owner_id = :owner)"
        ),
        params={"owner": user_id},
    )
    deleted = await users_service.delete_user_account(session=session, user_id=user_id)
    if deleted:
        logger.info("deleted the account of user %s", user_id)
    return deleted


async def find_user(*, session: AsyncSession, reference: str) -> User | None:
    """A user by id or by email (any case)."""
    reference = reference.strip()
    try:
        return await session.get(User, uuid.UUID(reference))
    except ValueError:
        pass
    found = await session.exec(
        select(User).where(func.lower(col(User.email)) == reference.lower()).limit(2)
    )
    matches = list(found.all())
    if len(matches) > 1:
        raise LookupError(f"more than one account has the email {reference}; use the user id")
    return matches[0] if matches else None


@dataclass(frozen=True)
class AdminGrant:
    user: User
    created: bool


async def grant_admin(
    *, session: AsyncSession, email: str, password: str | None = None
) -> AdminGrant:
    """Make the account with this email an administrator; with `password`, create a
    built-in account when there is none. Raises AccountNotFound or builtin.SignUpError."""
    user = await find_user(session=session, reference=email)
    if user is None:
        if password is None:
            raise AccountNotFound(f"no account has the email {email}")
        user = await builtin.create_account(
            session=session, email=email, password=password, is_admin=True
        )
        return AdminGrant(user=user, created=True)
    user.is_admin = True
    session.add(user)
    await session.flush()
    return AdminGrant(user=user, created=False)


async def delete_own_account(
    *,
    user: AuthenticatedUser,
    settings: Settings,
    confirmation: str,
    password: str | None,
    ip_address: str | None = None,
) -> str | None:
    """The account page's deletion. Returns a message to show, or None once deleted.

    Built-in accounts confirm with the phrase and their password. Clerk accounts
    confirm with the phrase; the user is deleted at Clerk first, so a failure there
    leaves everything as it was (Clerk's `user.deleted` webhook finds nothing left).
    """
    from carmenta import db

    if " ".join(confirmation.lower().split()) != CONFIRMATION_PHRASE:
        return f'Type "{CONFIRMATION_PHRASE}" to confirm.'
    if user.provider == builtin.AUTH_PROVIDER:
        if not password:
            return "Enter your password to confirm."
        async with db.session_scope() as session:
            checked = await builtin.confirm_password(
                session=session, user_id=user.user_id, password=password, ip_address=ip_address
            )
        if checked.outcome is builtin.SignInOutcome.throttled:
            return checked.message
        if checked.outcome is not builtin.SignInOutcome.signed_in:
            return "That password is not right."
    else:
        try:
            await clerk_api.delete_user(settings=settings, external_auth_id=user.external_auth_id)
        except clerk_api.ClerkApiError as error:
            logger.warning("account %s was not deleted: %s", user.user_id, error)
            return "Your account could not be deleted just now. Try again in a moment."
    try:
        async with db.session_scope() as session:
            await delete_account(session=session, user_id=user.user_id)
    except Exception:
        logger.exception("deleting the account of user %s failed", user.user_id)
        return "Your account could not be deleted just now. Try again in a moment."
    return None
