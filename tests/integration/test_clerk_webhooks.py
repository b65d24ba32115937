"""POST /webhooks/clerk against a real PostgreSQL, with deliveries signed like Svix's."""

from __future__ import annotations

import base64
import json
import secrets
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from svix.webhooks import Webhook

from carmenta import db
from carmenta.api.routes import build_api
from carmenta.settings import reset_settings_cache
from carmenta.users.service import register_account_cleanup, unregister_account_cleanup


def _new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


# Everything these tests commit carries these prefixes, so it can be removed after.
_USER_PREFIX = "user_testwh_"
_MSG_PREFIX = "msg_testwh_"


def _clerk_id() -> str:
    return f"{_USER_PREFIX}{uuid.uuid4().hex[:20]}"


def _msg_id() -> str:
    return f"{_MSG_PREFIX}{uuid.uuid4().hex}"


@pytest.fixture
async def webhook_secret(database_url, async_engine, monkeypatch) -> AsyncIterator[str]:
    secret = _new_secret()
    monkeypatch.setenv("CLERK_WEBHOOK_SECRET", secret)
    reset_settings_cache()
    await db.dispose_engine()
    yield secret
    await db.dispose_engine()
    monkeypatch.undo()
    reset_settings_cache()
    # Other tests share this database and may count users.
    async with async_engine.begin() as connection:
        await connection.execute(
            text("delete from users where external_auth_id like :prefix"),
            {"prefix": _USER_PREFIX + "%"},
        )
        await connection.execute(
            text("delete from webhook_events where source = 'clerk' and event_id like :prefix"),
            {"prefix": _MSG_PREFIX + "%"},
        )


def _user_event(
    event_type: str,
    clerk_id: str,
    *,
    emails: list[tuple[str, str]] | None = None,
    primary: str | None = None,
    first_name: str | None = "Ada",
    last_name: str | None = "Lovelace",
    username: str | None = None,
    role: str | None = None,
) -> dict[str, Any]:
    emails = emails if emails is not None else [("idn_1", "ada@example.com")]
    return {
        "type": event_type,
        "object": "event",
        "timestamp": 1_700_000_000_000,
        "data": {
            "id": clerk_id,
            "object": "user",
            "email_addresses": [
                {"id": email_id, "object": "email_address", "email_address": address}
                for email_id, address in emails
            ],
            "primary_email_address_id": primary,
            "first_name": first_name,
            "last_name": last_name,
            "username": username,
            "image_url": "https://img.clerk.com/ada.png",
            "public_metadata": {"role": role} if role else {},
            "private_metadata": {},
        },
    }


def _deleted_event(clerk_id: str) -> dict[str, Any]:
    return {
        "type": "user.deleted",
        "object": "event",
        "data": {"id": clerk_id, "object": "user", "deleted": True},
    }


def _signed_headers(
    secret: str,
    body: str,
    *,
    msg_id: str | None = None,
    timestamp: datetime | None = None,
) -> dict[str, str]:
    msg_id = msg_id or _msg_id()
    timestamp = timestamp or datetime.now(UTC)
    return {
        "svix-id": msg_id,
        "svix-timestamp": str(int(timestamp.timestamp())),
        "svix-signature": Webhook(secret).sign(msg_id, timestamp, body),
        "content-type": "application/json",
    }


async def _post(body: str | bytes, headers: dict[str, str]) -> httpx.Response:
    transport = httpx.ASGITransport(app=build_api())
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.post("/webhooks/clerk", content=body, headers=headers)


async def _deliver(
    secret: str, event: dict[str, Any], *, msg_id: str | None = None
) -> httpx.Response:
    body = json.dumps(event)
    return await _post(body, _signed_headers(secret, body, msg_id=msg_id))


async def _user_row(async_engine, clerk_id: str) -> dict[str, Any] | None:
    async with async_engine.connect() as connection:
        result = await connection.execute(
            text("select * from users where external_auth_id = :id"), {"id": clerk_id}
        )
        row = result.mappings().first()
    return dict(row) if row else None


