"""Only the owner can see, sign or delete a file; deletion takes every stored byte with it."""

from __future__ import annotations

import dataclasses
import uuid
from urllib.parse import parse_qs, urlsplit

import pytest

from carmenta import db
from carmenta.files import service as files_service
from carmenta.files.processing import process_file
from carmenta.files.storage.base import Transform
from carmenta.settings import get_settings
from carmenta.users import service as users_service
from tests import file_samples as samples
from tests.integration import files_support
from tests.integration.files_support import file_rows, sign_up, store, stored_files

files_client = files_support.files_client


async def _upload(client, user, name: str, body: bytes) -> uuid.UUID:
    response = await client.post(
        "/files/upload", content=body, headers=files_support.upload_headers(user, name)
    )
    assert response.status_code == 201, response.text
    return uuid.UUID(response.json()["id"])


async def test_the_owner_lists_gets_and_reads_their_files(files_client):
    owner = await sign_up()
    older = await _upload(files_client, owner, "older.txt", b"first file\n")
    newer = await _upload(files_client, owner, "newer.pdf", samples.pdf(("Owned text",)))
    await process_file(file_id=newer, settings=get_settings())

    async with db.session_scope() as session:
        listed = await files_service.list_files(session=session, owner_id=owner.user_id)
        got = await files_service.get_file(session=session, owner_id=owner.user_id, file_id=newer)
        text = await files_service.extracted_text(
            session=session, owner_id=owner.user_id, file_id=newer
        )
        used = await files_service.storage_used(session=session, owner_id=owner.user_id)

    assert [view.id for view in listed] == [newer, older]  # newest first
    assert got == listed[0]
    assert (got.name, got.kind, got.status, got.error) == ("newer.pdf", "pdf", "ready", None)
    assert got.metadata["page_count"] == 1
    assert "Owned text" in text
    assert used == sum(view.size_bytes for view in listed)


async def test_another_user_cannot_list_get_sign_or_delete_a_file(files_client):
    owner, intruder = await sign_up(), await sign_up()
    file_id = await _upload(files_client, owner, "private.png", samples.png())
    settings = get_settings()

    async with db.session_scope() as session:
        view = await files_service.get_file(
            session=session, owner_id=owner.user_id, file_id=file_id
        )
        assert await files_service.list_files(session=session, owner_id=intruder.user_id) == []
        assert (
            await files_service.get_file(
                session=session, owner_id=intruder.user_id, file_id=file_id
            )
            is None
        )
        assert (
            await files_service.extracted_text(
                session=session, owner_id=intruder.user_id, file_id=file_id
            )
            is None
        )
        assert await files_service.storage_used(session=session, owner_id=intruder.user_id) == 0
    assert view is not None
    # Even holding the owner's FileView, the intruder gets no links...
    assert (
        await files_service.signed_urls(owner_id=intruder.user_id, file=view, settings=settings)
        is None
    )
    # ...and a forged view claiming to be theirs only ever points into their own prefix.
    forged = dataclasses.replace(view, owner_id=intruder.user_id)
    urls = await files_service.signed_urls(
        owner_id=intruder.user_id, file=forged, settings=settings
    )
    assert urls is not None and str(intruder.user_id) in urls.download
    assert str(owner.user_id) not in urls.download

    async with db.session_scope() as session:
        assert not await files_service.delete_file(
            session=session, owner_id=intruder.user_id, file_id=file_id
        )
    assert len(await file_rows(owner.user_id)) == 1
    assert await store().exists(key=f"{owner.user_id}/{file_id}/original")


async def test_guessed_ids_find_nothing(files_client):
    owner = await sign_up()
    await _upload(files_client, owner, "notes.txt", samples.TEXT)
    async with db.session_scope() as session:
        for _ in range(20):
            guess = uuid.uuid4()
            assert (
                await files_service.get_file(session=session, owner_id=owner.user_id, file_id=guess)
                is None
            )
            assert (
                await files_service.extracted_text(
                    session=session, owner_id=owner.user_id, file_id=guess
                )
                is None
            )
            assert not await files_service.delete_file(
                session=session, owner_id=owner.user_id, file_id=guess
            )
    assert len(await file_rows(owner.user_id)) == 1


