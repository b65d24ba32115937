"""The processing task for every kind: metadata, text and thumbnails, failures and retries.

Files go in through the upload route, so each test starts from what a real upload
leaves: a row, an original in the local store and a queued job.
"""

from __future__ import annotations

import asyncio
import io
import json
import threading
import time
import uuid
import zipfile
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

from carmenta import db
from carmenta.files import processing
from carmenta.files import service as files_service
from carmenta.files.processing import MAX_TEXT_BYTES, TransientProcessingError, process_file
from carmenta.jobs.service import JobStatus, get_job
from carmenta.jobs.worker import run_worker
from carmenta.settings import get_settings
from tests import file_samples as samples
from tests.integration import files_support
from tests.integration.files_support import (
    configure,
    file_rows,
    scratch_files,
    sign_up,
    store,
    stored_files,
)

files_client = files_support.files_client


async def _uploaded(client, name: str, body: bytes):
    user = await sign_up()
    response = await client.post(
        "/files/upload", content=body, headers=files_support.upload_headers(user, name)
    )
    assert response.status_code == 201, response.text
    return user, uuid.UUID(response.json()["id"])


async def _row(user, file_id):
    [row] = [row for row in await file_rows(user.user_id) if row["id"] == file_id]
    return row


def _thumbnail(user, file_id, name="thumbnail.webp") -> Image.Image:
    path = store().object_path(f"{user.user_id}/{file_id}/{name}")
    image = Image.open(io.BytesIO(path.read_bytes()))
    assert image.format == "WEBP"
    return image


IMAGES = [
    ("photo.jpg", lambda: samples.jpeg(size=(640, 480)), "jpeg", (640, 480)),
    ("photo.png", lambda: samples.png(size=(300, 500)), "png", (300, 500)),
    ("photo.webp", samples.webp, "webp", (64, 48)),
    ("animation.gif", samples.gif, "gif", (32, 32)),
    ("iphone.heic", lambda: samples.heic(size=(400, 300)), "heif", (400, 300)),
    # EXIF orientation 6: stored landscape, shown portrait.
    ("rotated.jpg", lambda: samples.jpeg(size=(640, 480), orientation=6), "jpeg", (480, 640)),
]


@pytest.mark.parametrize(("name", "make", "format", "size"), IMAGES)
async def test_images_get_dimensions_and_a_stripped_thumbnail(
    files_client, name, make, format, size
):
    user, file_id = await _uploaded(files_client, name, make())

    outcome = await process_file(file_id=file_id, settings=get_settings())

    assert outcome == {"status": "ready"}
    row = await _row(user, file_id)
    assert (row["status"], row["error"]) == ("ready", None)
    metadata = row["extracted_metadata"]
    assert (metadata["width"], metadata["height"]) == size
    assert metadata["format"] == format
    assert metadata["thumbnail_key"] == f"{user.user_id}/{file_id}/thumbnail.webp"
    thumbnail = _thumbnail(user, file_id)
    assert max(thumbnail.size) <= 320
    # Upright like the original is shown, and nothing of the original's metadata kept.
    assert (thumbnail.width >= thumbnail.height) == (size[0] >= size[1])
    assert not thumbnail.getexif() and "icc_profile" not in thumbnail.info
    assert row["extracted_text"] is None
    if name.endswith(".heic"):
        assert metadata["preview_key"].endswith("/preview.webp")
        assert max(_thumbnail(user, file_id, "preview.webp").size) <= 2048
    assert scratch_files() == []


async def test_a_pdf_gets_its_page_count_text_and_a_first_page_thumbnail(files_client):
    body = samples.pdf(("Invoice for aardvark food", "Total due: 42 EUR"), pages=3)
    user, file_id = await _uploaded(files_client, "invoice.pdf", body)

    assert await process_file(file_id=file_id, settings=get_settings()) == {"status": "ready"}

    row = await _row(user, file_id)
    assert row["extracted_metadata"]["page_count"] == 3
    assert row["extracted_text"].count("Invoice for aardvark food") == 3
    assert "Total due: 42 EUR" in row["extracted_text"]
    thumbnail = _thumbnail(user, file_id)
    assert max(thumbnail.size) == 320 and thumbnail.height > thumbnail.width  # a portrait page