async def _create_user(secret: str, async_engine, clerk_id: str) -> dict[str, Any]:
    response = await _deliver(secret, _user_event("user.created", clerk_id))
    assert response.status_code == 200
    user = await _user_row(async_engine, clerk_id)
    assert user is not None
    return user


async def _seen(async_engine, msg_id: str) -> bool:
    async with async_engine.connect() as connection:
        result = await connection.execute(
            text("select 1 from webhook_events where source = 'clerk' and event_id = :id"),
            {"id": msg_id},
        )
        return result.first() is not None


async def test_user_created_creates_the_user(webhook_secret, async_engine):
    clerk_id = _clerk_id()
    event = _user_event(
        "user.created",
        clerk_id,
        emails=[("idn_other", "old@example.com"), ("idn_primary", "ada@example.com")],
        primary="idn_primary",
        role="admin",
    )
    msg_id = _msg_id()
    response = await _deliver(webhook_secret, event, msg_id=msg_id)
    assert response.status_code == 200
    assert response.json() == {"status": "processed"}

    user = await _user_row(async_engine, clerk_id)
    assert user is not None
    assert user["auth_provider"] == "clerk"
    assert user["email"] == "ada@example.com"
    assert user["display_name"] == "Ada Lovelace"
    assert user["image_url"] == "https://img.clerk.com/ada.png"
    assert user["is_admin"] is True
    assert await _seen(async_engine, msg_id)
    async with async_engine.connect() as connection:
        profile_documents = (
            await connection.execute(
                text("select count(*) from documents where owner_id = :id and path <@ 'profile'"),
                {"id": user["id"]},
            )
        ).scalar_one()
    assert profile_documents >= 3


async def test_profile_fallbacks_first_email_and_username(webhook_secret, async_engine):
    clerk_id = _clerk_id()
    event = _user_event(
        "user.created",
        clerk_id,
        emails=[("idn_a", "first@example.com"), ("idn_b", "second@example.com")],
        primary=None,
        first_name=None,
        last_name="  ",
        username="ada",
        role="member",
    )
    assert (await _deliver(webhook_secret, event)).status_code == 200
    user = await _user_row(async_engine, clerk_id)
    assert user["email"] == "first@example.com"
    assert user["display_name"] == "ada"
    assert user["is_admin"] is False


async def test_user_updated_changes_the_email_and_keeps_the_id(webhook_secret, async_engine):
    clerk_id = _clerk_id()
    created = _user_event("user.created", clerk_id, role="admin")
    assert (await _deliver(webhook_secret, created)).status_code == 200
    before = await _user_row(async_engine, clerk_id)

    updated = _user_event(
        "user.updated",
        clerk_id,
        emails=[("idn_2", "ada@lovelace.example")],
        primary="idn_2",
        first_name="Augusta Ada",
    )
    response = await _deliver(webhook_secret, updated)
    assert response.status_code == 200
    after = await _user_row(async_engine, clerk_id)
    assert after["id"] == before["id"]
    assert after["email"] == "ada@lovelace.example"
    assert after["display_name"] == "Augusta Ada Lovelace"
    # The role was taken away in Clerk.
    assert after["is_admin"] is False


async def test_wrong_signature_is_401_and_stores_nothing(webhook_secret, async_engine):
    clerk_id = _clerk_id()
    body = json.dumps(_user_event("user.created", clerk_id))
    msg_id = _msg_id()
    headers = _signed_headers(_new_secret(), body, msg_id=msg_id)
    response = await _post(body, headers)
    assert response.status_code == 401
    assert response.json() == {"error": "Invalid webhook signature"}
    assert await _user_row(async_engine, clerk_id) is None
    assert not await _seen(async_engine, msg_id)


async def test_a_body_changed_after_signing_is_401(webhook_secret, async_engine):
    clerk_id = _clerk_id()
    body = json.dumps(_user_event("user.created", clerk_id))
    headers = _signed_headers(webhook_secret, body)
    tampered = body.replace("ada@example.com", "eve@example.com")
    assert (await _post(tampered, headers)).status_code == 401
    assert await _user_row(async_engine, clerk_id) is None