async def test_signed_urls_cover_download_preview_and_thumbnail(files_client):
    owner = await sign_up()
    settings = get_settings()
    image = await _upload(files_client, owner, "Holiday photo.jpg", samples.jpeg(size=(800, 600)))
    pdf = await _upload(files_client, owner, "paper.pdf", samples.pdf())
    text = await _upload(files_client, owner, "notes.txt", samples.TEXT)
    heic = await _upload(files_client, owner, "iphone.heic", samples.heic(size=(300, 200)))
    for file_id in (pdf, heic):
        await process_file(file_id=file_id, settings=settings)

    async with db.session_scope() as session:
        views = {
            view.id: view
            for view in await files_service.list_files(session=session, owner_id=owner.user_id)
        }
    urls = {
        file_id: await files_service.signed_urls(
            owner_id=owner.user_id, file=views[file_id], settings=settings
        )
        for file_id in views
    }

    prefix = f"/files/object/{owner.user_id}"
    image_urls = urls[image]
    assert image_urls.download.startswith(f"{prefix}/{image}/original?")
    assert parse_qs(urlsplit(image_urls.download).query)["download"] == ["Holiday photo.jpg"]
    assert "download" not in parse_qs(urlsplit(image_urls.preview).query)
    thumbnail_query = parse_qs(urlsplit(image_urls.thumbnail).query)
    assert thumbnail_query["width"] == ["320"] and thumbnail_query["format"] == ["webp"]
    assert urlsplit(image_urls.thumbnail).path == f"{prefix}/{image}/original"

    assert urlsplit(urls[pdf].preview).path == f"{prefix}/{pdf}/original"
    assert urlsplit(urls[pdf].thumbnail).path == f"{prefix}/{pdf}/thumbnail.webp"

    assert urls[text].preview is None and urls[text].thumbnail is None
    assert urlsplit(urls[heic].preview).path == f"{prefix}/{heic}/preview.webp"
    assert urlsplit(urls[heic].thumbnail).path == f"{prefix}/{heic}/thumbnail.webp"

    # The links work, through the app's own object route.
    for link in (image_urls.download, image_urls.thumbnail, urls[pdf].thumbnail):
        response = await files_client.get(link)
        assert response.status_code == 200, (link, response.text)


async def test_deleting_removes_the_row_the_original_and_every_variant(files_client):
    owner = await sign_up()
    keep = await _upload(files_client, owner, "keep.png", samples.png())
    file_id = await _upload(files_client, owner, "photo.jpg", samples.jpeg(size=(640, 480)))
    await process_file(file_id=file_id, settings=get_settings())
    # A transformed variant cached by the store, as a thumbnail request leaves one.
    await store().variant(
        key=f"{owner.user_id}/{file_id}/original", transform=Transform(width=100, format="webp")
    )
    before = stored_files(owner.user_id)
    assert any(path.startswith(".variants/") for path in before)
    assert any(path.endswith(f"{file_id}/thumbnail.webp") for path in before)

    async with db.session_scope() as session:
        assert await files_service.delete_file(
            session=session, owner_id=owner.user_id, file_id=file_id
        )

    assert [row["id"] for row in await file_rows(owner.user_id)] == [keep]
    assert [path for path in stored_files(owner.user_id) if str(file_id) in path] == []
    assert await store().exists(key=f"{owner.user_id}/{keep}/original")
    async with db.session_scope() as session:
        assert not await files_service.delete_file(
            session=session, owner_id=owner.user_id, file_id=file_id
        )


async def test_deleting_an_account_removes_its_whole_storage_prefix(files_client):
    owner, neighbour = await sign_up(), await sign_up()
    for name, body in (("a.png", samples.png()), ("b.pdf", samples.pdf()), ("c.txt", b"c\n")):
        file_id = await _upload(files_client, owner, name, body)
        await process_file(file_id=file_id, settings=get_settings())
    neighbours_file = await _upload(files_client, neighbour, "n.txt", b"neighbour\n")
    assert len(stored_files(owner.user_id)) >= 6

    async with db.session_scope() as session:
        assert await users_service.delete_user_account(session=session, user_id=owner.user_id)

    assert await file_rows(owner.user_id) == []
    assert stored_files(owner.user_id) == []
    assert not (get_settings().local_storage_dir / str(owner.user_id)).exists()
    assert await store().exists(key=f"{neighbour.user_id}/{neighbours_file}/original")


async def test_a_failed_storage_cleanup_keeps_the_account(files_client, monkeypatch):
    owner = await sign_up()
    await _upload(files_client, owner, "a.txt", b"a\n")

    async def broken_delete_prefix(*, prefix: str) -> None:
        raise OSError("the disk is gone")

    with monkeypatch.context() as patched:
        patched.setattr(store(), "delete_prefix", broken_delete_prefix)
        with pytest.raises(OSError, match="the disk is gone"):
            async with db.session_scope() as session:
                await users_service.delete_user_account(session=session, user_id=owner.user_id)

    async with db.session_scope() as session:
        assert await users_service.get_user(session=session, user_id=owner.user_id) is not None
    assert len(await file_rows(owner.user_id)) == 1
