"""Users against a real PostgreSQL: upsert by external id, concurrent first requests,
account deletion and its cleanup hooks."""

from __future__ import annotations

import asyncio
import logging
import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlmodel.ext.asyncio.session import AsyncSession

from carmenta.users.models import User
from carmenta.users.service import (
    delete_user_account,
    get_user,
    get_user_by_external_id,
    register_account_cleanup,
    unregister_account_cleanup,
    upsert_external_user,
)


def _external_id() -> str:
    return f"user_{uuid.uuid4().hex}"


async def test_upsert_creates_then_updates_the_same_user(session):
    external_id = _external_id()
    created = await upsert_external_user(
        session=session,
        external_auth_id=external_id,
        auth_provider="clerk",
        email="ada@example.com",
        display_name="Ada",
        image_url="https://img.example.com/ada.png",
        is_admin=True,
    )
    assert created.email == "ada@example.com"
    assert created.is_admin is True
    created_at = created.created_at

    updated = await upsert_external_user(
        session=session,
        external_auth_id=external_id,
        auth_provider="clerk",
        email="ada@lovelace.example",
        display_name="Ada Lovelace",
        is_admin=False,
    )
    assert updated.id == created.id
    assert updated.email == "ada@lovelace.example"
    assert updated.display_name == "Ada Lovelace"
    assert updated.is_admin is False
    assert updated.created_at == created_at
    assert updated.updated_at > created_at

    assert (await get_user(session=session, user_id=created.id)).email == "ada@lovelace.example"
    found = await get_user_by_external_id(session=session, external_auth_id=external_id)
    assert found is not None and found.id == created.id
    count = await session.exec(
        text("select count(*) from users where external_auth_id = :id"),
        params={"id": external_id},
    )
    assert count.scalar_one() == 1


async def test_upsert_with_none_fields_keeps_the_stored_values(session):
    external_id = _external_id()
    created = await upsert_external_user(
        session=session,
        external_auth_id=external_id,
        auth_provider="clerk",
        email="grace@example.com",
        display_name="Grace Hopper",
        image_url="https://img.example.com/grace.png",
        is_admin=True,
    )
    again = await upsert_external_user(
        session=session, external_auth_id=external_id, auth_provider="clerk"
    )
    assert again.id == created.id
    assert again.email == "grace@example.com"
    assert again.display_name == "Grace Hopper"
    assert again.image_url == "https://img.example.com/grace.png"
    assert again.is_admin is True


async def test_a_new_user_without_optional_fields_gets_the_defaults(session):
    user = await upsert_external_user(
        session=session, external_auth_id=_external_id(), auth_provider="clerk"
    )
    assert user.id is not None
    assert user.email is None and user.display_name is None and user.image_url is None
    assert user.is_admin is False
    assert user.created_at is not None


async def test_unknown_users_are_none(session):
    assert await get_user(session=session, user_id=uuid.uuid4()) is None
    assert await get_user_by_external_id(session=session, external_auth_id="user_nobody") is None


async def test_two_concurrent_first_requests_make_one_user(async_engine):
    """The second upsert runs while the first one's insert is still uncommitted."""
    external_id = _external_id()
    first_inserted = asyncio.Event()

    async def first() -> uuid.UUID:
        async with AsyncSession(async_engine, expire_on_commit=False) as db:
            user = await upsert_external_user(
                session=db, external_auth_id=external_id, auth_provider="clerk", email="a@x.test"
            )
            first_inserted.set()
            # Hold the row's uncommitted insert while the second request arrives.
            await asyncio.sleep(0.3)
            await db.commit()
            return user.id

    async def second() -> uuid.UUID:
        await first_inserted.wait()
        async with AsyncSession(async_engine, expire_on_commit=False) as db:
            user = await upsert_external_user(
                session=db, external_auth_id=external_id, auth_provider="clerk", email="b@x.test"
            )
            await db.commit()
            return user.id

    async def unsynchronised() -> uuid.UUID:
        async with AsyncSession(async_engine, expire_on_commit=False) as db:
            user = await upsert_external_user(
                session=db, external_auth_id=external_id, auth_provider="clerk"
            )
            await db.commit()
            return user.id

    try:
        ids = await asyncio.wait_for(
            asyncio.gather(first(), second(), unsynchronised(), unsynchronised()), timeout=30
        )
        assert len(set(ids)) == 1
        async with async_engine.connect() as connection:
            rows = await connection.execute(
                text("select id, email from users where external_auth_id = :id"),
                {"id": external_id},
            )
            rows = rows.all()
        assert len(rows) == 1
        assert rows[0].id == ids[0]
        # The later request's email wins; the ones without an email kept it.
        assert rows[0].email == "b@x.test"
    finally:
        async with async_engine.begin() as connection:
            await connection.execute(
                text("delete from users where external_auth_id = :id"), {"id": external_id}
            )


