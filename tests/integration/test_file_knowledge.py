"""Files in the knowledge base: added as documents, kept up to date when replaced,
removed with the file; and replacing a file's content without losing it on failure.

Files go in through the real upload route and are read by the real processing run;
the ingest job's work (`file_documents.ingest_file`) runs against the same database.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from urllib.parse import quote

import pytest
from sqlalchemy import text

from carmenta import db
from carmenta.api import uploads
from carmenta.api.routes import build_api
from carmenta.files import processing
from carmenta.files import service as files_service
from carmenta.files.processing import process_file
from carmenta.jobs.service import JobStatus, get_job
from carmenta.jobs.worker import run_worker
from carmenta.knowledge import file_documents
from carmenta.knowledge import service as documents
from carmenta.knowledge.links import backlinks, outgoing_links
from carmenta.settings import get_settings, reset_settings_cache
from tests import file_samples as samples
from tests.integration import files_support
from tests.integration.files_support import (
    ORIGIN,
    configure,
    file_rows,
    sign_up,
    store,
    stored_files,
    upload_headers,
)

files_client = files_support.files_client


@pytest.fixture
async def client(files_client):
    yield files_client
    # Ingest jobs queued here and not run must not reach another test's worker.
    async with db.session_scope() as session:
        await session.execute(
            text(
                "update procrastinate_jobs set status = 'cancelled'"
                " where task_name = 'knowledge.ingest_file' and status = 'todo'"
            )
        )


async def _upload(client, user, name: str, body: bytes) -> uuid.UUID:
    response = await client.post("/files/upload", content=body, headers=upload_headers(user, name))
    assert response.status_code == 201, response.text
    return uuid.UUID(response.json()["id"])


async def _replace(client, user, file_id, name: str, body: bytes, **headers: str):
    return await client.post(
        f"/files/{file_id}/replace", content=body, headers=upload_headers(user, name, **headers)
    )


async def _process(file_id) -> dict:
    return await process_file(file_id=file_id, settings=get_settings())


async def _add(user, file_id):
    async with db.session_scope() as session:
        return await file_documents.add_file_to_knowledge(
            session=session, owner_id=user.user_id, file_id=file_id
        )


async def _ingest(user, file_id, progress=None) -> dict:
    async with db.session_scope() as session:
        return await file_documents.ingest_file(
            session=session, owner_id=user.user_id, file_id=file_id, progress=progress
        )


async def _state(user, file_id) -> file_documents.FileKnowledgeView | None:
    async with db.session_scope() as session:
        states = await file_documents.knowledge_states(session=session, owner_id=user.user_id)
    return states.get(file_id)


async def _documents(user, file_id) -> list[documents.DocumentView]:
    async with db.session_scope() as session:
        return await file_documents.file_documents(
            session=session, owner_id=user.user_id, file_id=file_id
        )


async def _chunks(document_id) -> list[str]:
    async with db.session_scope() as session:
        result = await session.execute(
            text("select content from document_chunks where document_id = :id order by ordinal"),
            {"id": document_id},
        )
        return [row[0] for row in result.all()]


def _objects(user) -> list[str]:
    """The stored objects themselves, without the store's metadata and variants."""
    return [name for name in stored_files(user.user_id) if not name.startswith(".")]


async def _row(user, file_id) -> dict:
    [row] = [row for row in await file_rows(user.user_id) if row["id"] == file_id]
    return row


async def _in_knowledge(client, user, name: str, body: bytes):
    """Upload, process, add and ingest: a file whose text is in the knowledge base."""
    file_id = await _upload(client, user, name, body)
    assert await _process(file_id) == {"status": "ready"}
    await _add(user, file_id)
    outcome = await _ingest(user, file_id)
    assert outcome["status"] == "ready", outcome
    [document] = await _documents(user, file_id)
    return file_id, document


TEXT_NOTES = (
    b"Aardvark feeding schedule\n\n"
    b"The aardvark eats termites at dusk. Keep the enclosure warm.\n\n"
    b"Call the vet on Thursdays about the aardvark's teeth.\n"
)