@pytest.mark.parametrize("missing", ["svix-id", "svix-timestamp", "svix-signature"])
async def test_missing_svix_headers_are_401(webhook_secret, missing):
    body = json.dumps(_user_event("user.created", _clerk_id()))
    headers = _signed_headers(webhook_secret, body)
    del headers[missing]
    assert (await _post(body, headers)).status_code == 401


async def test_a_malformed_signature_header_is_401(webhook_secret):
    body = json.dumps(_user_event("user.created", _clerk_id()))
    headers = _signed_headers(webhook_secret, body)
    headers["svix-signature"] = "v1,not base64!! garbage"
    assert (await _post(body, headers)).status_code == 401


async def test_a_timestamp_older_than_five_minutes_is_401(webhook_secret, async_engine):
    clerk_id = _clerk_id()
    body = json.dumps(_user_event("user.created", clerk_id))
    old = datetime.now(UTC) - timedelta(minutes=6)
    response = await _post(body, _signed_headers(webhook_secret, body, timestamp=old))
    assert response.status_code == 401
    assert await _user_row(async_engine, clerk_id) is None


async def test_a_timestamp_from_the_future_is_401(webhook_secret):
    body = json.dumps(_user_event("user.created", _clerk_id()))
    later = datetime.now(UTC) + timedelta(minutes=6)
    assert (
        await _post(body, _signed_headers(webhook_secret, body, timestamp=later))
    ).status_code == 401


async def test_one_matching_signature_among_several_is_accepted(webhook_secret, async_engine):
    """During secret rotation the header lists a signature per secret."""
    clerk_id = _clerk_id()
    body = json.dumps(_user_event("user.created", clerk_id))
    msg_id = _msg_id()
    now = datetime.now(UTC)
    right = _signed_headers(webhook_secret, body, msg_id=msg_id, timestamp=now)
    wrong = Webhook(_new_secret()).sign(msg_id, now, body)
    right["svix-signature"] = f"{wrong} {right['svix-signature']}"
    response = await _post(body, right)
    assert response.status_code == 200
    assert await _user_row(async_engine, clerk_id) is not None


async def test_a_replayed_delivery_is_answered_but_not_reapplied(webhook_secret, async_engine):
    clerk_id = _clerk_id()
    await _create_user(webhook_secret, async_engine, clerk_id)

    first_update = _user_event("user.updated", clerk_id, emails=[("i", "first@example.com")])
    first_update_id = _msg_id()
    first_body = json.dumps(first_update)
    first_headers = _signed_headers(webhook_secret, first_body, msg_id=first_update_id)
    assert (await _post(first_body, first_headers)).status_code == 200

    later_update = _user_event("user.updated", clerk_id, emails=[("i", "later@example.com")])
    assert (await _deliver(webhook_secret, later_update)).status_code == 200

    # Svix redelivers the first update (same id, freshly signed as Svix does on retry).
    replay_headers = _signed_headers(webhook_secret, first_body, msg_id=first_update_id)
    response = await _post(first_body, replay_headers)
    assert response.status_code == 200
    assert response.json() == {"status": "duplicate"}
    assert (await _user_row(async_engine, clerk_id))["email"] == "later@example.com"

    # The very same request again (captured and resent) is a duplicate too.
    response = await _post(first_body, first_headers)
    assert response.json() == {"status": "duplicate"}
    assert (await _user_row(async_engine, clerk_id))["email"] == "later@example.com"


