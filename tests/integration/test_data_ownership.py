"""A person takes all their data away as a zip, or leaves and takes everything with them."""

from __future__ import annotations

import base64
import io
import json
import uuid
import zipfile
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import pytest
from sqlalchemy import text
from sqlmodel import SQLModel

import carmenta.models  # noqa: F401  (every table in the metadata)
from carmenta import db
from carmenta.accounts import service as accounts_service
from carmenta.connections import service as connections_service
from carmenta.exports import service as exports_service
from carmenta.jobs import service as jobs_service
from carmenta.settings import get_settings
from tests.integration import files_support
from tests.integration.connections_support import RING_1, TokenServer, encryption_keys, provider
from tests.integration.data_ownership_support import (
    ANSWER,
    DOCUMENT_BODY,
    FILE_BODY,
    MEMORY,
    QUESTION,
    seed_everything,
)

files_client = files_support.files_client


@pytest.fixture
def token_server():
    server = TokenServer()
    yield server
    server.close()


@pytest.fixture
def spec(token_server, monkeypatch):
    declared = provider(token_server, "svctest")

    async def lookup(provider_id, settings):
        return declared if provider_id == declared.id else None

    # The registry knows only the real providers; this one points at the local server.
    monkeypatch.setattr(connections_service, "_provider_for", lookup)
    return declared


@pytest.fixture(autouse=True)
def _keys():
    with encryption_keys(RING_1):
        yield


async def _build(owner_id: uuid.UUID) -> exports_service.ExportView:
    """Ask for an export and run its job's work, reporting progress as the worker does."""
    settings = get_settings()
    async with db.session_scope() as session:
        requested = await exports_service.request_export(
            session=session, owner_id=owner_id, settings=settings
        )
        export = await session.get(exports_service.DataExport, requested.id)
        job_id = export.job_id
    assert requested.building and requested.percent == 0
    reported: list[float] = []

    async def progress(percent: float, message: str) -> None:
        reported.append(percent)
        await jobs_service.report_progress(job_id=job_id, percent=percent, message=message)

    await exports_service.build_export(
        owner_id=owner_id, export_id=requested.id, settings=settings, progress=progress
    )
    assert reported == sorted(reported) and reported[-1] >= 95
    async with db.session_scope() as session:
        view = await exports_service.latest_export(session=session, owner_id=owner_id)
    assert view is not None and view.id == requested.id
    return view


async def _download(client, owner_id: uuid.UUID, export_id: uuid.UUID) -> zipfile.ZipFile:
    async with db.session_scope() as session:
        url = await exports_service.download_url(
            session=session, owner_id=owner_id, export_id=export_id, settings=get_settings()
        )
    assert url is not None
    response = await client.get(url)
    assert response.status_code == 200, response.text
    assert "carmenta-export-" in response.headers.get("content-disposition", "")
    return zipfile.ZipFile(io.BytesIO(response.content))


def _forms(secret: str) -> set[str]:
    raw = secret.encode()
    return {secret, raw.hex(), base64.b64encode(raw).decode().rstrip("=")}


async def test_the_export_holds_every_kind_of_data_and_no_secret(files_client, spec):
    seeded = await seed_everything(files_client, spec)
    owner = seeded.user.user_id

    view = await _build(owner)
    assert view.status is exports_service.ExportStatus.ready and view.percent == 100
    archive = await _download(files_client, owner, view.id)
    names = archive.namelist()

    conversation_json = next(n for n in names if n.endswith("Garden plans.json"))
    conversation = json.loads(archive.read(conversation_json))
    assert [(m["role"], m["content"]) for m in conversation["messages"]] == [
        ("user", QUESTION),
        ("assistant", ANSWER),
    ]
    markdown = archive.read(conversation_json.removesuffix(".json") + ".md").decode()
    assert markdown.startswith("# Garden plans") and QUESTION in markdown and ANSWER in markdown

    assert archive.read("documents/knowledge/garden/tomatoes.md").decode() == DOCUMENT_BODY
    documents = json.loads(archive.read("documents.json"))
    assert {d["path"] for d in documents} >= {"knowledge.garden.tomatoes"}
    assert any(d["path"].startswith("profile") for d in documents)  # seeded at sign-up

    assert [m["content"] for m in json.loads(archive.read("memories.json"))] == [MEMORY]

    files = json.loads(archive.read("files.json"))
    assert [(f["name"], f["id"]) for f in files] == [("seed order.txt", str(seeded.file_id))]
    assert archive.read(files[0]["file"]) == FILE_BODY

    connections = json.loads(archive.read("connections.json"))
    assert sorted((c["provider"], c["account"]) for c in connections) == [
        ("keytest", "Key account"),
        ("svctest", "ada@example.com"),
    ]
    assert next(c for c in connections if c["provider"] == "svctest")["scopes"] == [
        "read",
        "write",
    ]
    assert json.loads(archive.read("account.json"))["id"] == str(owner)

    async with db.session_scope() as session:
        stored = (
            await session.execute(
                text("select encrypted_credentials from service_connections where owner_id = :o"),
                {"o": owner},
            )
        ).scalars()
        ciphertexts = [value for value in stored if value]
    assert len(ciphertexts) == 2
    for name in names:
        body = archive.read(name).decode("utf-8", errors="replace")
        for secret in seeded.secrets:
            for form in _forms(secret):
                assert form not in body, f"a secret is in {name}"
        for ciphertext in ciphertexts:
            assert ciphertext not in body, f"a stored credential is in {name}"