DOCUMENTS = [
    (
        "notes.docx",
        samples.docx,
        ["Quarterly notes", "aardvarks", "Animal | Count", "Zebra | 7", "closing paragraph"],
        {"paragraph_count": 3, "table_count": 1},
    ),
    (
        "slides.pptx",
        samples.pptx,
        ["Slide 1", "Launch plan", "Ship the uploader", "Notes: Speaker notes about kiwis"],
        {"slide_count": 2},
    ),
    (
        "budget.xlsx",
        samples.xlsx,
        ["## Budget", "Item,Cost", "Paint,12.5", "Brushes,3", "## People", '"Grace, Hopper"'],
        {"sheet_count": 2, "sheets": ["Budget", "People"]},
    ),
    ("scores.csv", lambda: samples.CSV, ["name,score", "grace,12"], {"line_count": 3}),
    ("readme.md", lambda: samples.MARKDOWN, ["# Title", "ünïcode"], {"line_count": 3}),
    ("notes.txt", lambda: samples.TEXT, ["Just some plain text.", "Second line."], {}),
    ("utf16.txt", lambda: samples.UTF16_TEXT, ["ça va"], {"encoding": "utf-16"}),
]


@pytest.mark.parametrize(("name", "make", "expected_text", "expected_metadata"), DOCUMENTS)
async def test_documents_get_their_text_extracted(
    files_client, name, make, expected_text, expected_metadata
):
    user, file_id = await _uploaded(files_client, name, make())

    assert await process_file(file_id=file_id, settings=get_settings()) == {"status": "ready"}

    row = await _row(user, file_id)
    for fragment in expected_text:
        assert fragment in row["extracted_text"]
    for key, value in expected_metadata.items():
        assert row["extracted_metadata"][key] == value
    assert row["extracted_metadata"]["text_truncated"] is False
    assert stored_files(user.user_id) == sorted(
        [f"{user.user_id}/{file_id}/original", f".meta/{user.user_id}/{file_id}/original.json"]
    )


AUDIO = [
    ("tone.wav", lambda: samples.wav(seconds=2), "pcm", 2.0),
    ("song.mp3", samples.mp3, "mp3", 1.04),
    ("voice.m4a", lambda: samples.m4a(seconds=3), "mp4a", 3.0),
    ("raw.aac", samples.adts_aac, "aac", None),
    ("voice.ogg", samples.ogg_opus, "opus", 1.5),
    ("lossless.flac", samples.flac, "flac", 2.0),
    ("memo.webm", samples.webm, "opus", 2.5),
]


@pytest.mark.parametrize(("name", "make", "codec", "duration"), AUDIO)
async def test_audio_gets_its_duration_and_codec(files_client, name, make, codec, duration):
    user, file_id = await _uploaded(files_client, name, make())

    assert await process_file(file_id=file_id, settings=get_settings()) == {"status": "ready"}

    metadata = (await _row(user, file_id))["extracted_metadata"]
    assert metadata["codec"] == codec
    if duration is None:
        assert metadata["duration_seconds"] > 0
    else:
        assert metadata["duration_seconds"] == pytest.approx(duration, abs=0.05)
    assert "transcribed" not in metadata  # no speech service configured