# A row owned by the user in every user-owned table; session_handoffs hangs off
# auth_sessions rather than users, so it is checked separately.
_OWNED_ROWS = """
insert into conversations (id, owner_id) values (:conversation, :user);
insert into messages (conversation_id, owner_id, role, content)
    values (:conversation, :user, 'user', 'hello');
insert into files (id, owner_id, storage_key, original_name, content_type, kind, size_bytes, sha256)
    values (:file, :user, :storage_key, 'notes.pdf', 'application/pdf', 'document', 10, 'abc');
insert into service_connections
    (owner_id, provider, credential_type, account_id, account_label, encrypted_credentials)
    values (:user, 'google', 'oauth', 'acct-1', 'ada@gmail.com', 'k1:ciphertext');
insert into oauth_states (state_hash, owner_id, provider, expires_at)
    values (:state_hash, :user, 'google', now() + interval '10 minutes');
insert into documents (id, owner_id, path, title, content, source, source_file_id)
    values (:document, :user, 'notes.ideas', 'Ideas', 'See [[Plans]]', 'file', :file);
insert into document_links (owner_id, source_document_id, target_document_id, link_text)
    values (:user, :document, :document, 'Plans');
insert into memories (owner_id, content) values (:user, 'Likes tea');
insert into job_progress (job_id, owner_id, task_name) values (:job_id, :user, 'tests.noop');
insert into auth_sessions (id, user_id, expires_at)
    values (:auth_session, :user, now() + interval '1 day');
insert into session_handoffs (code_hash, session_id, expires_at)
    values (:code_hash, :auth_session, now() + interval '1 minute');
insert into password_credentials (user_id, email, password_hash)
    values (:user, :credential_email, '$argon2id$v=19$fake');
"""

_SEEDED_TABLES = {
    "conversations",
    "messages",
    "files",
    "service_connections",
    "oauth_states",
    "documents",
    "document_links",
    "memories",
    "job_progress",
    "auth_sessions",
    "password_credentials",
}


async def _seed_owned_rows(async_engine, user_id: uuid.UUID) -> uuid.UUID:
    auth_session = uuid.uuid4()
    params = {
        "user": user_id,
        "conversation": uuid.uuid4(),
        "file": uuid.uuid4(),
        "document": uuid.uuid4(),
        "auth_session": auth_session,
        "storage_key": f"files/{uuid.uuid4()}",
        "state_hash": secrets.token_hex(32),
        "code_hash": secrets.token_hex(32),
        "credential_email": f"{uuid.uuid4().hex}@example.com",
        "job_id": secrets.randbelow(2**62) + 1,
    }
    async with async_engine.begin() as connection:
        for statement in _OWNED_ROWS.split(";"):
            if statement.strip():
                await connection.execute(text(statement), params)
    return auth_session


async def _user_scoped_columns(async_engine) -> list[tuple[str, str]]:
    """Every (table, column) of this schema that names a user: future tables included."""
    async with async_engine.connect() as connection:
        result = await connection.execute(
            text(
                """
                select c.table_name, c.column_name
                  from information_schema.columns c
                  join information_schema.tables t
                    on t.table_schema = c.table_schema and t.table_name = c.table_name
                 where c.table_schema = current_schema()
                   and t.table_type = 'BASE TABLE'
                   and c.column_name in ('owner_id', 'user_id')
                 order by 1, 2
                """
            )
        )
        return [(row.table_name, row.column_name) for row in result]


async def _rows_naming(async_engine, user_id: uuid.UUID) -> dict[str, int]:
    counts: dict[str, int] = {}
    async with async_engine.connect() as connection:
        for table, column in await _user_scoped_columns(async_engine):
            # Names come from the catalogue, not from input; quoted all the same.
            result = await connection.execute(
                text(f'select count(*) from "{table}" where "{column}" = :id'), {"id": user_id}
            )
            counts[table] = result.scalar_one()
    return counts