KINDS = [
    ("notes.txt", lambda: TEXT_NOTES, "The aardvark eats termites at dusk."),
    ("invoice.pdf", lambda: samples.pdf(("Invoice for aardvark food",), pages=2), "aardvark food"),
    ("Quarterly notes.docx", samples.docx, "The first paragraph mentions aardvarks."),
]


@pytest.mark.parametrize(("name", "make", "expected"), KINDS)
async def test_a_file_becomes_one_document_with_its_text_and_chunks(client, name, make, expected):
    user = await sign_up()
    file_id = await _upload(client, user, name, make())
    assert await _process(file_id) == {"status": "ready"}

    view = await _add(user, file_id)
    assert view.state == "adding"
    reports: list[tuple[float, str]] = []

    async def progress(percent: float, message: str) -> None:
        reports.append((percent, message))

    outcome = await _ingest(user, file_id, progress)

    [document] = await _documents(user, file_id)
    assert outcome == {"status": "ready", "document_id": str(document.id), "parts": 1}
    row = await _row(user, file_id)
    assert document.title == name
    assert document.path == f"knowledge.files.{documents.slugify_label(name)}"
    assert document.source == "file"
    assert document.content == row["extracted_text"].strip() and expected in document.content
    chunks = await _chunks(document.id)
    assert chunks and any(expected in chunk for chunk in chunks)
    # Progress rises while the job works.
    percents = [percent for percent, _ in reports]
    assert percents == sorted(percents) and percents[0] > 0
    state = await _state(user, file_id)
    assert (state.state, state.document_id, state.error) == ("ready", document.id, "")


async def test_the_worker_runs_the_ingest_job_and_reports_its_progress(client):
    user = await sign_up()
    file_id = await _upload(client, user, "notes.txt", TEXT_NOTES)
    assert await _process(file_id) == {"status": "ready"}
    view = await _add(user, file_id)
    async with db.session_scope() as session:
        job_id = (
            await session.execute(
                text("select job_id from file_knowledge where file_id = :id"), {"id": file_id}
            )
        ).scalar_one()

    worker = asyncio.create_task(run_worker(concurrency=1, queues=["default"]))
    try:
        deadline = time.monotonic() + 60
        job = None
        while job is None or not job.finished:
            assert time.monotonic() < deadline, f"the ingest job did not finish: {job}"
            assert not worker.done(), worker
            job = await get_job(owner_id=user.user_id, job_id=job_id)
            await asyncio.sleep(0.05)
    finally:
        worker.cancel()
        await asyncio.wait([worker], timeout=30)

    [document] = await _documents(user, file_id)
    assert view.state == "adding"
    assert job.status is JobStatus.succeeded
    assert job.percent == 100 and job.message == "Saved"
    assert job.result == {"status": "ready", "document_id": str(document.id), "parts": 1}
    assert (await _state(user, file_id)).state == "ready"


async def test_a_file_added_while_processing_is_ingested_when_processing_ends(client):
    user = await sign_up()
    file_id = await _upload(client, user, "later.txt", TEXT_NOTES)

    view = await _add(user, file_id)
    assert view.state == "waiting"
    assert await _documents(user, file_id) == []

    # The end of processing queues the ingest in the same transaction.
    assert await _process(file_id) == {"status": "ready"}
    state = await _state(user, file_id)
    assert state.state == "adding"
    async with db.session_scope() as session:
        queued = (
            await session.execute(
                text(
                    "select j.args from file_knowledge k join procrastinate_jobs j"
                    " on j.id = k.job_id where k.file_id = :id and j.status = 'todo'"
                ),
                {"id": file_id},
            )
        ).scalar_one()
    assert queued == {"file_id": str(file_id), "owner_id": str(user.user_id)}

    assert (await _ingest(user, file_id))["status"] == "ready"
    [document] = await _documents(user, file_id)
    assert "termites" in document.content