async def test_long_text_is_capped_and_says_so(files_client):
    line = "All work and no play makes a long document. " * 10 + "\n"
    body = (line * (MAX_TEXT_BYTES // len(line) + 2000)).encode()
    user, file_id = await _uploaded(files_client, "long.txt", body)

    await process_file(file_id=file_id, settings=get_settings())

    row = await _row(user, file_id)
    assert len(row["extracted_text"].encode()) <= MAX_TEXT_BYTES
    assert row["extracted_metadata"]["text_truncated"] is True
    assert "2 MB" in row["extracted_metadata"]["text_note"]


# Failures


def _png_with_garbage_pixels() -> bytes:
    good = samples.png(size=(200, 200))
    start = good.index(b"IDAT") + 4
    return good[:start] + b"\x13\x37" * 300 + good[start + 600 :]


def _docx_with_broken_xml() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("word/document.xml", "<w:document><unclosed>")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("name", "body", "reason"),
    [
        ("broken.png", _png_with_garbage_pixels(), "This image is damaged"),
        ("broken.docx", _docx_with_broken_xml(), "The Word document could not be read"),
        ("broken.mp3", b"ID3\x04\x00\x00\x00\x00\x00\x00" + b"\x00" * 4000, "audio file"),
    ],
)
async def test_unreadable_content_marks_the_file_failed_and_keeps_the_original(
    files_client, name, body, reason
):
    user, file_id = await _uploaded(files_client, name, body)

    assert await process_file(file_id=file_id, settings=get_settings()) == {"status": "failed"}

    row = await _row(user, file_id)
    assert row["status"] == "failed"
    assert reason in row["error"]
    assert row["extracted_text"] is None
    original = store().object_path(f"{user.user_id}/{file_id}/original")
    assert original.read_bytes() == body
    assert scratch_files() == []


async def test_a_pdf_that_pdfium_cannot_open_fails_with_a_reason(files_client, monkeypatch):
    user, file_id = await _uploaded(files_client, "paper.pdf", samples.pdf())
    # The stored object is damaged after the upload was checked (a disk fault, say).
    store().object_path(f"{user.user_id}/{file_id}/original").write_bytes(samples.corrupt_pdf())

    await process_file(file_id=file_id, settings=get_settings())

    row = await _row(user, file_id)
    assert row["status"] == "failed"
    assert row["error"] == ("The PDF could not be read: it may be damaged or password-protected.")


async def test_a_missing_original_fails_with_a_reason(files_client):
    user, file_id = await _uploaded(files_client, "notes.txt", samples.TEXT)
    store().object_path(f"{user.user_id}/{file_id}/original").unlink()

    await process_file(file_id=file_id, settings=get_settings())

    row = await _row(user, file_id)
    assert row["status"] == "failed" and "missing from storage" in row["error"]


async def test_a_file_deleted_before_its_job_runs_ends_quietly(files_client):
    user, file_id = await _uploaded(files_client, "photo.png", samples.png())
    async with db.session_scope() as session:
        assert await files_service.delete_file(
            session=session, owner_id=user.user_id, file_id=file_id
        )

    assert await process_file(file_id=file_id, settings=get_settings()) == {"status": "gone"}
    assert stored_files(user.user_id) == []
    assert scratch_files() == []


async def test_a_file_deleted_while_processing_leaves_no_thumbnail_behind(files_client):
    user, file_id = await _uploaded(files_client, "photo.png", samples.png())

    async def delete_midway(percent: float, message: str) -> None:
        if message == "Saving previews":
            async with db.session_scope() as session:
                await files_service.delete_file(
                    session=session, owner_id=user.user_id, file_id=file_id
                )

    outcome = await process_file(file_id=file_id, settings=get_settings(), progress=delete_midway)

    assert outcome == {"status": "gone"}
    assert await file_rows(user.user_id) == []
    assert stored_files(user.user_id) == []


async def test_processing_again_overwrites_the_same_outputs(files_client):
    user, file_id = await _uploaded(files_client, "photo.jpg", samples.jpeg(size=(500, 400)))

    await process_file(file_id=file_id, settings=get_settings())
    first = await _row(user, file_id)
    await process_file(file_id=file_id, settings=get_settings())
    second = await _row(user, file_id)

    assert second["status"] == "ready"
    assert second["extracted_metadata"] == first["extracted_metadata"]
    assert stored_files(user.user_id) == sorted(
        [
            f"{user.user_id}/{file_id}/original",
            f"{user.user_id}/{file_id}/thumbnail.webp",
            f".meta/{user.user_id}/{file_id}/original.json",
            f".meta/{user.user_id}/{file_id}/thumbnail.webp.json",
        ]
    )


# Transcription through a local server that speaks the OpenAI wire format.


class SpeechServer:
    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.status = 200
        self.transcript = "Hello from the speech service."
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                message = BytesParser(policy=HTTP).parsebytes(
                    f"Content-Type: {self.headers['Content-Type']}\r\n\r\n".encode() + body
                )
                fields = {}
                for part in message.iter_parts():
                    name = part.get_param("name", header="content-disposition")
                    fields[name] = {
                        "filename": part.get_filename(),
                        "content_type": part.get_content_type(),
                        "bytes": part.get_payload(decode=True),
                    }
                server.requests.append(
                    {
                        "path": self.path,
                        "authorization": self.headers.get("Authorization"),
                        "fields": fields,
                    }
                )
                answer = (
                    {"text": server.transcript}
                    if server.status == 200
                    else {"error": {"message": "nope"}}
                )
                payload = json.dumps(answer).encode()
                self.send_response(server.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def speech_server(monkeypatch, tmp_path):
    server = SpeechServer()
    configure(
        monkeypatch,
        tmp_path,
        SPEECH_API_URL=server.url,
        SPEECH_API_KEY="sk-test-key",
        SPEECH_MODEL="whisper-test",
    )
    yield server
    server.close()


async def test_audio_is_transcribed_when_a_speech_service_is_configured(
    files_client, speech_server
):
    body = samples.wav(seconds=1)
    user, file_id = await _uploaded(files_client, "My secret voice memo.wav", body)

    assert await process_file(file_id=file_id, settings=get_settings()) == {"status": "ready"}

    row = await _row(user, file_id)
    assert row["extracted_text"] == "Hello from the speech service."
    assert row["extracted_metadata"]["transcribed"] is True
    assert row["extracted_metadata"]["transcription_model"] == "whisper-test"
    assert row["extracted_metadata"]["duration_seconds"] == pytest.approx(1.0)
    [request] = speech_server.requests
    assert request["path"] == "/v1/audio/transcriptions"
    assert request["authorization"] == "Bearer sk-test-key"
    fields = request["fields"]
    assert fields["model"]["bytes"] == b"whisper-test"
    assert fields["file"]["bytes"] == body
    assert fields["file"]["content_type"] == "audio/wav"
    # The service is not told the user's file name.
    assert fields["file"]["filename"] == "audio.wav"


async def test_an_unavailable_speech_service_is_retried_then_reported(files_client, speech_server):
    speech_server.status = 503
    user, file_id = await _uploaded(files_client, "memo.wav", samples.wav())

    with pytest.raises(TransientProcessingError):
        await process_file(file_id=file_id, settings=get_settings(), final_attempt=False)
    assert (await _row(user, file_id))["status"] == "processing"
    assert scratch_files() == []

    await process_file(file_id=file_id, settings=get_settings(), final_attempt=True)
    row = await _row(user, file_id)
    assert row["status"] == "failed"
    assert row["error"] == "The speech service is unavailable (HTTP 503)."
    assert store().object_path(f"{user.user_id}/{file_id}/original").exists()


async def test_a_refused_speech_key_fails_with_a_reason(files_client, speech_server):
    speech_server.status = 401
    user, file_id = await _uploaded(files_client, "memo.wav", samples.wav())

    await process_file(file_id=file_id, settings=get_settings(), final_attempt=False)

    row = await _row(user, file_id)
    assert row["status"] == "failed"
    assert "refused Carmenta's key (HTTP 401)" in row["error"]


async def test_an_unreachable_speech_service_is_transient(files_client, monkeypatch, tmp_path):
    configure(monkeypatch, tmp_path, SPEECH_API_URL="http://127.0.0.1:9/v1")
    user, file_id = await _uploaded(files_client, "memo.wav", samples.wav())

    with pytest.raises(TransientProcessingError, match="could not be reached"):
        await process_file(file_id=file_id, settings=get_settings(), final_attempt=False)


# The real thing: a worker picks the upload's job up.


async def test_a_worker_processes_an_upload_and_reports_progress(files_client):
    user, file_id = await _uploaded(files_client, "invoice.pdf", samples.pdf(("Worker run",)))
    [job] = await files_support.file_jobs(user.user_id)

    worker = asyncio.create_task(run_worker(concurrency=2, shutdown_grace_seconds=2))
    try:
        deadline = time.monotonic() + 60
        while (await _row(user, file_id))["status"] == "processing":
            assert time.monotonic() < deadline, "the upload was not processed"
            assert not worker.done(), worker
            await asyncio.sleep(0.1)
        view = None
        while view is None or view.status is not JobStatus.succeeded:
            assert time.monotonic() < deadline, f"the job did not finish: {view}"
            view = await get_job(owner_id=user.user_id, job_id=job["id"])
            await asyncio.sleep(0.05)
    finally:
        worker.cancel()
        await asyncio.wait([worker], timeout=30)

    row = await _row(user, file_id)
    assert row["status"] == "ready" and "Worker run" in row["extracted_text"]
    assert (view.percent, view.result) == (100, {"status": "ready"})
    assert view.message == "Saving previews"


def test_extraction_helpers_do_not_need_the_database(tmp_path):
    # The extraction step alone, as a worker thread runs it.
    source = tmp_path / "original"
    source.write_bytes(samples.docx())
    extraction = processing.extract(
        source,
        kind="document",
        content_type=processing.detect.DOCX_TYPE,
        settings=get_settings(),
        work_dir=tmp_path,
    )
    assert "aardvarks" in extraction.text