async def test_user_deleted_leaves_no_row_of_the_user_anywhere(webhook_secret, async_engine):
    clerk_id = _clerk_id()
    user_id = (await _create_user(webhook_secret, async_engine, clerk_id))["id"]
    auth_session = await _seed_owned_rows(async_engine, user_id)

    before = await _rows_naming(async_engine, user_id)
    assert _SEEDED_TABLES <= set(before), "a user-owned table is missing from the schema"
    assert all(before[table] >= 1 for table in _SEEDED_TABLES), before

    response = await _deliver(webhook_secret, _deleted_event(clerk_id))
    assert response.status_code == 200
    assert response.json() == {"status": "processed"}

    assert await _user_row(async_engine, clerk_id) is None
    after = await _rows_naming(async_engine, user_id)
    assert set(after) == set(before)
    assert {table: count for table, count in after.items() if count} == {}
    async with async_engine.connect() as connection:
        handoffs = await connection.execute(
            text("select count(*) from session_handoffs where session_id = :id"),
            {"id": auth_session},
        )
        assert handoffs.scalar_one() == 0


async def test_every_reference_to_users_cascades(database_url, async_engine):
    """A new table that points at users without ON DELETE CASCADE would outlive its user."""
    async with async_engine.connect() as connection:
        result = await connection.execute(
            text(
                """
                select con.conrelid::regclass::text as table_name, con.confdeltype,
                       (select attname from pg_attribute
                         where attrelid = con.conrelid and attnum = con.conkey[1]) as column_name
                  from pg_constraint con
                 where con.contype = 'f' and con.confrelid = 'users'::regclass
                """
            )
        )
        references = result.all()
    assert references, "no table refers to users"
    # The one exception: an audit entry outlives the admin who made it (their id is
    # cleared); the entries about a person's rows go with that person (owner_id cascades).
    kept_on_purpose = {("admin_audit_log", "admin_user_id", "n")}
    assert [
        row.table_name
        for row in references
        if row.confdeltype != "c"
        and (row.table_name, row.column_name, row.confdeltype) not in kept_on_purpose
    ] == []


async def test_deleting_an_unknown_user_is_a_no_op(webhook_secret, async_engine):
    msg_id = _msg_id()
    response = await _deliver(webhook_secret, _deleted_event(_clerk_id()), msg_id=msg_id)
    assert response.status_code == 200
    assert response.json() == {"status": "processed"}
    assert await _seen(async_engine, msg_id)


async def test_a_cleanup_hook_sees_the_user_before_deletion(webhook_secret, async_engine):
    clerk_id = _clerk_id()
    user_id = (await _create_user(webhook_secret, async_engine, clerk_id))["id"]
    calls: list[tuple[uuid.UUID, int]] = []

    async def hook(*, session, user_id):
        result = await session.exec(
            text("select count(*) from users where id = :id"), params={"id": user_id}
        )
        calls.append((user_id, result.scalar_one()))

    register_account_cleanup(hook)
    try:
        response = await _deliver(webhook_secret, _deleted_event(clerk_id))
    finally:
        unregister_account_cleanup(hook)
    assert response.status_code == 200
    assert calls == [(user_id, 1)]
    assert await _user_row(async_engine, clerk_id) is None


async def test_a_database_error_in_a_hook_keeps_the_user_and_answers_500(
    webhook_secret, async_engine
):
    clerk_id = _clerk_id()
    user_id = (await _create_user(webhook_secret, async_engine, clerk_id))["id"]
    await _seed_owned_rows(async_engine, user_id)
    before = await _rows_naming(async_engine, user_id)

    async def failing_hook(*, session, user_id):
        await session.exec(
            text("delete from memories where owner_id = :id"), params={"id": user_id}
        )
        await session.exec(text("select 1 / 0"))

    msg_id = _msg_id()
    body = json.dumps(_deleted_event(clerk_id))
    register_account_cleanup(failing_hook)
    try:
        response = await _post(body, _signed_headers(webhook_secret, body, msg_id=msg_id))
    finally:
        unregister_account_cleanup(failing_hook)
    assert response.status_code == 500
    assert "error" in response.json()
    assert await _user_row(async_engine, clerk_id) is not None
    # Nothing half-deleted, and the delivery is not remembered, so the retry is applied.
    assert await _rows_naming(async_engine, user_id) == before
    assert not await _seen(async_engine, msg_id)

    retry = await _post(body, _signed_headers(webhook_secret, body, msg_id=msg_id))
    assert retry.status_code == 200
    assert retry.json() == {"status": "processed"}
    assert await _user_row(async_engine, clerk_id) is None