async def test_a_failed_file_and_a_file_without_text_are_refused_with_a_reason(client):
    user = await sign_up()
    picture = await _upload(client, user, "photo.png", samples.png(size=(64, 64)))
    assert await _process(picture) == {"status": "ready"}
    with pytest.raises(file_documents.CannotAddFile, match="photo.png has no text to add"):
        await _add(user, picture)

    broken = await _upload(client, user, "gone.txt", TEXT_NOTES)
    # Its stored object vanished: processing marks it failed with a reason.
    await store().delete_prefix(prefix=files_service.key_of(user.user_id, broken))
    assert await _process(broken) == {"status": "failed"}
    with pytest.raises(file_documents.CannotAddFile, match="gone.txt could not be read"):
        await _add(user, broken)

    assert await _state(user, picture) is None and await _state(user, broken) is None
    async with db.session_scope() as session:
        count = (
            await session.execute(
                text("select count(*) from file_knowledge where owner_id = :o"),
                {"o": user.user_id},
            )
        ).scalar_one()
    assert count == 0


async def test_a_file_that_fails_processing_after_being_added_shows_why(client):
    user = await sign_up()
    file_id = await _upload(client, user, "gone.txt", TEXT_NOTES)
    await _add(user, file_id)
    await store().delete_prefix(prefix=files_service.key_of(user.user_id, file_id))

    assert await _process(file_id) == {"status": "failed"}

    state = await _state(user, file_id)
    assert state.state == "failed"
    assert "gone.txt could not be read" in state.error and "missing from storage" in state.error


async def test_text_over_the_document_limit_is_split_into_numbered_parts(client):
    user = await sign_up()
    paragraph = ("The aardvark digs burrows with strong claws. " * 20).strip()
    body = "\n\n".join(f"{number}. {paragraph}" for number in range(1700)).encode()
    assert documents.MAX_CONTENT_BYTES < len(body) < 2 * documents.MAX_CONTENT_BYTES
    file_id = await _upload(client, user, "field guide.txt", body)
    assert await _process(file_id) == {"status": "ready"}
    await _add(user, file_id)

    outcome = await _ingest(user, file_id)

    first, second = await _documents(user, file_id)
    assert outcome["parts"] == 2 and outcome["document_id"] == str(first.id)
    assert (first.title, second.title) == ("field guide.txt", "field guide.txt (part 2)")
    assert second.path.startswith(first.path + ".")
    for part in (first, second):
        assert len(part.content.encode()) <= documents.MAX_CONTENT_BYTES
    # Cut between paragraphs, nothing lost.
    assert first.content.startswith("0. ") and second.content.endswith(paragraph)
    assert (first.content + "\n\n" + second.content) == body.decode()


async def test_replacing_a_file_keeps_its_document_id_path_and_links(client):
    user = await sign_up()
    file_id, document = await _in_knowledge(client, user, "notes.txt", TEXT_NOTES)
    async with db.session_scope() as session:
        linking = await documents.create_document(
            session=session,
            owner_id=user.user_id,
            parent_path=None,
            title="Zoo index",
            content="See [[notes.txt]] for the feeding schedule.",
        )
    old_objects = stored_files(user.user_id)

    response = await _replace(client, user, file_id, "notes.txt", b"Zebras graze at dawn.\n")

    assert response.status_code == 200, response.text
    assert response.json()["revision"] == 1
    row = await _row(user, file_id)
    assert (row["status"], row["revision"], row["extracted_text"]) == ("processing", 1, None)
    # The new content sits under the new revision's keys; the old object is gone.
    assert _objects(user) == [f"{user.user_id}/{file_id}/r1/original"]
    assert old_objects != stored_files(user.user_id)
    assert (await _state(user, file_id)).state == "waiting"

    assert await _process(file_id) == {"status": "ready"}
    assert (await _state(user, file_id)).state == "adding"
    assert (await _ingest(user, file_id))["status"] == "ready"

    [updated] = await _documents(user, file_id)
    assert (updated.id, updated.path) == (document.id, document.path)
    assert updated.content == "Zebras graze at dawn."
    assert any("Zebras" in chunk for chunk in await _chunks(updated.id))
    async with db.session_scope() as session:
        assert [
            link.document_id
            for link in await backlinks(
                session=session, owner_id=user.user_id, document_id=document.id
            )
        ] == [linking.id]
    state = await _state(user, file_id)
    assert (state.state, state.document_id) == ("ready", document.id)


