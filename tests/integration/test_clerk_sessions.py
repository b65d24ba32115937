"""Clerk mode: tokens minted the way Clerk mints them, verified by the app's one path."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import text

from carmenta.auth import keys
from carmenta.auth import service as auth_service
from carmenta.settings import Settings
from carmenta.users import service as users_service

CLERK_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
ISSUER = "https://clerk.carmenta.test"
ORIGIN = "https://carmenta.example.com"


@pytest.fixture
def settings(tmp_path, database_url) -> Settings:
    public_pem = (
        CLERK_KEY.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return Settings(
        _env_file=None,
        database_url=database_url,
        data_dir=tmp_path,
        public_url=ORIGIN,
        clerk_publishable_key="pk_test_Y2xlcmsuY2FybWVudGEudGVzdCQ",
        clerk_secret_key="sk_test_not_used_offline",
        clerk_jwt_key=public_pem,
        clerk_issuer=ISSUER,
    )


def clerk_token(subject: str, **overrides) -> str:
    now = int(time.time())
    claims = {
        "sub": subject,
        "sid": f"sess_{uuid.uuid4().hex[:10]}",
        "iss": ISSUER,
        "azp": ORIGIN,
        "iat": now,
        "nbf": now - 5,
        "exp": now + 60,
        "v": 2,
    }
    claims.update(overrides)
    claims = {key: value for key, value in claims.items() if value is not None}
    return jwt.encode(claims, CLERK_KEY, algorithm="RS256", headers={"kid": "ins_clerk"})


async def test_first_verified_request_creates_the_user_keyed_by_clerk_id(session, settings):
    subject = f"user_{uuid.uuid4().hex[:12]}"
    first = await auth_service.authenticate(
        session=session, settings=settings, token=clerk_token(subject)
    )
    assert first is not None and first.provider == "clerk"
    again = await auth_service.authenticate(
        session=session, settings=settings, token=clerk_token(subject)
    )
    assert again.user_id == first.user_id
    rows = (
        await session.execute(
            text("select auth_provider, email from users where external_auth_id = :sub"),
            {"sub": subject},
        )
    ).all()
    assert rows == [("clerk", None)]


async def test_admin_role_comes_from_clerk_metadata(session, settings):
    subject = f"user_{uuid.uuid4().hex[:12]}"
    await users_service.upsert_external_user(
        session=session,
        external_auth_id=subject,
        auth_provider="clerk",
        email="lead@example.com",
        is_admin=True,
    )
    user = await auth_service.authenticate(
        session=session, settings=settings, token=clerk_token(subject)
    )
    assert user.is_admin is True and user.email == "lead@example.com"


@pytest.mark.parametrize(
    ("overrides", "why"),
    [
        # Times are offsets from when the test runs, not from when it was collected.
        ({"exp": -10}, "expired"),
        ({"nbf": 60}, "not yet valid"),
        ({"iat": 60}, "issued in the future"),
        ({"iss": "https://clerk.someone-else.test"}, "another instance"),
        ({"azp": "https://evil.example.com"}, "another origin"),
        ({"sid": None}, "not a session token"),
    ],
)
async def test_bad_clerk_tokens_create_nobody(session, settings, overrides, why):
    subject = f"user_{uuid.uuid4().hex[:12]}"
    claims = {
        name: int(time.time()) + value if name in ("exp", "nbf", "iat") else value
        for name, value in overrides.items()
    }
    token = clerk_token(subject, **claims)
    assert await auth_service.authenticate(session=session, settings=settings, token=token) is None
    assert (
        await users_service.get_user_by_external_id(session=session, external_auth_id=subject)
        is None
    ), why


async def test_a_token_of_a_deleted_clerk_user_is_refused_and_does_not_revive_them(
    session, settings
):
    subject = f"user_{uuid.uuid4().hex[:12]}"
    token = clerk_token(subject)
    user = await auth_service.authenticate(session=session, settings=settings, token=token)
    assert await users_service.delete_user_account(session=session, user_id=user.user_id)
    assert await auth_service.authenticate(session=session, settings=settings, token=token) is None
    assert (
        await users_service.get_user_by_external_id(session=session, external_auth_id=subject)
        is None
    )


async def test_a_builtin_token_is_not_accepted_in_clerk_mode(session, settings, tmp_path):
    own_key = keys.load_signing_key(pem=None, keys_dir=tmp_path / "own")
    forged = keys.sign_session_token(
        signing_key=own_key,
        subject="local_x",
        session_id=str(uuid.uuid4()),
        issuer=ISSUER,
        authorized_party=ORIGIN,
        issued_at=datetime.now(UTC),
        expires_at=datetime.now(UTC) + timedelta(hours=1),
    )
    assert await auth_service.authenticate(session=session, settings=settings, token=forged) is None


async def test_the_first_request_of_a_clerk_user_seeds_their_profile(session, settings):
    subject = f"user_{uuid.uuid4().hex[:12]}"
    user = await auth_service.authenticate(
        session=session, settings=settings, token=clerk_token(subject)
    )
    count = (
        await session.execute(
            text("select count(*) from documents where owner_id = :id and path <@ 'profile'"),
            {"id": user.user_id},
        )
    ).scalar_one()
    assert count >= 3