async def test_unknown_event_types_are_ignored_but_recorded(webhook_secret, async_engine):
    msg_id = _msg_id()
    event = {"type": "session.created", "object": "event", "data": {"id": "sess_1"}}
    response = await _deliver(webhook_secret, event, msg_id=msg_id)
    assert response.status_code == 200
    assert response.json() == {"status": "ignored"}
    assert await _seen(async_engine, msg_id)
    again = await _deliver(webhook_secret, event, msg_id=msg_id)
    assert again.json() == {"status": "duplicate"}


@pytest.mark.parametrize(
    "body",
    [
        "{not json",
        "[1, 2, 3]",
        json.dumps({"data": {"id": "user_x"}}),
        json.dumps({"type": "user.created", "data": {"first_name": "No id"}}),
        json.dumps({"type": "user.deleted", "data": None}),
    ],
    ids=["not-json", "not-an-object", "no-type", "user-without-id", "deleted-without-id"],
)
async def test_a_signed_body_that_is_not_a_clerk_event_is_400(webhook_secret, async_engine, body):
    msg_id = _msg_id()
    response = await _post(body, _signed_headers(webhook_secret, body, msg_id=msg_id))
    assert response.status_code == 400
    assert "error" in response.json()
    assert not await _seen(async_engine, msg_id)


async def test_an_oversized_body_is_413(webhook_secret):
    body = json.dumps({"type": "user.created", "padding": "x" * (1024 * 1024)})
    response = await _post(body, _signed_headers(webhook_secret, body))
    assert response.status_code == 413


async def test_without_a_secret_webhooks_are_503(database_url, monkeypatch):
    # An empty value also overrides any secret in a developer's .env file.
    monkeypatch.setenv("CLERK_WEBHOOK_SECRET", "")
    reset_settings_cache()
    try:
        body = json.dumps(_user_event("user.created", _clerk_id()))
        response = await _post(body, _signed_headers(_new_secret(), body))
    finally:
        monkeypatch.undo()
        reset_settings_cache()
    assert response.status_code == 503
    assert response.json() == {"error": "Clerk webhooks are not configured"}


async def test_an_invalid_secret_is_503_and_not_echoed(database_url, monkeypatch, caplog):
    monkeypatch.setenv("CLERK_WEBHOOK_SECRET", "whsec_abcde")
    reset_settings_cache()
    try:
        body = json.dumps(_user_event("user.created", _clerk_id()))
        response = await _post(body, _signed_headers(_new_secret(), body))
    finally:
        monkeypatch.undo()
        reset_settings_cache()
    assert response.status_code == 503
    assert "abcde" not in caplog.text


async def test_only_post_is_allowed(webhook_secret):
    transport = httpx.ASGITransport(app=build_api())
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get("/webhooks/clerk")
    assert response.status_code == 405


async def test_bodies_and_signatures_are_never_logged(webhook_secret, caplog):
    clerk_id = _clerk_id()
    event = _user_event("user.created", clerk_id, emails=[("i", "private@example.com")])
    body = json.dumps(event)
    good = _signed_headers(webhook_secret, body)
    bad = _signed_headers(_new_secret(), body)
    malformed = "{not json"
    malformed_headers = _signed_headers(webhook_secret, malformed)
    with caplog.at_level("DEBUG"):
        assert (await _post(body, good)).status_code == 200
        assert (await _post(body, bad)).status_code == 401
        assert (await _post(malformed, malformed_headers)).status_code == 400
    logged = caplog.text
    assert "private@example.com" not in logged
    assert "Lovelace" not in logged
    for headers in (good, bad, malformed_headers):
        assert headers["svix-signature"].split(",", 1)[1] not in logged
    assert webhook_secret.removeprefix("whsec_") not in logged