async def test_a_replaced_image_gets_links_and_thumbnails_of_its_own(client):
    user = await sign_up()
    file_id = await _upload(client, user, "photo.png", samples.png(size=(300, 200)))
    assert await _process(file_id) == {"status": "ready"}
    settings = get_settings()

    async def urls():
        async with db.session_scope() as session:
            view = await files_service.get_file(
                session=session, owner_id=user.user_id, file_id=file_id
            )
        return await files_service.signed_urls(owner_id=user.user_id, file=view, settings=settings)

    before = await urls()
    # A rendered thumbnail is cached beside the original.
    rendered = await client.get(before.thumbnail)
    assert rendered.status_code == 200

    response = await _replace(client, user, file_id, "photo.jpg", samples.jpeg(size=(64, 48)))
    assert response.status_code == 200, response.text
    assert await _process(file_id) == {"status": "ready"}

    after = await urls()
    # Different keys: neither a browser cache nor the store's variant cache can
    # answer with the previous picture.
    assert {after.download, after.preview, after.thumbnail}.isdisjoint(
        {before.download, before.preview, before.thumbnail}
    )
    assert (await client.get(before.thumbnail)).status_code == 404
    fresh = await client.get(after.thumbnail)
    assert fresh.status_code == 200 and fresh.content != rendered.content
    leftovers = [name for name in stored_files(user.user_id) if "/r1/" not in name]
    assert leftovers == []


def _snapshot_keys(row: dict) -> dict:
    keep = ("revision", "storage_key", "original_name", "content_type", "size_bytes", "sha256")
    return {key: row[key] for key in (*keep, "status", "extracted_text", "updated_at")}


async def _asgi_post_then_disconnect(path: str, headers: dict[str, str], chunks: list[bytes]):
    """A client that sends part of the body and then goes away (http.disconnect)."""
    app = build_api()
    messages = [{"type": "http.request", "body": chunk, "more_body": True} for chunk in chunks] + [
        {"type": "http.disconnect"}
    ]
    sent: list[dict] = []

    async def receive():
        if messages:
            return messages.pop(0)
        await asyncio.sleep(3600)

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "server": ("localhost", 3000),
        "client": ("127.0.0.1", 50000),
        "headers": [(key.lower().encode(), value.encode()) for key, value in headers.items()],
    }
    await app(scope, receive, send)
    return next(message["status"] for message in sent if message["type"] == "http.response.start")


FAILED_REPLACEMENTS = ["disguised", "oversize", "over quota", "cancelled", "database"]


