"""Users as the rest of the app sees them: find, create on first sight, delete.

A user is keyed by the verified token's subject (`external_auth_id`), never by email,
which changes. Every function takes the caller's session; the caller commits.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any, Protocol

from sqlalchemy import delete, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from carmenta.model_fields import utcnow
from carmenta.users.models import DeletedAccount, User

logger = logging.getLogger(__name__)


async def upsert_external_user(
    *,
    session: AsyncSession,
    external_auth_id: str,
    auth_provider: str,
    email: str | None = None,
    display_name: str | None = None,
    image_url: str | None = None,
    is_admin: bool | None = None,
) -> User:
    """Create the user of `external_auth_id`, or update the one that exists.

    One `INSERT ... ON CONFLICT DO UPDATE`, so two first requests arriving at once
    end with one row: the second waits for the first and then updates it. A None
    argument leaves the stored value as it is (a new row gets the column default).
    """
    if not external_auth_id:
        raise ValueError("external_auth_id must not be empty")
    optional: dict[str, Any] = {
        "email": email,
        "display_name": display_name,
        "image_url": image_url,
        "is_admin": is_admin,
    }
    given = {column: value for column, value in optional.items() if value is not None}
    statement = insert(User).values(
        external_auth_id=external_auth_id,
        auth_provider=auth_provider,
        **given,
    )
    statement = statement.on_conflict_do_update(
        index_elements=[User.__table__.c.external_auth_id],
        set_={
            "auth_provider": statement.excluded.auth_provider,
            # Core upserts skip the model's onupdate; same clock as created_at.
            "updated_at": utcnow(),
            **{column: getattr(statement.excluded, column) for column in given},
        },
    ).returning(User)
    # populate_existing: a User already loaded in this session shows the new values.
    result = await session.exec(statement, execution_options={"populate_existing": True})
    return result.scalars().one()


async def get_user(*, session: AsyncSession, user_id: uuid.UUID) -> User | None:
    return await session.get(User, user_id)


async def get_user_by_external_id(*, session: AsyncSession, external_auth_id: str) -> User | None:
    result = await session.exec(select(User).where(col(User.external_auth_id) == external_auth_id))
    return result.first()


class AccountCleanupHook(Protocol):
    """Work to do before a user's rows disappear (stored files, provider tokens)."""

    async def __call__(self, *, session: AsyncSession, user_id: uuid.UUID) -> None: ...


# (hook, best_effort), in registration order.
_cleanup_hooks: list[tuple[AccountCleanupHook, bool]] = []


def register_account_cleanup(
    hook: AccountCleanupHook, *, best_effort: bool = False
) -> AccountCleanupHook:
    """Run `hook(session=..., user_id=...)` whenever an account is deleted.

    Hooks run in registration order, inside the deleting transaction and before the
    users row goes, so they can still read the user's rows. Deletion can be retried
    (a webhook is redelivered after a failure), so hooks must be idempotent.

    A hook that raises aborts the deletion: the caller's transaction rolls back and
    the account stays whole. `best_effort=True` is for work the deletion must not
    wait on, such as revoking tokens at a provider that may be down: its failures
    are logged and deletion continues (its own database writes are undone by a
    savepoint). A database error aborts even then, since the data would be in doubt.

    Registering the same hook again changes nothing. Returns the hook, so this can
    be used as a decorator.
    """
    if not any(existing is hook for existing, _ in _cleanup_hooks):
        _cleanup_hooks.append((hook, best_effort))
    return hook


def unregister_account_cleanup(hook: AccountCleanupHook) -> None:
    _cleanup_hooks[:] = [(h, b) for h, b in _cleanup_hooks if h is not hook]


def _hook_name(hook: AccountCleanupHook) -> str:
    return getattr(hook, "__qualname__", None) or type(hook).__qualname__


async def delete_user_account(*, session: AsyncSession, user_id: uuid.UUID) -> bool:
    """Delete the user and everything they own; False if there is no such user.

    The cleanup hooks run first, then the users row is deleted and every owned row
    goes with it (all owner keys cascade). Nothing is committed here: if anything
    raises, the caller's rollback leaves the account as it was.
    """
    # The lock keeps a concurrent upsert or second deletion waiting until we finish.
    locked = await session.exec(
        select(col(User.external_auth_id)).where(col(User.id) == user_id).with_for_update()
    )
    external_auth_id = locked.first()
    if external_auth_id is None:
        return False
    await remember_deleted(session=session, external_auth_id=external_auth_id)
    for hook, best_effort in list(_cleanup_hooks):
        if not best_effort:
            await hook(session=session, user_id=user_id)
            continue
        try:
            async with session.begin_nested():
                await hook(session=session, user_id=user_id)
        except SQLAlchemyError:
            raise
        except Exception:
            logger.warning(
                "account cleanup %s failed for user %s; the deletion continues",
                _hook_name(hook),
                user_id,
                exc_info=True,
            )
    await session.exec(delete(User).where(col(User.id) == user_id))
    return True


async def update_display_name(
    *, session: AsyncSession, user_id: uuid.UUID, display_name: str | None
) -> bool:
    """Set (or, with None, clear) the name the app uses for the user."""
    result = await session.execute(
        update(User)
        .where(User.id == user_id)  # type: ignore[arg-type]
        .values(display_name=display_name, updated_at=utcnow())
    )
    return result.rowcount > 0


async def remember_deleted(*, session: AsyncSession, external_auth_id: str) -> None:
    await session.execute(
        insert(DeletedAccount)
        .values(external_auth_id=external_auth_id)
        .on_conflict_do_nothing(index_elements=["external_auth_id"])
    )


async def was_deleted(*, session: AsyncSession, external_auth_id: str) -> bool:
    found = await session.exec(
        select(col(DeletedAccount.external_auth_id)).where(
            col(DeletedAccount.external_auth_id) == external_auth_id
        )
    )
    return found.first() is not None
