"""The admin console at /admin, over HTTP against the built API and a real PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import text
from starlette_admin import DropDown
from starlette_admin.types import RequestAction

from carmenta import db
from carmenta.admin.console import build_console
from carmenta.admin.secrets import is_administered, is_secret_column
from carmenta.api.routes import build_api
from carmenta.jobs import service as jobs_service
from carmenta.models import metadata
from carmenta.settings import get_settings, reset_settings_cache
from tests.integration.admin_support import (
    ADMIN_EMAIL,
    ORIGIN,
    SignedIn,
    csrf_token,
    form_values,
    sign_up,
)


@pytest.fixture
async def api(database_url, monkeypatch, tmp_path):
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.delenv("PUBLIC_URL", raising=False)
    monkeypatch.setenv("PORT", "3000")
    monkeypatch.setenv("ADMIN_EMAILS", ADMIN_EMAIL)
    reset_settings_cache()
    await db.dispose_engine()
    yield build_api()
    await db.dispose_engine()
    reset_settings_cache()


def client_for(app, user: SignedIn | None) -> httpx.AsyncClient:
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ORIGIN, timeout=60)
    if user is not None:
        client.cookies.set("carmenta_session", user.token)
    return client


@pytest.fixture
async def admin(api):
    # One admin address per run; an earlier test's account is replaced.
    async with db.session_scope() as session:
        await session.execute(
            text("delete from users where email = :email"), {"email": ADMIN_EMAIL}
        )
    return await sign_up(ADMIN_EMAIL)


def console_views():
    console = build_console(get_settings())
    found = []
    for view in console._views:
        found += view.views if isinstance(view, DropDown) else [view]
    return [view for view in found if hasattr(view, "model")]


async def execute(sql: str, **params) -> list:
    async with db.session_scope() as session:
        result = await session.execute(text(sql), params)
        return list(result.mappings().all()) if result.returns_rows else []


async def new_conversation(owner: SignedIn, title: str) -> uuid.UUID:
    [row] = await execute(
        "insert into conversations (owner_id, title) values (:owner, :title) returning id",
        owner=owner.user_id,
        title=title,
    )
    return row["id"]


async def test_every_admin_url_is_a_plain_404_unless_the_verified_user_is_an_admin(api, admin):
    person = await sign_up()
    conversation = await new_conversation(person, "Private plans")
    urls = ["/admin", "/admin/", "/admin/storage", "/admin/statics/css/tabler.min.css"]
    for view in console_views():
        urls += [f"/admin/{view.key}/list", f"/admin/{view.key}/detail?pk={conversation}"]
        urls += [f"/admin/{view.key}/edit?pk={conversation}", f"/admin/{view.key}/create"]
    forged = SignedIn(user_id=admin.user_id, email=ADMIN_EMAIL, token=admin.token[:-4] + "AAAA")
    for visitor in (None, person, forged):
        async with client_for(api, visitor) as client:
            client.headers["X-Carmenta-Admin"] = "yes"  # claims from the browser count for nothing
            for url in urls:
                response = await client.get(url)
                assert (response.status_code, response.text) == (404, "Not Found"), url
            posted = await client.post(
                f"/admin/conversation/edit?pk={conversation}", data={"title": "Hijacked"}
            )
            assert posted.status_code == 404
            action = await client.post("/admin/_api/failed-jobs/row-action?name=retry&pk=1")
            assert action.status_code == 404
    [row] = await execute("select title from conversations where id = :id", id=conversation)
    assert row["title"] == "Private plans"

    async with client_for(api, admin) as client:
        assert (await client.get("/admin/")).status_code == 200


async def test_admin_searches_filters_sorts_and_follows_a_users_relations(api, admin):
    person = await sign_up()
    other = await sign_up()
    mine = await new_conversation(person, "Trip to Lisbon")
    theirs = await new_conversation(other, "Tax return")
    async with client_for(api, admin) as client:
        found = await client.get("/admin/user/list", params={"q": person.email})
        assert found.status_code == 200
        assert person.email in found.text and other.email not in found.text

        detail = await client.get("/admin/user/detail", params={"pk": str(person.user_id)})
        assert detail.status_code == 200 and person.email in detail.text
        assert f"owner_id__eq%3D{person.user_id}" in detail.text  # link to their conversations

        filtered = await client.get(
            "/admin/conversation/list", params={"filter": f"owner_id__eq={person.user_id}"}
        )
        assert filtered.status_code == 200
        assert "Trip to Lisbon" in filtered.text and "Tax return" not in filtered.text
        # The owner column links to the user's page.
        assert f"/admin/user/detail?pk={person.user_id}" in filtered.text

        ascending = await client.get(
            "/admin/conversation/list", params={"sort": "title__asc", "q": "T"}
        )
        assert ascending.text.index("Tax return") < ascending.text.index("Trip to Lisbon")
        descending = await client.get(
            "/admin/conversation/list", params={"sort": "title__desc", "q": "T"}
        )
        assert descending.text.index("Trip to Lisbon") < descending.text.index("Tax return")
    assert mine != theirs


async def test_editing_a_row_writes_an_audit_entry_with_before_and_after(api, admin):
    person = await sign_up()
    conversation = await new_conversation(person, "Old title")
    async with client_for(api, admin) as client:
        form = await client.get("/admin/conversation/edit", params={"pk": str(conversation)})
        assert form.status_code == 200 and "Old title" in form.text
        saved = await client.post(
            "/admin/conversation/edit",
            params={"pk": str(conversation)},
            data={**form_values(form.text), "title": "New title", "title_edited": "on"},
        )
        assert saved.status_code in (302, 303), saved.text[:500]

        log = await client.get("/admin/audit-log/list")
        assert "New title" in log.text and "Old title" in log.text
        # Imports would write past the audit trail: refused.
        imported = await client.post(
            "/admin/_api/conversation/import",
            headers={"X-CSRFToken": client.cookies["starlette_admin_csrftoken"]},
            files={"file": ("rows.csv", b"id,title\n" + str(conversation).encode() + b",X\n")},
        )
        assert imported.status_code in (400, 403)

    [row] = await execute(
        "select title, title_edited from conversations where id = :id", id=conversation
    )
    assert (row["title"], row["title_edited"]) == ("New title", True)
    [entry] = await execute(
        "select * from admin_audit_log where table_name = 'conversations' and row_id = :id",
        id=str(conversation),
    )
    assert entry["admin_user_id"] == admin.user_id
    assert entry["owner_id"] == person.user_id
    assert entry["action"] == "edit"
    assert entry["before"]["title"] == "Old title" and entry["after"]["title"] == "New title"
    assert entry["before"]["title_edited"] is False and entry["after"]["title_edited"] is True
    assert "id" not in entry["after"]  # only what changed
    assert entry["created_at"] > datetime.now(UTC) - timedelta(minutes=5)


async def test_a_refused_edit_changes_nothing_and_writes_no_audit_entry(api, admin):
    person = await sign_up()
    async with client_for(api, admin) as client:
        [memory] = await execute(
            "insert into memories (owner_id, content) values (:owner, 'Likes tea') returning id",
            owner=person.user_id,
        )
        form = await client.get("/admin/memory/edit", params={"pk": str(memory["id"])})
        refused = await client.post(
            "/admin/memory/edit",
            params={"pk": str(memory["id"])},
            # A confidence outside 0..1: the database refuses it.
            data={**form_values(form.text), "content": "Likes coffee", "confidence": "7"},
        )
        assert refused.status_code == 422
        assert "ck_memories_confidence_range" in refused.text
        assert "nothing was saved" in refused.text
    [row] = await execute("select content from memories where id = :id", id=memory["id"])
    assert row["content"] == "Likes tea"
    assert (
        await execute("select 1 from admin_audit_log where row_id = :id", id=str(memory["id"]))
        == []
    )


def test_no_secret_column_is_in_any_views_list_detail_edit_or_export(database_url):
    views = console_views()
    administered = {view.model.__table__.name for view in views}
    secret_columns = {
        (table.name, column.name)
        for table in metadata.tables.values()
        for column in table.columns
        if is_secret_column(table.name, column.name)
    }
    # The models hold these secrets; the rule must know every one of them.
    assert {
        ("password_credentials", "password_hash"),
        ("service_connections", "encrypted_credentials"),
        ("oauth_states", "state_hash"),
        ("oauth_states", "code_verifier"),
        ("session_handoffs", "code_hash"),
    } <= secret_columns
    for table in metadata.tables.values():
        if table.name == "session_handoffs":
            assert not is_administered(table) and table.name not in administered
        elif table.name not in ("admin_audit_log",):
            assert table.name in administered, f"{table.name} has no view"

    class FakeRequest:
        class state:
            action = None

    for view in views:
        table = view.model.__table__.name
        for action in (
            RequestAction.LIST,
            RequestAction.DETAIL,
            RequestAction.EDIT,
            RequestAction.EXPORT,
        ):
            names = {field.name for field in view.get_fields_list(FakeRequest(), action=action)}
            exposed = {name for name in names if (table, name) in secret_columns}
            assert not exposed, (view.key, action, exposed)
            assert "embedding" not in names and "search_vector" not in names


async def test_secret_values_never_appear_in_any_response_body(api, admin):
    person = await sign_up()
    planted = {
        "ciphertext": f"v1:key-a:PLANTED-CIPHERTEXT-{uuid.uuid4().hex}",
        "state_hash": f"PLANTED-STATE-HASH-{uuid.uuid4().hex}",
        "verifier": f"PLANTED-VERIFIER-{uuid.uuid4().hex}",
        "handoff": f"PLANTED-HANDOFF-HASH-{uuid.uuid4().hex}",
    }
    [password] = await execute(
        "select password_hash from password_credentials where user_id = :id", id=person.user_id
    )
    planted["password_hash"] = password["password_hash"]
    [connection] = await execute(
        "insert into service_connections (owner_id, provider, credential_type, account_id,"
        " account_label, encrypted_credentials, status) values (:owner, 'github', 'oauth',"
        " 'octo', 'octo', :secret, 'needs_reauth') returning id",
        owner=person.user_id,
        secret=planted["ciphertext"],
    )
    [state] = await execute(
        "insert into oauth_states (owner_id, state_hash, provider, code_verifier, expires_at)"
        " values (:owner, :hash, 'github', :verifier, now() + interval '5 minutes') returning id",
        owner=person.user_id,
        hash=planted["state_hash"],
        verifier=planted["verifier"],
    )
    [session_row] = await execute(
        "select id from auth_sessions where user_id = :id limit 1", id=person.user_id
    )
    await execute(
        "insert into session_handoffs (code_hash, session_id, expires_at)"
        " values (:hash, :session, now() + interval '1 minute')",
        hash=planted["handoff"],
        session=session_row["id"],
    )
    row_ids = {
        "user": person.user_id,
        "password-credential": person.user_id,
        "connection": connection["id"],
        "connection-reconnect": connection["id"],
        "oauth-state": state["id"],
        "auth-session": session_row["id"],
    }
    bodies: list[str] = []
    async with client_for(api, admin) as client:
        home = await client.get("/admin/")
        token = csrf_token(
            (await client.get("/admin/user/edit", params={"pk": str(admin.user_id)})).text
        )
        for view in console_views():
            listed = await client.get(f"/admin/{view.key}/list")
            assert listed.status_code == 200, view.key
            bodies.append(listed.text)
            # Searching for a secret does not reveal which row holds it.
            searched = await client.get(f"/admin/{view.key}/list", params={"q": "PLANTED"})
            assert "octo" not in searched.text and person.email not in searched.text, view.key
            if view.key in row_ids:
                pk = str(row_ids[view.key])
                detail = await client.get(f"/admin/{view.key}/detail", params={"pk": pk})
                assert detail.status_code == 200, view.key
                bodies.append(detail.text)
                edit = await client.get(f"/admin/{view.key}/edit", params={"pk": pk})
                bodies.append(edit.text)
            for export_format in ("csv", "json"):
                exported = await client.post(
                    f"/admin/_api/{view.key}/action",
                    params={"name": "export", "all": "1"},
                    data={"csrftoken": token, "scope": "all", "format": export_format},
                )
                assert exported.status_code == 200, (view.key, exported.text[:300])
                bodies.append(exported.text)
        bodies.append(home.text)
    everything = "\n".join(bodies)
    assert "octo" in everything  # the connection itself is listed
    assert person.email in everything
    for name, value in planted.items():
        assert value not in everything, name


async def test_reconnection_and_storage_views_show_what_needs_attention(api, admin):
    person = await sign_up()
    await execute(
        "insert into service_connections (owner_id, provider, credential_type, account_id,"
        " account_label, status) values (:owner, 'slack', 'oauth', 'T1', 'Broken workspace',"
        " 'needs_reauth'), (:owner, 'notion', 'oauth', 'N1', 'Healthy notes', 'connected')",
        owner=person.user_id,
    )
    for size in (1024 * 1024, 512 * 1024):
        await execute(
            "insert into files (owner_id, storage_key, original_name, content_type, kind,"
            " size_bytes, sha256, status) values (:owner, :key, 'a.txt', 'text/plain', 'text',"
            " :size, 'x', 'ready')",
            owner=person.user_id,
            key=f"{person.user_id}/{uuid.uuid4()}/original",
            size=size,
        )
    async with client_for(api, admin) as client:
        reconnect = await client.get("/admin/connection-reconnect/list")
        assert "Broken workspace" in reconnect.text and "Healthy notes" not in reconnect.text
        storage = await client.get("/admin/storage")
        assert storage.status_code == 200
        assert person.email in storage.text and "1.5 MB" in storage.text


async def test_admin_retries_a_failed_job_and_cancels_a_queued_one(api, admin):
    person = await sign_up()
    # Queueing locks of their own: a worker started by an earlier test may have left
    # these periodic tasks queued under their usual locks.
    failing = await jobs_service.enqueue(
        task_name="maintenance.delete_old_jobs",
        task_kwargs={},
        owner_id=person.user_id,
        delay_seconds=3600,
        queueing_lock=f"admin-test-{uuid.uuid4()}",
    )
    queued = await jobs_service.enqueue(
        task_name="maintenance.purge_expired_oauth_states",
        task_kwargs={"timestamp": 1},
        owner_id=person.user_id,
        delay_seconds=3600,
        queueing_lock=f"admin-test-{uuid.uuid4()}",
    )
    await execute("update procrastinate_jobs set status = 'failed' where id = :id", id=failing)
    try:
        async with client_for(api, admin) as client:
            listed = await client.get("/admin/failed-jobs/list")
            assert "maintenance.delete_old_jobs" in listed.text
            # As the page's script does: the signed token from the cookie, in a header.
            headers = {"X-CSRFToken": client.cookies["starlette_admin_csrftoken"]}
            retried = await client.post(
                "/admin/_api/failed-jobs/row-action",
                params={"name": "retry", "pk": str(failing)},
                headers=headers,
            )
            assert retried.status_code == 200, retried.text
            cancelled = await client.post(
                "/admin/_api/queued-jobs/row-action",
                params={"name": "cancel", "pk": str(queued)},
                headers=headers,
            )
            assert cancelled.status_code == 200, cancelled.text
            again = await client.post(
                "/admin/_api/queued-jobs/row-action",
                params={"name": "cancel", "pk": str(queued)},
                headers=headers,
            )
            assert again.status_code == 400
            assert "only queued or running jobs can be cancelled" in again.json()["msg"]
        statuses = {
            row["id"]: row["status"]
            for row in await execute(
                "select id, status::text as status from procrastinate_jobs where id in (:a, :b)",
                a=failing,
                b=queued,
            )
        }
        assert statuses == {failing: "todo", queued: "cancelled"}
        entries = await execute(
            "select row_id, action, before, after, admin_user_id, owner_id from admin_audit_log"
            " where table_name = 'procrastinate_jobs' and row_id in (:a, :b) order by created_at",
            a=str(failing),
            b=str(queued),
        )
        assert [(e["row_id"], e["action"], e["before"], e["after"]) for e in entries] == [
            (str(failing), "retry", {"status": "failed"}, {"status": "todo"}),
            (str(queued), "cancel", {"status": "todo"}, {"status": "cancelled"}),
        ]
        assert {e["admin_user_id"] for e in entries} == {admin.user_id}
        assert {e["owner_id"] for e in entries} == {person.user_id}
    finally:
        await execute(
            "update procrastinate_jobs set status = 'cancelled' where id in (:a, :b)"
            " and status = 'todo'",
            a=failing,
            b=queued,
        )