@pytest.mark.parametrize("how", FAILED_REPLACEMENTS)
async def test_a_failed_replacement_leaves_the_file_and_its_document_as_they_were(
    client, monkeypatch, tmp_path, how
):
    if how == "oversize":
        configure(monkeypatch, tmp_path, MAX_DOCUMENT_MB="1")
    if how == "over quota":
        configure(monkeypatch, tmp_path, STORAGE_QUOTA_MB="1")
    user = await sign_up()
    file_id, document = await _in_knowledge(client, user, "notes.txt", TEXT_NOTES)
    before_row = _snapshot_keys(await _row(user, file_id))
    before_objects = stored_files(user.user_id)
    original_bytes = store().object_path(files_service.key_of(user.user_id, file_id)).read_bytes()

    if how == "disguised":
        response = await _replace(client, user, file_id, "notes.txt", b"MZ\x90\x00" + bytes(5000))
        assert response.status_code == 415
        assert "program" in response.json()["error"]
    elif how == "oversize":
        response = await _replace(client, user, file_id, "big.txt", b"words " * 200_000)
        assert response.status_code == 413
        assert "1 MB" in response.json()["error"]
    elif how == "over quota":
        # The quota is counted without the content being replaced: 0.9 MB fits...
        fits = b"a" * 900_000
        assert (await _replace(client, user, file_id, "fits.txt", fits)).status_code == 200
        assert await _process(file_id) == {"status": "ready"}
        assert (await _ingest(user, file_id))["status"] == "ready"
        [document] = await _documents(user, file_id)
        before_row = _snapshot_keys(await _row(user, file_id))
        before_objects = stored_files(user.user_id)
        original_bytes = fits
        # ...but 1.1 MB does not, however much the old content frees.
        response = await _replace(client, user, file_id, "big.txt", b"b" * 1_100_000)
        assert response.status_code == 413
        assert "quota" in response.json()["error"]
    elif how == "cancelled":
        headers = upload_headers(user, "notes.txt", **{"Content-Length": str(200_000)})
        status = await _asgi_post_then_disconnect(
            f"/files/{file_id}/replace", headers, [b"half of the new text " * 4000]
        )
        assert status == 400
    else:

        async def database_down(**_):
            raise RuntimeError("the database went away")

        monkeypatch.setattr(uploads.jobs_service, "enqueue", database_down)
        response = await _replace(client, user, file_id, "notes.txt", b"Zebras graze.\n")
        assert response.status_code == 500

    assert _snapshot_keys(await _row(user, file_id)) == before_row
    assert stored_files(user.user_id) == before_objects
    key = files_service.key_of(user.user_id, file_id, revision=before_row["revision"])
    assert store().object_path(key).read_bytes() == original_bytes
    [unchanged] = await _documents(user, file_id)
    assert unchanged == document
    assert (await _state(user, file_id)).state == "ready"
    assert [path for path in files_support.scratch_files() if path.is_file()] == []
    reset_settings_cache()


async def test_a_processing_run_of_replaced_content_records_nothing(client, monkeypatch):
    user = await sign_up()
    file_id, document = await _in_knowledge(client, user, "notes.txt", TEXT_NOTES)
    real_extract = processing.extract
    replaced = asyncio.Event()

    def extract_then_replace(*args, **kwargs):
        # While this run reads the old content, the owner replaces it.
        result = real_extract(*args, **kwargs)
        asyncio.run_coroutine_threadsafe(replace(), loop).result(timeout=30)
        return result

    async def replace():
        response = await _replace(client, user, file_id, "notes.txt", b"Zebras graze.\n")
        assert response.status_code == 200, response.text
        replaced.set()

    loop = asyncio.get_running_loop()
    monkeypatch.setattr(processing, "extract", extract_then_replace)
    outcome = await _process(file_id)
    monkeypatch.setattr(processing, "extract", real_extract)

    assert replaced.is_set() and outcome == {"status": "superseded"}
    row = await _row(user, file_id)
    assert (row["status"], row["revision"], row["extracted_text"]) == ("processing", 1, None)
    assert _objects(user) == [f"{user.user_id}/{file_id}/r1/original"]
    # The document still holds the old text until the new content is read.
    [unchanged] = await _documents(user, file_id)
    assert unchanged.content == document.content

    assert await _process(file_id) == {"status": "ready"}
    assert (await _ingest(user, file_id))["status"] == "ready"
    [updated] = await _documents(user, file_id)
    assert updated.id == document.id and updated.content == "Zebras graze."


