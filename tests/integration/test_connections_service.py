"""Connections against a real PostgreSQL: several accounts and defaults, reconnects,
disconnects and revocation, isolation between users, no secret at rest, key rotation."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import secrets
import uuid
from datetime import timedelta

import psycopg
import pytest
from psycopg import sql
from sqlmodel import select

from carmenta.connections import crypto, service
from carmenta.connections.crypto import KeyRing, credential_aad, field_aad, get_key_ring
from carmenta.connections.models import OAuthState, ServiceConnection
from carmenta.connections.providers.base import AccountIdentity, TokenSet
from carmenta.connections.service import (
    ConnectionNotFound,
    disconnect,
    disconnect_matching,
    get_access_token,
    get_connection,
    list_connections,
    rotate_encryption,
    save_api_key_connection,
    save_oauth_connection,
    set_default,
)
from carmenta.db import dispose_engine, session_scope
from carmenta.model_fields import utcnow
from carmenta.settings import reset_settings_cache
from carmenta.users.service import delete_user_account
from tests.integration.connections_support import (
    KEY_1,
    RING_1,
    RING_2_AND_1,
    ConnectionTestSettings,
    TokenServer,
    api_key_provider,
    create_user,
    encryption_keys,
    fast_retry,
    provider,
    tokens,
)


@pytest.fixture(scope="module", autouse=True)
async def _app(database_url):
    with encryption_keys(RING_1):
        yield
        await dispose_engine()


@pytest.fixture
def owner(database_url) -> uuid.UUID:
    return create_user(database_url)


@pytest.fixture
def stranger(database_url) -> uuid.UUID:
    return create_user(database_url)


@pytest.fixture
def server():
    token_server = TokenServer()
    yield token_server
    token_server.close()


@pytest.fixture
def spec(server):
    return provider(server, "svctest")


def identity(account: str) -> AccountIdentity:
    return AccountIdentity(account_id=account, label=f"{account}@example.com")


async def save(session, owner, spec, account, token_set=None, **options):
    return await save_oauth_connection(
        session=session,
        owner_id=owner,
        provider=spec,
        identity=identity(account),
        tokens=token_set or tokens(),
        requested_scopes=["read"],
        **options,
    )


async def credentials_of(session, connection_id) -> dict:
    row = (
        await session.exec(select(ServiceConnection).where(ServiceConnection.id == connection_id))
    ).one()
    return json.loads(
        get_key_ring().decrypt(row.encrypted_credentials, aad=credential_aad(connection_id))
    )


async def event_names(session, owner, connection_id=None) -> list[str]:
    found = await service.connection_events(
        session=session, owner_id=owner, connection_id=connection_id
    )
    return [event.event for event in reversed(found)]


async def test_reconnecting_an_account_updates_it(session, owner, spec):
    first = tokens(access="access-one", refresh="refresh-one")
    view, created = await save(session, owner, spec, "ada", first)
    assert created and view.is_default and view.status == "connected"
    assert view.account_label == "ada@example.com"
    assert view.scopes == ["read", "write"]  # granted, not requested
    assert view.expires_at == first.expires_at

    second = TokenSet(
        access_token="access-two",
        refresh_token="refresh-two",
        expires_at=utcnow() + timedelta(hours=2),
    )
    again, created = await save_oauth_connection(
        session=session,
        owner_id=owner,
        provider=spec,
        identity=AccountIdentity(account_id="ada", label="Ada Lovelace"),
        tokens=second,
        requested_scopes=["read", "write", "admin"],
    )
    assert not created
    assert again.id == view.id and again.is_default
    assert again.account_label == "Ada Lovelace"
    assert again.scopes == ["read", "write", "admin"]  # nothing granted said: requested
    assert again.expires_at == second.expires_at
    assert [v.id for v in await list_connections(session=session, owner_id=owner)] == [view.id]
    stored = await credentials_of(session, view.id)
    assert stored["access_token"] == "access-two" and stored["refresh_token"] == "refresh-two"
    assert await event_names(session, owner, view.id) == ["connected", "reconnected"]
    [latest, _] = await service.connection_events(session=session, owner_id=owner)
    assert latest.source == "user" and latest.account_id == "ada"


async def test_a_reconnect_without_refresh_token_keeps_the_one_held(session, owner, spec):
    view, _ = await save(session, owner, spec, "ada", tokens(refresh="refresh-kept"))
    await save(
        session,
        owner,
        spec,
        "ada",
        TokenSet(access_token="access-new", expires_at=utcnow() + timedelta(hours=1)),
    )
    stored = await credentials_of(session, view.id)
    assert stored == {"access_token": "access-new", "refresh_token": "refresh-kept", "extra": {}}


async def test_several_accounts_with_one_default(session, owner, spec, server):
    gmail, _ = await save(session, owner, spec, "first")
    work, created = await save(session, owner, spec, "second")
    assert created and gmail.is_default and not work.is_default
    other_provider, _ = await save(session, owner, provider(server, "tokentest"), "first")
    assert other_provider.is_default  # defaults are per provider

    assert await set_default(session=session, owner_id=owner, connection_id=work.id)
    views = {v.id: v for v in await list_connections(session=session, owner_id=owner)}
    assert views[work.id].is_default and not views[gmail.id].is_default
    assert views[other_provider.id].is_default
    # Setting the default that already is changes nothing.
    assert await set_default(session=session, owner_id=owner, connection_id=work.id)
    assert (await get_connection(session=session, owner_id=owner, connection_id=work.id)).is_default
    assert not await set_default(session=session, owner_id=owner, connection_id=uuid.uuid4())


async def test_concurrent_connects_make_one_row_and_one_default(async_engine, owner, spec):
    from sqlmodel.ext.asyncio.session import AsyncSession

    async def connect(account: str):
        async with AsyncSession(async_engine, expire_on_commit=False) as db:
            result = await save(db, owner, spec, account)
            await asyncio.sleep(0.05)  # hold the transaction while the others arrive
            await db.commit()
            return result

    results = await asyncio.gather(*(connect(account) for account in ["same"] * 4 + ["b", "c"]))
    assert sorted(created for _, created in results) == [False] * 3 + [True] * 3
    async with AsyncSession(async_engine) as db:
        views = await list_connections(session=db, owner_id=owner)
        assert sorted(v.account_id for v in views) == ["b", "c", "same"]
        assert sum(v.is_default for v in views) == 1
        names = await event_names(db, owner)
        assert names.count("connected") == 3 and names.count("reconnected") == 3
        for view in views:
            await disconnect(session=db, owner_id=owner, connection_id=view.id)
        await db.commit()


async def test_disconnect_revokes_deletes_and_promotes(session, owner, spec, server):
    first_tokens = tokens(access="access-to-revoke", refresh="refresh-kept-back")
    first, _ = await save(session, owner, spec, "first", first_tokens)
    second, _ = await save(session, owner, spec, "second")
    assert first.is_default

    assert await disconnect(session=session, owner_id=owner, connection_id=first.id, provider=spec)
    assert server.revoked == ["access-to-revoke"]
    assert await get_connection(session=session, owner_id=owner, connection_id=first.id) is None
    [remaining] = await list_connections(session=session, owner_id=owner)
    assert remaining.id == second.id and remaining.is_default

    history = await service.connection_events(session=session, owner_id=owner)
    ours = [event for event in reversed(history) if event.account_id == "first"]
    assert [event.event for event in ours] == ["connected", "revoked", "disconnected"]
    assert all(event.connection_id is None for event in ours)  # the row is gone
    assert ours[-1].source == "user"

    # Again: nothing to do, nothing revoked twice.
    assert not await disconnect(
        session=session, owner_id=owner, connection_id=first.id, provider=spec
    )
    assert server.revoked == ["access-to-revoke"]


async def test_an_expired_access_token_is_revoked_through_the_refresh_token(
    session, owner, spec, server
):
    expired = tokens(access="access-old", refresh="refresh-to-revoke", expires_in=timedelta(0))
    view, _ = await save(session, owner, spec, "ada", expired)
    assert await disconnect(session=session, owner_id=owner, connection_id=view.id, provider=spec)
    assert server.revoked == ["refresh-to-revoke"]


async def test_disconnect_goes_ahead_when_the_provider_cannot_revoke(session, owner, spec, server):
    view, _ = await save(session, owner, spec, "ada", tokens(access="access-x"))
    server.revoke_status = 500
    assert await disconnect(session=session, owner_id=owner, connection_id=view.id, provider=spec)
    assert server.revoked == ["access-x"]
    assert await list_connections(session=session, owner_id=owner) == []
    assert await event_names(session, owner) == ["connected", "disconnected"]


async def test_another_users_connections_are_out_of_reach(owner, stranger, spec, server):
    async with session_scope() as session:
        view, _ = await save(session, owner, spec, "ada", tokens(refresh="refresh-ada"))
    async with session_scope() as session:
        assert (
            await get_connection(session=session, owner_id=stranger, connection_id=view.id) is None
        )
        assert await list_connections(session=session, owner_id=stranger) == []
        assert not await set_default(session=session, owner_id=stranger, connection_id=view.id)
        assert not await disconnect(
            session=session, owner_id=stranger, connection_id=view.id, provider=spec
        )
        assert await service.connection_events(session=session, owner_id=stranger) == []
        assert (
            await service.connection_events(
                session=session, owner_id=stranger, connection_id=view.id
            )
            == []
        )
    with pytest.raises(ConnectionNotFound):
        await get_access_token(owner_id=stranger, provider_id=spec.id)
    message = await service.test_connection(owner_id=stranger, connection_id=view.id, provider=spec)
    assert message == "This connection no longer exists."
    # Nothing changed for the owner, and nothing was revoked.
    assert server.revoked == []
    async with session_scope() as session:
        [still] = await list_connections(session=session, owner_id=owner)
        assert still == view
        assert await event_names(session, owner) == ["connected"]
    token = await get_access_token(owner_id=owner, provider_id=spec.id)
    assert token.connection_id == view.id


async def test_disconnect_matching_for_provider_webhooks(session, owner, stranger, spec, server):
    a, _ = await save(session, owner, spec, "T1:U1")
    b, _ = await save(session, owner, spec, "T1:U2")
    c, _ = await save(session, owner, spec, "T2:U1")
    d, _ = await save(session, stranger, spec, "T1:U9")
    e, _ = await save(session, stranger, spec, "T1_:U9")  # "_" is no wildcard here
    other, _ = await save(session, owner, provider(server, "tokentest"), "T1:U1")

    # A prefix is taken literally: "T1_" is no LIKE pattern matching "T1:".
    assert (
        await disconnect_matching(session=session, provider_id=spec.id, account_id_prefix="T1_")
        == 1
    )
    removed = await disconnect_matching(
        session=session, provider_id=spec.id, account_id_prefix="T1:"
    )
    assert removed == 3
    mine = {v.account_id: v for v in await list_connections(session=session, owner_id=owner)}
    assert set(mine) == {"T2:U1", "T1:U1"}
    assert mine["T2:U1"].id == c.id and mine["T2:U1"].is_default  # promoted
    assert mine["T1:U1"].id == other.id
    assert await list_connections(session=session, owner_id=stranger) == []
    assert server.revoked == []  # the provider did it already

    history = await service.connection_events(session=session, owner_id=owner)
    removed_events = [(x.event, x.source) for x in reversed(history) if x.account_id == "T1:U2"]
    assert removed_events == [
        ("connected", "user"),
        ("revoked", "provider"),
        ("disconnected", "provider"),
    ]

    assert (
        await disconnect_matching(session=session, provider_id=spec.id, account_ids=["T2:U1"]) == 1
    )
    assert (
        await disconnect_matching(session=session, provider_id=spec.id, account_ids=["T2:U1"]) == 0
    )
    assert (
        await disconnect_matching(session=session, provider_id=spec.id, account_id_prefix="T1:")
        == 0
    )
    with pytest.raises(ValueError):
        await disconnect_matching(session=session, provider_id=spec.id)
    assert a.id and b.id and d.id and e.id


async def test_test_connection_reports_in_plain_words(owner, server, spec):
    settings = ConnectionTestSettings()
    async with session_scope() as session:
        view, _ = await save(session, owner, spec, "ada", tokens(server=server))
    assert (
        await service.test_connection(
            owner_id=owner, connection_id=view.id, provider=spec, settings=settings
        )
        is None
    )

    server.userinfo_status = 500
    message = await service.test_connection(
        owner_id=owner, connection_id=view.id, provider=spec, settings=settings
    )
    assert message == "Svctest answered with an error (HTTP 500)."

    server.userinfo_status = 401
    message = await service.test_connection(
        owner_id=owner, connection_id=view.id, provider=spec, settings=settings
    )
    assert "reconnect" in message
    async with session_scope() as session:
        checked = await get_connection(session=session, owner_id=owner, connection_id=view.id)
        assert checked.status == "needs_reauth" and checked.needs_reauth
        assert (await event_names(session, owner, view.id))[-1] == "needs_reauth"
    message = await service.test_connection(
        owner_id=owner, connection_id=view.id, provider=spec, settings=settings
    )
    assert message == "Svctest needs you to reconnect this account."


async def test_test_connection_checks_api_keys(owner, server):
    spec = api_key_provider("keycheck", server=server)
    async with session_scope() as session:
        view = await save_api_key_connection(
            session=session,
            owner_id=owner,
            provider=spec,
            identity=identity("key"),
            api_key="sk-check",
            base_url=None,
        )
    assert (
        await service.test_connection(owner_id=owner, connection_id=view.id, provider=spec) is None
    )
    server.userinfo_status = 401
    assert "reconnect" in await service.test_connection(
        owner_id=owner, connection_id=view.id, provider=spec
    )


async def test_deleting_an_account_revokes_its_tokens(database_url, monkeypatch, server, spec):
    user = create_user(database_url)
    async with session_scope() as session:
        await save(session, user, spec, "ada", tokens(access="access-ada"))
        await save(session, user, spec, "bob", tokens(access="access-bob"))
        await save_api_key_connection(
            session=session,
            owner_id=user,
            provider=api_key_provider(),
            identity=identity("key"),
            api_key="sk-not-revocable",
            base_url=None,
        )

    async def lookup(provider_id, settings):
        return spec if provider_id == spec.id else None

    monkeypatch.setattr(service, "_provider_for", lookup)
    async with session_scope() as session:
        assert await delete_user_account(session=session, user_id=user)
    assert sorted(server.revoked) == ["access-ada", "access-bob"]
    with psycopg.connect(database_url) as connection:
        count = connection.execute(
            "select count(*) from service_connections where owner_id = %s", (user,)
        ).fetchone()
    assert count == (0,)


async def test_account_deletion_goes_ahead_when_revocation_fails(database_url, monkeypatch, spec):
    user = create_user(database_url)
    async with session_scope() as session:
        await save(session, user, spec, "ada")

    async def broken(provider_id, settings):
        raise RuntimeError("registry unavailable")

    monkeypatch.setattr(service, "_provider_for", broken)
    async with session_scope() as session:
        assert await delete_user_account(session=session, user_id=user)


# No secret at rest --------------------------------------------------------------------


def _forms(secret: str) -> set[str]:
    """The secret as it could appear in a dump: plain, hex, or base64 at any alignment."""
    raw = secret.encode()
    forms = {secret, raw.hex(), raw.hex().upper()}
    for shift in range(3):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            encoded = encode(b"\0" * shift + raw).decode().rstrip("=")
            # Drop the characters mixed with the neighbouring bytes.
            start = 4 if shift else 0
            forms.add(encoded[start:-3])
    return {form for form in forms if len(form) >= 12}


def _dump_every_table(database_url: str) -> str:
    chunks: list[str] = []
    with psycopg.connect(database_url) as connection:
        tables = connection.execute(
            "select table_schema, table_name from information_schema.tables"
            " where table_type = 'BASE TABLE'"
            " and table_schema not in ('pg_catalog', 'information_schema')"
        ).fetchall()
        assert ("public", "service_connections") in tables
        for schema, table in tables:
            query = sql.SQL("COPY (SELECT * FROM {}.{}) TO STDOUT").format(
                sql.Identifier(schema), sql.Identifier(table)
            )
            with connection.cursor() as cursor, cursor.copy(query) as copy:
                for data in copy:
                    chunks.append(bytes(data).decode("utf-8", errors="replace"))
    return "".join(chunks)


async def test_no_planted_secret_is_stored_or_logged_in_any_form(database_url, owner, caplog):
    caplog.set_level(logging.DEBUG)
    server = TokenServer(rotate=True)
    try:
        spec = provider(server, "svctest")
        planted = {
            "access": f"PLANTEDaccess{secrets.token_hex(12)}",
            "refresh": f"PLANTEDrefresh{secrets.token_hex(12)}",
            "second_access": f"PLANTEDaccess2{secrets.token_hex(12)}",
            "api_key": f"sk-PLANTEDkey{secrets.token_hex(12)}",
        }
        server.valid_refresh_tokens.add(planted["refresh"])
        async with session_scope() as session:
            await save(
                session,
                owner,
                spec,
                "ada",
                TokenSet(
                    access_token=planted["access"],
                    refresh_token=planted["refresh"],
                    expires_at=utcnow() + timedelta(minutes=1),
                    extra={"note": "kept"},
                ),
            )
            await save(
                session,
                owner,
                spec,
                "bob",
                TokenSet(access_token=planted["second_access"], expires_at=None),
            )
            await save_api_key_connection(
                session=session,
                owner_id=owner,
                provider=api_key_provider(),
                identity=identity("key"),
                api_key=planted["api_key"],
                base_url="https://llm.example.com/v1",
            )
        # A refresh writes provider-issued tokens (rotated refresh token included).
        refreshed = await get_access_token(
            owner_id=owner,
            provider_id=spec.id,
            account_id="ada",
            settings=ConnectionTestSettings(),
            provider=spec,
            retry=fast_retry(),
        )
        assert refreshed.token == server.issued[0]
        secrets_to_find = {**planted, "issued_access": server.issued[0]}
        secrets_to_find["issued_refresh"] = server.issued[1]

        dump = _dump_every_table(database_url)
        assert "v1.k1." in dump  # the ciphertexts are there
        async with session_scope() as session:
            views = repr(await list_connections(session=session, owner_id=owner))
            history = repr(await service.connection_events(session=session, owner_id=owner))
        logs = caplog.text
        for name, secret in secrets_to_find.items():
            for form in _forms(secret):
                assert form not in dump, f"{name} found in the database dump"
                assert form not in views and form not in history, f"{name} in a view"
                assert form not in logs, f"{name} found in the logs"
        assert KEY_1 not in dump and KEY_1 not in logs
    finally:
        server.close()


# Key rotation -------------------------------------------------------------------------


@pytest.fixture
async def own_database(postgres_server):
    """A database of its own, so rotation sees only this test's rows."""
    previous = os.environ["DATABASE_URL"]
    with postgres_server.throwaway_database() as url:
        await dispose_engine()
        os.environ["DATABASE_URL"] = url
        reset_settings_cache()
        try:
            yield url
        finally:
            await dispose_engine()
            os.environ["DATABASE_URL"] = previous
            reset_settings_cache()