async def _new_user(session) -> User:
    return await upsert_external_user(
        session=session, external_auth_id=_external_id(), auth_provider="clerk"
    )


async def _owned_conversations(session, user_id: uuid.UUID) -> int:
    result = await session.exec(
        text("select count(*) from conversations where owner_id = :id"), params={"id": user_id}
    )
    return result.scalar_one()


async def test_delete_user_account_removes_the_user_and_what_they_own(session):
    user = await _new_user(session)
    await session.exec(
        text("insert into conversations (owner_id) values (:id)"), params={"id": user.id}
    )
    assert await delete_user_account(session=session, user_id=user.id) is True
    assert await get_user(session=session, user_id=user.id) is None
    assert await _owned_conversations(session, user.id) == 0
    # Deleting again finds nobody.
    assert await delete_user_account(session=session, user_id=user.id) is False


async def test_cleanup_hooks_run_in_order_before_the_row_is_deleted(session):
    user = await _new_user(session)
    calls: list[tuple[str, uuid.UUID, bool]] = []

    async def first_hook(*, session, user_id):
        row = await session.get(User, user_id)
        calls.append(("first", user_id, row is not None))

    async def second_hook(*, session, user_id):
        row = await session.get(User, user_id)
        calls.append(("second", user_id, row is not None))

    register_account_cleanup(first_hook)
    register_account_cleanup(second_hook)
    register_account_cleanup(first_hook)  # a second registration changes nothing
    try:
        assert await delete_user_account(session=session, user_id=user.id) is True
        # No user: no hooks.
        assert await delete_user_account(session=session, user_id=uuid.uuid4()) is False
    finally:
        unregister_account_cleanup(first_hook)
        unregister_account_cleanup(second_hook)
    assert calls == [("first", user.id, True), ("second", user.id, True)]


async def test_a_failing_hook_aborts_the_deletion(session):
    user = await _new_user(session)

    async def storage_cleanup(*, session, user_id):
        raise OSError("the file store is unreachable")

    register_account_cleanup(storage_cleanup)
    try:
        with pytest.raises(OSError):
            await delete_user_account(session=session, user_id=user.id)
    finally:
        unregister_account_cleanup(storage_cleanup)
    # The hook ran before the delete, so the row is still there in this transaction.
    assert await get_user(session=session, user_id=user.id) is not None


async def test_a_failing_best_effort_hook_is_logged_and_deletion_continues(session, caplog):
    user = await _new_user(session)
    await session.exec(
        text("insert into conversations (owner_id) values (:id)"), params={"id": user.id}
    )

    async def revoke_tokens(*, session, user_id):
        # Its own writes are undone when it fails; the deletion still goes ahead.
        await session.exec(
            text("update conversations set title = 'revoking' where owner_id = :id"),
            params={"id": user_id},
        )
        raise ConnectionError("the provider did not answer")

    register_account_cleanup(revoke_tokens, best_effort=True)
    try:
        with caplog.at_level(logging.WARNING, logger="carmenta.users.service"):
            assert await delete_user_account(session=session, user_id=user.id) is True
    finally:
        unregister_account_cleanup(revoke_tokens)
    assert await get_user(session=session, user_id=user.id) is None
    assert await _owned_conversations(session, user.id) == 0
    assert "revoke_tokens" in caplog.text and str(user.id) in caplog.text


async def test_a_database_error_in_a_best_effort_hook_still_aborts(session):
    user = await _new_user(session)

    async def broken(*, session, user_id):
        await session.exec(text("select 1 / 0"))

    register_account_cleanup(broken, best_effort=True)
    try:
        with pytest.raises(DBAPIError):
            await delete_user_account(session=session, user_id=user.id)
    finally:
        unregister_account_cleanup(broken)
    # The savepoint was rolled back, so the transaction is usable and the user remains.
    assert await get_user(session=session, user_id=user.id) is not None
