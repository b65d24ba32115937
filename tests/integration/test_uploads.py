"""POST /files/upload against a real PostgreSQL and the real local store.

Every refusal is checked in both stores: no row, no object, no job, no scratch file.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import socket
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import httpx
import pytest

from carmenta import db
from carmenta.settings import PROJECT_ROOT, get_settings
from tests import file_samples as samples
from tests.integration import files_support
from tests.integration.files_support import (
    ORIGIN,
    assert_nothing_kept,
    configure,
    file_jobs,
    file_rows,
    scratch_files,
    sign_up,
    store,
    stored_files,
    upload,
    upload_headers,
)

files_client = files_support.files_client

DOCX, PPTX, XLSX = (
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
)

ACCEPTED = [
    ("photo.jpg", samples.jpeg, "image", "image/jpeg"),
    ("photo.png", samples.png, "image", "image/png"),
    ("photo.webp", samples.webp, "image", "image/webp"),
    ("animation.gif", samples.gif, "image", "image/gif"),
    ("iphone.heic", samples.heic, "image", "image/heic"),
    ("paper.pdf", samples.pdf, "pdf", "application/pdf"),
    ("notes.docx", samples.docx, "document", DOCX),
    ("slides.pptx", samples.pptx, "presentation", PPTX),
    ("budget.xlsx", samples.xlsx, "spreadsheet", XLSX),
    ("scores.csv", lambda: samples.CSV, "spreadsheet", "text/csv"),
    ("readme.md", lambda: samples.MARKDOWN, "text", "text/markdown"),
    ("notes.txt", lambda: samples.TEXT, "text", "text/plain"),
    ("song.mp3", samples.mp3, "audio", "audio/mpeg"),
    ("voice.m4a", samples.m4a, "audio", "audio/mp4"),
    ("raw.aac", samples.adts_aac, "audio", "audio/aac"),
    ("tone.wav", samples.wav, "audio", "audio/wav"),
    ("voice.ogg", samples.ogg_opus, "audio", "audio/ogg"),
    ("lossless.flac", samples.flac, "audio", "audio/flac"),
    ("memo.webm", samples.webm, "audio", "audio/webm"),
]


@pytest.mark.parametrize(("name", "make", "kind", "content_type"), ACCEPTED)
async def test_each_accepted_kind_is_stored_with_its_row_and_job(
    files_client, name, make, kind, content_type
):
    user = await sign_up()
    body = make()

    response = await upload(files_client, user, name, body)

    assert response.status_code == 201, response.text
    answer = response.json()
    assert answer["name"] == name
    assert (answer["kind"], answer["content_type"]) == (kind, content_type)
    assert (answer["size_bytes"], answer["status"]) == (len(body), "processing")
    assert isinstance(answer["job_id"], int)
    [row] = await file_rows(user.user_id)
    assert str(row["id"]) == answer["id"]
    assert row["storage_key"] == f"{user.user_id}/{answer['id']}/original"
    assert row["original_name"] == name and row["status"] == "processing"
    assert row["sha256"] == hashlib.sha256(body).hexdigest()
    assert row["size_bytes"] == len(body)
    assert await store().exists(key=row["storage_key"])
    assert store().object_path(row["storage_key"]).read_bytes() == body
    [job] = await file_jobs(user.user_id)
    assert job["args"] == {"file_id": answer["id"]} and job["status"] == "todo"
    assert scratch_files() == []


async def test_a_unicode_name_is_kept_as_metadata_only(files_client):
    user = await sign_up()
    name = "Résumé — 写真 (final).txt"
    response = await upload(files_client, user, name, samples.TEXT)
    assert response.status_code == 201
    [row] = await file_rows(user.user_id)
    assert row["original_name"] == name
    assert name not in row["storage_key"] and "Résumé" not in str(stored_files(user.user_id))


async def test_a_bearer_token_works_like_the_cookie(files_client):
    user = await sign_up()
    headers = upload_headers(None, "notes.txt", Authorization=f"Bearer {user.token}")
    response = await files_client.post("/files/upload", content=samples.TEXT, headers=headers)
    assert response.status_code == 201


async def test_a_body_without_content_length_is_streamed_and_counted(files_client):
    user = await sign_up()
    body = samples.wav(seconds=3)

    async def chunks():
        for start in range(0, len(body), 7000):
            yield body[start : start + 7000]

    response = await files_client.post(
        "/files/upload", content=chunks(), headers=upload_headers(user, "tone.wav")
    )
    assert response.status_code == 201
    assert response.json()["size_bytes"] == len(body)


# Refusals: each leaves nothing behind.


async def test_unauthenticated_uploads_are_refused(files_client):
    user = await sign_up()
    anonymous = await upload(files_client, None, "notes.txt", samples.TEXT)
    forged = await upload(
        files_client, None, "notes.txt", samples.TEXT, Cookie="carmenta_session=not.a.token"
    )
    for response in (anonymous, forged):
        assert response.status_code == 401
        assert response.json() == {"error": "Sign in to upload files."}
    await assert_nothing_kept(user)


async def test_cross_origin_uploads_are_refused(files_client):
    user = await sign_up()
    hostile = await upload(
        files_client, user, "notes.txt", samples.TEXT, Origin="https://evil.example"
    )
    headers = upload_headers(user, "notes.txt")
    del headers["Origin"]
    no_origin = await files_client.post("/files/upload", content=samples.TEXT, headers=headers)
    for response in (hostile, no_origin):
        assert response.status_code == 403
        assert "error" in response.json()
    await assert_nothing_kept(user)


@pytest.mark.parametrize(
    ("name", "body", "status", "message"),
    [
        ("cat.png", samples.EXE, 415, "This file looks like a program, not a PNG image."),
        ("cat.jpg", samples.ELF, 415, "This file looks like a program, not a JPEG image."),
        ("empty.txt", b"", 400, "This file is empty."),
        ("archive.zip", samples.plain_zip(), 415, "ZIP archives aren't accepted"),
        ("paper.pdf", samples.corrupt_pdf(), 422, "This PDF is damaged"),
        ("bomb.png", samples.png_claiming(100_000, 100_000), 422, "megapixels"),
        ("wide.png", samples.png_claiming(9_000, 9_000), 422, "9,000 × 9,000 pixels"),
        ("video.mp4", samples.m4a(brand=b"isom", handler=b"vide"), 415, "video"),
    ],
)
async def test_bad_content_is_refused_with_a_clear_error(files_client, name, body, status, message):
    user = await sign_up()
    response = await upload(files_client, user, name, body)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]
    await assert_nothing_kept(user)


async def test_an_empty_body_sent_in_chunks_is_refused_too(files_client):
    user = await sign_up()

    async def nothing():
        if False:  # pragma: no cover - an async generator that yields nothing
            yield b""

    response = await files_client.post(
        "/files/upload", content=nothing(), headers=upload_headers(user, "empty.txt")
    )
    assert response.status_code == 400
    assert response.json() == {"error": "This file is empty."}
    await assert_nothing_kept(user)


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (None, "The file name is missing"),
        ("", "The file has no name."),
        ("..%2Fetc%2Fpasswd", "cannot contain / or \\"),
        ("folder%5Cfile.txt", "cannot contain / or \\"),
        ("new%0Aline.txt", "control characters"),
        ("nul%00.txt", "control characters"),
        ("bad%FFutf8.txt", "not valid UTF-8"),
        ("x" * 300, "too long"),
    ],
)
async def test_bad_names_are_refused(files_client, header, message):
    user = await sign_up()
    headers = upload_headers(user, "placeholder")
    if header is None:
        del headers["X-File-Name"]
    else:
        headers["X-File-Name"] = header
    response = await files_client.post("/files/upload", content=samples.TEXT, headers=headers)
    assert response.status_code == 400
    assert message in response.json()["error"]
    await assert_nothing_kept(user)


def _noise_png(width: int, height: int) -> bytes:
    from PIL import Image

    image = Image.frombytes("RGB", (width, height), random.randbytes(width * height * 3))
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("env", "name", "make", "message"),
    [
        (
            {"MAX_IMAGE_MB": "1"},
            "noise.png",
            lambda: _noise_png(700, 700),
            "1 MB, the limit for images",
        ),
        (
            {"MAX_AUDIO_MB": "1"},
            "long.wav",
            lambda: samples.wav(seconds=70),
            "1 MB, the limit for audio",
        ),
        (
            {"MAX_DOCUMENT_MB": "1", "MAX_IMAGE_MB": "5", "MAX_AUDIO_MB": "5"},
            "big.csv",
            lambda: b"a,b\n" + b"1234567,89\n" * 110_000,
            "1 MB, the limit for documents",
        ),
        (
            {"MAX_DOCUMENT_MB": "1", "MAX_IMAGE_MB": "1", "MAX_AUDIO_MB": "1"},
            "big.txt",
            lambda: b"words " * 200_000,
            "larger than 1 MB, the most Carmenta accepts",
        ),
    ],
)
async def test_files_over_their_kind_limit_are_refused(
    files_client, monkeypatch, tmp_path, env, name, make, message
):
    configure(monkeypatch, tmp_path, **env)
    user = await sign_up()
    body = make()
    assert len(body) > 1024 * 1024

    # Announced with Content-Length, and streamed without it (the limit is met mid-body).
    announced = await upload(files_client, user, name, body)

    async def chunks():
        for start in range(0, len(body), 64 * 1024):
            yield body[start : start + 64 * 1024]

    streamed = await files_client.post(
        "/files/upload", content=chunks(), headers=upload_headers(user, name)
    )
    for response in (announced, streamed):
        assert response.status_code == 413, response.text
        assert message in response.json()["error"]
    await assert_nothing_kept(user)


async def test_the_storage_quota_is_enforced(files_client, monkeypatch, tmp_path):
    configure(monkeypatch, tmp_path, STORAGE_QUOTA_MB="1")
    user = await sign_up()
    body = b"line of text\n" * 50_000  # about 0.62 MB

    first = await upload(files_client, user, "one.txt", body)
    second = await upload(files_client, user, "two.txt", body)

    assert first.status_code == 201
    assert second.status_code == 413
    assert "storage quota of 1 MB" in second.json()["error"]
    assert "MB left" in second.json()["error"]
    rows = await file_rows(user.user_id)
    assert [row["original_name"] for row in rows] == ["one.txt"]
    assert stored_files(user.user_id) == sorted(
        [
            f"{user.user_id}/{rows[0]['id']}/original",
            f".meta/{user.user_id}/{rows[0]['id']}/original.json",
        ]
    )
    assert scratch_files() == []


async def test_concurrent_uploads_cannot_race_past_the_quota(files_client, monkeypatch, tmp_path):
    configure(monkeypatch, tmp_path, STORAGE_QUOTA_MB="1")
    user = await sign_up()
    body = b"line of text\n" * 50_000

    responses = await asyncio.gather(
        *(upload(files_client, user, f"copy-{index}.txt", body) for index in range(4))
    )

    statuses = sorted(response.status_code for response in responses)
    assert statuses == [201, 413, 413, 413]
    rows = await file_rows(user.user_id)
    assert len(rows) == 1
    assert len(stored_files(user.user_id)) == 2  # the one object and its metadata
    assert len(await file_jobs(user.user_id)) == 1
    assert scratch_files() == []


async def test_a_failing_database_write_removes_the_stored_object(files_client, monkeypatch):
    from carmenta.jobs import service as jobs_service

    user = await sign_up()

    async def broken_enqueue(**kwargs):
        raise RuntimeError("the queue is unavailable")

    monkeypatch.setattr(jobs_service, "enqueue", broken_enqueue)
    response = await upload(files_client, user, "notes.txt", samples.TEXT)

    assert response.status_code == 500
    assert response.json() == {"error": "The file could not be saved. Try again in a moment."}
    await assert_nothing_kept(user)


# A real server, a real socket, cut off halfway.


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_api_server(data_dir: Path, port: int, **env: str) -> subprocess.Popen:
    """The app's Starlette API under granian, as production serves it, on loopback."""
    environment = {
        key: value
        for key, value in os.environ.items()
        if key not in ("PUBLIC_URL", "SPEECH_API_URL", "SUPABASE_URL")
    }
    environment.update(
        {"DATA_DIR": str(data_dir), "PORT": "3000", "DATABASE_URL": get_settings().database_url}
    )
    environment.update(env)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "granian",
            "--interface",
            "asgi",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--log-level",
            "warning",
            "carmenta.api.routes:build_api",
        ],
        cwd=PROJECT_ROOT,
        env=environment,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            raise RuntimeError("the API server exited before it was ready")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            raise RuntimeError("the API server did not become ready")
        time.sleep(0.1)


