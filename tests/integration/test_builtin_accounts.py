"""Built-in accounts against PostgreSQL: sign-up, sign-in, throttling, sessions."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from carmenta.auth import builtin, keys
from carmenta.auth import service as auth_service
from carmenta.settings import Settings

PASSWORD = "correct horse battery"


@pytest.fixture
def settings(tmp_path, database_url) -> Settings:
    return Settings(
        _env_file=None,
        database_url=database_url,
        data_dir=tmp_path,
        admin_emails="Boss@Example.com",
    )


def unique_email(prefix: str = "ann") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}@example.com"


async def count(session, sql: str, **params) -> int:
    return (await session.execute(text(sql), params)).scalar_one()


async def test_sign_up_creates_user_credential_and_session(session, settings):
    email = unique_email()
    auth_session = await builtin.sign_up(
        session=session,
        settings=settings,
        email=email.upper(),
        password=PASSWORD,
        display_name="  Ann  ",
        user_agent="Mozilla/5.0 Firefox",
        ip_address="10.0.0.1",
    )
    user = await session.get(builtin.User, auth_session.user_id)
    assert user.email == email
    assert user.display_name == "Ann"
    assert user.auth_provider == "builtin"
    stored = (
        await session.execute(
            text("select password_hash from password_credentials where user_id = :id"),
            {"id": user.id},
        )
    ).scalar_one()
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    assert auth_session.expires_at > datetime.now(UTC) + timedelta(days=13)


async def test_sign_up_refuses_a_taken_email_whatever_its_case(session, settings):
    email = unique_email()
    await builtin.sign_up(session=session, settings=settings, email=email, password=PASSWORD)
    with pytest.raises(builtin.SignUpError, match="already exists"):
        await builtin.sign_up(
            session=session, settings=settings, email=email.title(), password=PASSWORD + "!"
        )


@pytest.mark.parametrize(
    ("email", "password", "message"),
    [
        ("not-an-email", PASSWORD, "valid email"),
        ("weak@example.com", "short", "at least 10 characters"),
        ("weak@example.com", "password123", "commonly used"),
    ],
)
async def test_sign_up_refuses_bad_input_and_stores_nothing(
    session, settings, email, password, message
):
    before = await count(session, "select count(*) from users")
    with pytest.raises(builtin.SignUpError, match=message):
        await builtin.sign_up(session=session, settings=settings, email=email, password=password)
    assert await count(session, "select count(*) from users") == before


async def test_wrong_password_and_unknown_email_get_the_same_answer(session, settings):
    email = unique_email()
    await builtin.sign_up(session=session, settings=settings, email=email, password=PASSWORD)
    wrong = await builtin.sign_in(session=session, settings=settings, email=email, password="nope")
    unknown = await builtin.sign_in(
        session=session, settings=settings, email=unique_email("ghost"), password=PASSWORD
    )
    assert wrong.outcome is unknown.outcome is builtin.SignInOutcome.invalid
    assert wrong.message == unknown.message == "That email and password do not match an account."
    ok = await builtin.sign_in(session=session, settings=settings, email=email, password=PASSWORD)
    assert ok.outcome is builtin.SignInOutcome.signed_in and ok.session_id is not None


async def test_repeated_failures_are_slowed_per_account(session, settings):
    email = unique_email()
    await builtin.sign_up(session=session, settings=settings, email=email, password=PASSWORD)
    for _ in range(6):
        result = await builtin.sign_in(
            session=session,
            settings=settings,
            email=email,
            password="wrong guess",
            ip_address=f"192.0.2.{uuid.uuid4().int % 200}",
        )
    assert result.outcome is builtin.SignInOutcome.invalid
    # The sixth failure set a wait; even the right password must wait now.
    throttled = await builtin.sign_in(
        session=session, settings=settings, email=email, password=PASSWORD
    )
    assert throttled.outcome is builtin.SignInOutcome.throttled
    assert 0 < throttled.retry_after_seconds <= 1
    assert "Too many attempts" in throttled.message


async def test_repeated_failures_are_slowed_per_address(session, settings):
    address = "198.51.100.7"
    for _ in range(6):
        await builtin.sign_in(
            session=session,
            settings=settings,
            email=unique_email("spray"),
            password="guess-1234",
            ip_address=address,
        )
    result = await builtin.sign_in(
        session=session,
        settings=settings,
        email=unique_email("other"),
        password="x",
        ip_address=address,
    )
    assert result.outcome is builtin.SignInOutcome.throttled
    # An unknown email is throttled exactly like a known one.
    assert "Too many attempts" in result.message


async def _token_for(session, settings, auth_session) -> str:
    user = await session.get(builtin.User, auth_session.user_id)
    return builtin.session_token(settings=settings, auth_session=auth_session, user=user)


async def test_a_valid_session_token_authenticates_its_user(session, settings):
    email = unique_email()
    auth_session = await builtin.sign_up(
        session=session, settings=settings, email=email, password=PASSWORD
    )
    token = await _token_for(session, settings, auth_session)
    user = await auth_service.authenticate(session=session, settings=settings, token=token)
    assert user is not None
    assert user.user_id == auth_session.user_id
    assert user.email == email
    assert user.session_id == str(auth_session.id)
    assert user.is_admin is False


async def test_admin_emails_make_administrators(session, settings):
    auth_session = await builtin.sign_up(
        session=session, settings=settings, email="boss@example.com", password=PASSWORD
    )
    token = await _token_for(session, settings, auth_session)
    user = await auth_service.authenticate(session=session, settings=settings, token=token)
    assert user.is_admin is True


async def test_signed_out_expired_and_deleted_sessions_are_refused(session, settings):
    signed_out = await builtin.sign_up(
        session=session, settings=settings, email=unique_email(), password=PASSWORD
    )
    token = await _token_for(session, settings, signed_out)
    await builtin.sign_out(session=session, session_id=signed_out.id)
    assert await auth_service.authenticate(session=session, settings=settings, token=token) is None

    expired = await builtin.sign_up(
        session=session, settings=settings, email=unique_email(), password=PASSWORD
    )
    token = await _token_for(session, settings, expired)
    expired.expires_at = datetime.now(UTC) - timedelta(seconds=1)
    await session.flush()
    assert await auth_service.authenticate(session=session, settings=settings, token=token) is None

    deleted = await builtin.sign_up(
        session=session, settings=settings, email=unique_email(), password=PASSWORD
    )
    token = await _token_for(session, settings, deleted)
    await session.execute(text("delete from users where id = :id"), {"id": deleted.user_id})
    assert await auth_service.authenticate(session=session, settings=settings, token=token) is None


async def test_a_token_signed_by_another_key_is_refused(session, settings, tmp_path):
    auth_session = await builtin.sign_up(
        session=session, settings=settings, email=unique_email(), password=PASSWORD
    )
    user = await session.get(builtin.User, auth_session.user_id)
    stranger = keys.load_signing_key(pem=None, keys_dir=tmp_path / "stranger")
    forged = keys.sign_session_token(
        signing_key=stranger,
        subject=user.external_auth_id,
        session_id=str(auth_session.id),
        issuer=builtin.builtin_issuer(settings),
        authorized_party=settings.app_url,
        issued_at=datetime.now(UTC),
        expires_at=auth_session.expires_at,
    )
    assert await auth_service.authenticate(session=session, settings=settings, token=forged) is None
    assert (
        await auth_service.authenticate(session=session, settings=settings, token="x.y.z") is None
    )


async def test_a_token_naming_someone_elses_session_is_refused(session, settings):
    ann = await builtin.sign_up(
        session=session, settings=settings, email=unique_email("ann"), password=PASSWORD
    )
    bob = await builtin.sign_up(
        session=session, settings=settings, email=unique_email("bob"), password=PASSWORD
    )
    ann_user = await session.get(builtin.User, ann.user_id)
    mixed = keys.sign_session_token(
        signing_key=builtin.signing_key_for(settings),
        subject=ann_user.external_auth_id,
        session_id=str(bob.id),
        issuer=builtin.builtin_issuer(settings),
        authorized_party=settings.app_url,
        issued_at=datetime.now(UTC),
        expires_at=bob.expires_at,
    )
    assert await auth_service.authenticate(session=session, settings=settings, token=mixed) is None


async def test_handoff_codes_work_once_and_expire(session, settings):
    auth_session = await builtin.sign_up(
        session=session, settings=settings, email=unique_email(), password=PASSWORD
    )
    code = await builtin.create_handoff(session=session, session_id=auth_session.id)
    redeemed = await builtin.redeem_handoff(session=session, settings=settings, code=code)
    assert redeemed is not None
    token, redeemed_session = redeemed
    assert redeemed_session.id == auth_session.id
    assert await auth_service.authenticate(session=session, settings=settings, token=token)
    assert await builtin.redeem_handoff(session=session, settings=settings, code=code) is None

    stale = await builtin.create_handoff(session=session, session_id=auth_session.id)
    await session.execute(text("update session_handoffs set expires_at = now() - interval '1 s'"))
    assert await builtin.redeem_handoff(session=session, settings=settings, code=stale) is None
    assert await builtin.redeem_handoff(session=session, settings=settings, code="") is None


async def test_people_can_revoke_only_their_own_sessions(session, settings):
    ann = await builtin.sign_up(
        session=session, settings=settings, email=unique_email("ann"), password=PASSWORD
    )
    bob = await builtin.sign_up(
        session=session, settings=settings, email=unique_email("bob"), password=PASSWORD
    )
    assert not await builtin.revoke_session(session=session, user_id=bob.user_id, session_id=ann.id)
    assert [
        info.id for info in await builtin.list_sessions(session=session, user_id=ann.user_id)
    ] == [ann.id]
    second = await builtin.create_session(session=session, settings=settings, user_id=ann.user_id)
    assert (
        await builtin.revoke_other_sessions(
            session=session, user_id=ann.user_id, keep_session_id=second.id
        )
        == 1
    )
    remaining = await builtin.list_sessions(session=session, user_id=ann.user_id)
    assert [info.id for info in remaining] == [second.id]
    assert [
        info.id for info in await builtin.list_sessions(session=session, user_id=bob.user_id)
    ] == [bob.id]


async def test_sign_up_seeds_the_profile_documents(session, settings):
    auth_session = await builtin.sign_up(
        session=session,
        settings=settings,
        email=unique_email("seed"),
        password=PASSWORD,
        display_name="Ada",
    )
    paths = (
        (
            await session.execute(
                text("select path::text from documents where owner_id = :id order by path"),
                {"id": auth_session.user_id},
            )
        )
        .scalars()
        .all()
    )
    assert paths and all(path.startswith("profile.") for path in paths)
    assert len(paths) >= 3


async def test_a_session_in_use_is_marked_seen_at_most_every_few_minutes(database_url):
    from datetime import timedelta

    from carmenta import db
    from carmenta.auth import builtin
    from carmenta.settings import get_settings

    settings = get_settings()
    async with db.session_scope() as session:
        created = await builtin.sign_up(
            session=session,
            settings=settings,
            email=f"seen-{uuid.uuid4().hex[:8]}@example.com",
            password="a long enough passphrase 42",
            display_name="Seen",
        )
        await session.commit()
    async with db.session_scope() as session:
        user = (
            await session.execute(
                text("select external_auth_id from users where id = :id"),
                {"id": created.user_id},
            )
        ).one()

    async def use() -> builtin.ActiveSession | None:
        async with db.session_scope() as session:
            return await builtin.active_session(
                connection=await db.driver_connection(session),
                session_id=str(created.id),
                external_auth_id=user.external_auth_id,
            )

    async def last_seen():
        async with db.session_scope() as session:
            return (
                await session.execute(
                    text("select last_seen_at from auth_sessions where id = :id"),
                    {"id": created.id},
                )
            ).scalar_one()

    found = await use()
    assert found is not None and found.user_id == created.user_id
    first = await last_seen()
    assert first is not None
    await use()
    assert await last_seen() == first  # seconds later: not written again
    async with db.session_scope() as session:
        await session.execute(
            text("update auth_sessions set last_seen_at = last_seen_at - :age where id = :id"),
            {"age": builtin.LAST_SEEN_RESOLUTION + timedelta(minutes=1), "id": created.id},
        )
        await session.commit()
    await use()
    assert await last_seen() > first - timedelta(seconds=1)
    # A revoked session is not found, and not marked.
    async with db.session_scope() as session:
        await builtin.sign_out(session=session, session_id=created.id)
        await session.commit()
    assert await use() is None