async def test_an_empty_account_exports_a_readable_zip(files_client):
    user = await files_support.sign_up()
    view = await _build(user.user_id)
    archive = await _download(files_client, user.user_id, view.id)
    assert json.loads(archive.read("memories.json")) == []
    assert json.loads(archive.read("files.json")) == []
    assert "0 conversations" in archive.read("README.md").decode()


async def test_only_the_owner_gets_a_link_and_expired_exports_are_deleted(files_client):
    owner, stranger = await files_support.sign_up(), await files_support.sign_up()
    view = await _build(owner.user_id)
    key = exports_service.export_key(owner.user_id, view.id)
    assert await files_support.store().exists(key=key)
    settings = get_settings()

    async with db.session_scope() as session:
        assert (
            await exports_service.download_url(
                session=session, owner_id=stranger.user_id, export_id=view.id, settings=settings
            )
            is None
        )
        assert (
            await exports_service.latest_export(session=session, owner_id=stranger.user_id) is None
        )
        url = await exports_service.download_url(
            session=session, owner_id=owner.user_id, export_id=view.id, settings=settings
        )
    # A link whose signature was made for another key does not open this one.
    forged = url.replace(str(owner.user_id), str(stranger.user_id))
    assert (await files_client.get(forged)).status_code in (403, 404)
    assert urlsplit(url).path.startswith(f"/files/object/{owner.user_id}/exports/")

    later = datetime.now(UTC) + timedelta(hours=settings.export_retention_hours, minutes=1)
    assert await exports_service.purge_expired_exports(settings=settings, now=later) >= 1
    assert not await files_support.store().exists(key=key)
    async with db.session_scope() as session:
        assert await exports_service.latest_export(session=session, owner_id=owner.user_id) is None
    assert (await files_client.get(url)).status_code == 404


async def test_a_second_request_while_one_builds_reuses_it(files_client):
    user = await files_support.sign_up()
    settings = get_settings()
    async with db.session_scope() as session:
        first = await exports_service.request_export(
            session=session, owner_id=user.user_id, settings=settings
        )
        second = await exports_service.request_export(
            session=session, owner_id=user.user_id, settings=settings
        )
    assert first.id == second.id and second.building
    await files_support.cancel_pending_jobs_of(user.user_id)


def _owned_tables() -> dict[str, str]:
    """Every table with a column referencing users.id, and that column."""
    owned = {}
    for table in SQLModel.metadata.sorted_tables:
        for column in table.columns:
            if any(fk.column.table.name == "users" for fk in column.foreign_keys):
                owned[table.name] = column.name
    owned["users"] = "id"
    return owned


def _child_tables(owned: dict[str, str]) -> dict[str, tuple[str, str, str]]:
    """Tables without an owner column whose rows hang off an owned table."""
    children = {}
    for table in SQLModel.metadata.sorted_tables:
        if table.name in owned:
            continue
        for column in table.columns:
            for fk in column.foreign_keys:
                parent = fk.column.table.name
                if parent in owned:
                    children[table.name] = (column.name, parent, fk.column.name)
    return children


async def _rows_of(user_id: uuid.UUID) -> dict[str, int]:
    owned = _owned_tables()
    counts = {}
    async with db.session_scope() as session:
        for table, column in owned.items():
            counts[table] = (
                await session.execute(
                    text(f'select count(*) from "{table}" where "{column}" = :u'), {"u": user_id}
                )
            ).scalar_one()
        for table, (column, parent, parent_key) in _child_tables(owned).items():
            counts[table] = (
                await session.execute(
                    text(
                        f'select count(*) from "{table}" where "{column}" in'
                        f' (select "{parent_key}" from "{parent}"'
                        f' where "{owned[parent]}" = :u)'
                    ),
                    {"u": user_id},
                )
            ).scalar_one()
    return counts