def stop_api_server(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _request_head(user, name: str, length: int) -> bytes:
    headers = upload_headers(user, name)
    lines = [
        "POST /files/upload HTTP/1.1",
        "Host: 127.0.0.1",
        f"Content-Length: {length}",
        "Content-Type: application/octet-stream",
        *(f"{key}: {value}" for key, value in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def _wait_for(condition, *, what: str, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while True:
        value = await condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def test_an_upload_cut_off_halfway_leaves_nothing(database_url, monkeypatch, tmp_path):
    configure(monkeypatch, tmp_path)
    await db.dispose_engine()
    user = await sign_up()
    port = _free_port()
    limits = {"MAX_DOCUMENT_MB": "16", "MAX_IMAGE_MB": "16", "MAX_AUDIO_MB": "16"}
    server = await asyncio.to_thread(partial(start_api_server, tmp_path, port, **limits))
    try:
        total = 8 * 1024 * 1024
        body = samples.wav(seconds=total / 16000)[:total]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(_request_head(user, "interrupted.wav", total))
        sent = 0
        while sent < total // 2:
            writer.write(body[sent : sent + 64 * 1024])
            await writer.drain()
            sent += 64 * 1024

        async def partial_on_disk():
            files = [path for path in scratch_files() if path.is_file()]
            return files and files[0].stat().st_size > 0

        # The bytes so far sit in a scratch file on disk, not in memory...
        await _wait_for(partial_on_disk, what="the partial upload to reach the scratch file")

        # ...until the client goes away in the middle of the body.
        writer.transport.abort()

        async def scratch_emptied():
            return not [path for path in scratch_files() if path.is_file()]

        await _wait_for(scratch_emptied, what="the scratch file to be removed")
        await assert_nothing_kept(user)

        # The server is still healthy and the same user can upload right after.
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            response = await upload(client, user, "complete.wav", samples.wav())
        assert response.status_code == 201
        assert len(await file_rows(user.user_id)) == 1

        # A body refused before it is read is still read to its end, so the client
        # gets the answer rather than a reset connection.
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            refused = await upload(client, user, "huge.txt", b"words " * (4 * 1024 * 1024))
        assert refused.status_code == 413
        assert refused.json() == {
            "error": "This file is larger than 16 MB, the most Carmenta accepts."
        }
        assert len(await file_rows(user.user_id)) == 1
    finally:
        await asyncio.to_thread(stop_api_server, server)
        await files_support.cancel_pending_file_jobs()
        await db.dispose_engine()


async def test_an_origin_on_127_0_0_1_counts_as_our_own(files_client):
    user = await sign_up()
    response = await upload(
        files_client,
        user,
        "notes.txt",
        samples.TEXT,
        Origin=ORIGIN.replace("localhost", "127.0.0.1"),
    )
    assert response.status_code == 201


async def test_a_multipart_form_is_refused(files_client):
    user = await sign_up()
    response = await files_client.post(
        "/files/upload",
        files={"file": ("notes.txt", samples.TEXT, "text/plain")},
        headers=upload_headers(user, "notes.txt"),
    )
    assert response.status_code == 400
    assert "not as a form" in response.json()["error"]
    await assert_nothing_kept(user)


async def test_clerk_sessions_upload_by_cookie_or_bearer(files_client, monkeypatch, tmp_path):
    import jwt
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    origin, issuer = "https://carmenta.example.com", "https://clerk.carmenta.test"
    configure(
        monkeypatch,
        tmp_path,
        PUBLIC_URL=origin,
        CLERK_PUBLISHABLE_KEY="pk_test_Y2xlcmsuY2FybWVudGEudGVzdCQ",
        CLERK_SECRET_KEY="sk_test_not_used_offline",
        CLERK_JWT_KEY=public_pem.decode(),
        CLERK_ISSUER=issuer,
    )
    subject = f"user_{os.urandom(6).hex()}"
    now = int(time.time())
    token = jwt.encode(
        {
            "sub": subject,
            "sid": "sess_upload",
            "iss": issuer,
            "azp": origin,
            "iat": now,
            "nbf": now - 5,
            "exp": now + 60,
            "v": 2,
        },
        key,
        algorithm="RS256",
        headers={"kid": "ins_clerk"},
    )
    base = {"Origin": origin, "X-File-Name": "notes.txt"}

    by_cookie = await files_client.post(
        "/files/upload", content=samples.TEXT, headers={**base, "Cookie": f"__session={token}"}
    )
    by_bearer = await files_client.post(
        "/files/upload", content=samples.TEXT, headers={**base, "Authorization": f"Bearer {token}"}
    )
    # The built-in cookie name means nothing in Clerk mode.
    builtin_cookie = await files_client.post(
        "/files/upload",
        content=samples.TEXT,
        headers={**base, "Cookie": f"__Host-carmenta_session={token}"},
    )

    assert (by_cookie.status_code, by_bearer.status_code) == (201, 201)
    assert builtin_cookie.status_code == 401