async def _all_secrets(database_url: str, ring: KeyRing) -> dict[str, bytes]:
    found: dict[str, bytes] = {}
    with psycopg.connect(database_url) as connection:
        for row_id, value in connection.execute(
            "select id, encrypted_credentials from service_connections"
        ):
            found[str(row_id)] = ring.decrypt(value, aad=credential_aad(row_id))
        for row_id, value in connection.execute(
            "select id, code_verifier from oauth_states where code_verifier like 'v1.%'"
        ):
            aad = field_aad(table="oauth_states", row_id=row_id, field="code_verifier")
            found[str(row_id)] = ring.decrypt(value, aad=aad)
    return found


def _kids(database_url: str) -> list[str]:
    with psycopg.connect(database_url) as connection:
        values = [
            value
            for (value,) in connection.execute(
                "select encrypted_credentials from service_connections"
                " union all select code_verifier from oauth_states"
            )
        ]
    return sorted(crypto.key_id_of(value) or "clear" for value in values if value)


async def test_rotate_keys_re_encrypts_everything_and_resumes(own_database):
    url = own_database
    owners = [create_user(url) for _ in range(3)]
    spec = api_key_provider("rotation")
    async with session_scope() as session:
        for index in range(25):
            await save_api_key_connection(
                session=session,
                owner_id=owners[index % 3],
                provider=spec,
                identity=identity(f"key-{index}"),
                api_key=f"sk-rotate-{index}",
                base_url=None,
            )
        # A pending authorization's verifier, encrypted by the OAuth flow's rules, and
        # one stored in clear, which rotation must leave alone.
        for verifier in ("verifier-secret", None):
            state_id = uuid.uuid4()
            session.add(
                OAuthState(
                    id=state_id,
                    state_hash=secrets.token_hex(16),
                    owner_id=owners[0],
                    provider="rotation",
                    code_verifier=(
                        crypto.encrypt_field(
                            verifier, table="oauth_states", row_id=state_id, field="code_verifier"
                        )
                        if verifier
                        else "plain-verifier"
                    ),
                    expires_at=utcnow() + timedelta(minutes=10),
                )
            )
    old_ring = get_key_ring()
    before = await _all_secrets(url, old_ring)
    assert _kids(url) == ["clear"] + ["k1"] * 26

    with encryption_keys(RING_2_AND_1):
        batches: list[int] = []

        def interrupt_after_first_batch(count: int) -> None:
            batches.append(count)
            raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            await rotate_encryption(batch_size=10, on_batch=interrupt_after_first_batch)
        assert batches == [10]
        assert _kids(url) == ["clear"] + ["k1"] * 16 + ["k2"] * 10

        # Meanwhile the app keeps working with both keys in the ring.
        token = await get_access_token(
            owner_id=owners[0], provider_id="rotation", account_id="key-0"
        )
        assert token.token == "sk-rotate-0"

        resumed: list[int] = []
        report = await rotate_encryption(batch_size=10, on_batch=resumed.append)
        assert report.key_id == "k2"
        assert report.rotated == 16 and resumed == [10, 5, 1]
        assert report.unreadable == []
        assert _kids(url) == ["clear"] + ["k2"] * 26

        again = await rotate_encryption(batch_size=10)
        assert again.rotated == 0

    # With the old key gone from the ring, everything still decrypts.
    new_only = KeyRing.parse(RING_2_AND_1.split(",")[0])
    assert await _all_secrets(url, new_only) == before
    with encryption_keys(RING_2_AND_1.split(",")[0]):
        token = await get_access_token(
            owner_id=owners[1], provider_id="rotation", account_id="key-1"
        )
        assert token.token == "sk-rotate-1"


async def test_rotation_reports_values_no_key_can_read(own_database):
    url = own_database
    user = create_user(url)
    async with session_scope() as session:
        view = await save_api_key_connection(
            session=session,
            owner_id=user,
            provider=api_key_provider("rotation"),
            identity=identity("key"),
            api_key="sk-lost",
            base_url=None,
        )
    lost = KeyRing([("lost", os.urandom(32))]).encrypt(b"{}", aad=credential_aad(view.id))
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(
            "update service_connections set encrypted_credentials = %s where id = %s",
            (lost, view.id),
        )
    with encryption_keys(RING_2_AND_1):
        report = await rotate_encryption()
    assert report.rotated == 0
    assert report.unreadable == [("service_connections", str(view.id))]