async def test_deleting_a_file_removes_its_documents_chunks_and_objects(client):
    user = await sign_up()
    file_id, document = await _in_knowledge(client, user, "notes.txt", TEXT_NOTES)
    async with db.session_scope() as session:
        linking = await documents.create_document(
            session=session,
            owner_id=user.user_id,
            parent_path=None,
            title="Zoo index",
            content="See [[notes.txt]].",
        )
        # The file's document links out too.
        await documents.update_document(
            session=session,
            owner_id=user.user_id,
            document_id=document.id,
            content=document.content + "\n\nSee also [[Zoo index]].",
        )
    assert await _chunks(document.id)

    async with db.session_scope() as session:
        assert await files_service.delete_file(
            session=session, owner_id=user.user_id, file_id=file_id
        )

    assert await _documents(user, file_id) == []
    assert await _chunks(document.id) == []
    assert stored_files(user.user_id) == []
    assert await _state(user, file_id) is None
    async with db.session_scope() as session:
        leftovers = (
            await session.execute(
                text(
                    "select (select count(*) from document_links where source_document_id = :d)"
                    " + (select count(*) from file_knowledge where file_id = :f)"
                ),
                {"d": document.id, "f": file_id},
            )
        ).scalar_one()
        # The link pointing at it is kept, unresolved, and reads without error.
        [link] = await outgoing_links(
            session=session, owner_id=user.user_id, document_id=linking.id
        )
    assert leftovers == 0
    assert (link.document_id, link.path, link.link_text) == (None, None, "notes.txt")


async def test_removing_from_knowledge_keeps_the_file(client):
    user = await sign_up()
    file_id, document = await _in_knowledge(client, user, "notes.txt", TEXT_NOTES)

    async with db.session_scope() as session:
        assert await file_documents.remove_file_from_knowledge(
            session=session, owner_id=user.user_id, file_id=file_id
        )

    assert await _documents(user, file_id) == [] and await _chunks(document.id) == []
    assert await _state(user, file_id) is None
    assert (await _row(user, file_id))["status"] == "ready"
    assert _objects(user) == [f"{user.user_id}/{file_id}/original"]
    # A later processing run (say a retried job) does not bring it back.
    assert await _process(file_id) == {"status": "ready"}
    assert await _state(user, file_id) is None
    # An ingest job already queued finds the wish gone and writes nothing.
    assert await _ingest(user, file_id) == {"status": "removed"}
    assert await _documents(user, file_id) == []


async def test_another_user_cannot_add_replace_or_remove_a_file(client):
    owner = await sign_up()
    intruder = await sign_up()
    file_id, document = await _in_knowledge(client, owner, "notes.txt", TEXT_NOTES)
    before = _snapshot_keys(await _row(owner, file_id))

    assert await _add(intruder, file_id) is None
    async with db.session_scope() as session:
        assert not await file_documents.remove_file_from_knowledge(
            session=session, owner_id=intruder.user_id, file_id=file_id
        )
        assert (
            await file_documents.knowledge_states(session=session, owner_id=intruder.user_id) == {}
        )
    assert await _ingest(intruder, file_id) == {"status": "removed"}
    response = await _replace(client, intruder, file_id, "mine.txt", b"Overwritten!\n")
    assert response.status_code == 404
    assert response.json() == {"error": "That file no longer exists."}
    # A random id looks exactly the same.
    response = await _replace(client, intruder, uuid.uuid4(), "mine.txt", b"Overwritten!\n")
    assert (response.status_code, response.json()) == (
        404,
        {"error": "That file no longer exists."},
    )

    assert _snapshot_keys(await _row(owner, file_id)) == before
    [unchanged] = await _documents(owner, file_id)
    assert unchanged == document
    assert stored_files(intruder.user_id) == []


async def test_a_replacement_needs_a_signed_in_owner_from_carmentas_pages(client):
    user = await sign_up()
    file_id = await _upload(client, user, "notes.txt", TEXT_NOTES)
    anonymous = await client.post(
        f"/files/{file_id}/replace",
        content=b"x",
        headers={"Origin": ORIGIN, "X-File-Name": quote("a.txt")},
    )
    assert anonymous.status_code == 401
    elsewhere = await _replace(client, user, file_id, "a.txt", b"x", Origin="https://evil.test")
    assert elsewhere.status_code == 403
    assert (await _row(user, file_id))["revision"] == 0