async def test_deleting_an_account_leaves_no_row_no_object_and_revokes_tokens(
    files_client, spec, token_server
):
    seeded = await seed_everything(files_client, spec)
    neighbour = await seed_everything(files_client, spec)
    owner = seeded.user.user_id
    await _build(owner)
    async with db.session_scope() as session:
        await exports_service.request_export(
            session=session, owner_id=owner, settings=get_settings()
        )

    before = await _rows_of(owner)
    neighbours_rows = await _rows_of(neighbour.user.user_id)
    empty = [table for table, count in before.items() if count == 0]
    assert empty == [], f"the test user has no rows in {empty}: seed them"
    assert len(files_support.stored_files(owner)) >= 3  # file, its metadata, the export

    async with db.session_scope() as session:
        assert await accounts_service.delete_account(session=session, user_id=owner)

    after = await _rows_of(owner)
    assert {table: count for table, count in after.items() if count} == {}
    assert files_support.stored_files(owner) == []
    assert not (get_settings().local_storage_dir / str(owner)).exists()
    assert seeded.access_tokens[0] in token_server.revoked
    assert neighbour.access_tokens[0] not in token_server.revoked
    # The neighbour keeps everything.
    assert await _rows_of(neighbour.user.user_id) == neighbours_rows
    async with db.session_scope() as session:
        waiting = (
            await session.execute(
                text(
                    "select count(*) from procrastinate_jobs where status = 'todo'"
                    " and args->>'owner_id' = :owner"
                ),
                {"owner": str(owner)},
            )
        ).scalar_one()
    assert waiting == 0
    await files_support.cancel_pending_jobs_of(neighbour.user.user_id)


async def _signed_in_user(token: str):
    from carmenta.auth import service as auth_service

    return await auth_service.current_user(settings=get_settings(), token=token)


async def test_a_built_in_account_is_deleted_only_with_the_phrase_and_its_password(files_client):
    account = await files_support.sign_up()
    user = await _signed_in_user(account.token)
    settings = get_settings()

    refusals = [
        ("delete", "correct horse battery"),
        (accounts_service.CONFIRMATION_PHRASE, None),
        (accounts_service.CONFIRMATION_PHRASE, "wrong horse battery"),
    ]
    for confirmation, password in refusals:
        problem = await accounts_service.delete_own_account(
            user=user, settings=settings, confirmation=confirmation, password=password
        )
        assert problem, (confirmation, password)
    assert await _signed_in_user(account.token) is not None

    problem = await accounts_service.delete_own_account(
        user=user,
        settings=settings,
        confirmation="  Delete my  account ",
        password="correct horse battery",
    )
    assert problem is None
    assert await _signed_in_user(account.token) is None
    assert files_support.stored_files(account.user_id) == []


class ClerkBackend:
    """Clerk's Backend API `DELETE /v1/users/{id}`, answering as Clerk documents it."""

    def __init__(self, secret: str, status: int = 200) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from threading import Thread

        backend = self
        self.deleted: list[str] = []
        self.status = status

        class Handler(BaseHTTPRequestHandler):
            def do_DELETE(self) -> None:  # noqa: N802
                user_id = self.path.removeprefix("/v1/users/")
                if self.headers.get("Authorization") != f"Bearer {secret}":
                    status, body = 401, {"errors": [{"code": "authentication_invalid"}]}
                elif backend.status != 200:
                    status, body = backend.status, {"errors": [{"code": "internal"}]}
                else:
                    backend.deleted.append(user_id)
                    status, body = 200, {"object": "user", "id": user_id, "deleted": True}
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


async def test_a_clerk_account_is_deleted_at_clerk_first(files_client, monkeypatch):
    from carmenta.auth.service import AuthenticatedUser
    from carmenta.users import service as users_service

    secret = "sk_test_" + uuid.uuid4().hex
    backend = ClerkBackend(secret)
    try:
        settings = get_settings().model_copy(
            update={"clerk_secret_key": secret, "clerk_api_url": backend.url}
        )
        async with db.session_scope() as session:
            row = await users_service.upsert_external_user(
                session=session, external_auth_id=f"user_{uuid.uuid4().hex}", auth_provider="clerk"
            )
        user = AuthenticatedUser(
            user_id=row.id,
            external_auth_id=row.external_auth_id,
            provider="clerk",
            email=None,
            display_name=None,
            is_admin=False,
            session_id="sess_1",
        )
        backend.status = 500
        confirm = accounts_service.CONFIRMATION_PHRASE
        problem = await accounts_service.delete_own_account(
            user=user, settings=settings, confirmation=confirm, password=None
        )
        assert problem and secret not in problem
        async with db.session_scope() as session:
            assert await users_service.get_user(session=session, user_id=row.id) is not None

        backend.status = 200
        assert (
            await accounts_service.delete_own_account(
                user=user, settings=settings, confirmation=confirm, password=None
            )
            is None
        )
        assert backend.deleted == [row.external_auth_id]
        async with db.session_scope() as session:
            assert await users_service.get_user(session=session, user_id=row.id) is None
            # A token still in flight cannot bring the account back.
            assert await users_service.was_deleted(
                session=session, external_auth_id=row.external_auth_id
            )
    finally:
        backend.close()
