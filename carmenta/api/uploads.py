"""POST /files/upload: one file per request, its raw bytes as the body.

Request: the session cookie (built-in accounts), Clerk's `__session` cookie or an
`Authorization: Bearer` token; the app's own Origin; the file's name, percent-encoded
UTF-8, in `X-File-Name`. The body is streamed to a scratch file (never held in
memory) while it is counted and hashed, and refused as soon as it passes the size
limit or the owner's remaining quota.

Answers: 201 {id, name, kind, content_type, size_bytes, status, job_id}; otherwise
{"error": "<what went wrong, in plain words>"} with 400 (no name, a bad name, an
empty file, a multipart form body, an interrupted upload), 401 (not signed in),
403 (another site), 413 (too large for its kind, or over the storage quota), 415 (a
type Carmenta does not accept, judged from the content), 422 (a damaged PDF, an
image with too many pixels), 500 (the database failed) or 503 (the store failed).

The object, its row and its processing job appear together or not at all: the
object is stored first, then the row and the job are written in one transaction,
and the object is deleted again if that transaction does not commit.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import unquote

import anyio
from sqlalchemy import text, update
from sqlmodel import col, select
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse

from carmenta import db
from carmenta.api.auth import _same_origin
from carmenta.api.request_user import request_token
from carmenta.auth import service as auth_service
from carmenta.files import detect
from carmenta.files import service as files_service
from carmenta.files import tasks as file_tasks
from carmenta.files.models import FileStatus, StoredFile
from carmenta.files.processing import temp_root
from carmenta.files.storage.base import StorageBackend, StorageError
from carmenta.jobs import service as jobs_service
from carmenta.model_fields import utcnow
from carmenta.settings import Settings, get_settings

logger = logging.getLogger(__name__)

MB = 1024 * 1024
NAME_HEADER = "x-file-name"
# Received bytes are written out in blocks of this size: the most held per upload.
WRITE_BLOCK_BYTES = 1 * MB
# A refused body is read to its end (and dropped) within these bounds; see _drain.
DRAIN_MAX_BYTES = 128 * MB
DRAIN_MAX_SECONDS = 30.0

_KIND_WORDS = {
    detect.IMAGE: "images",
    detect.AUDIO: "audio files",
    detect.PDF: "documents",
    detect.DOCUMENT: "documents",
    detect.PRESENTATION: "documents",
    detect.SPREADSHEET: "documents",
    detect.TEXT: "documents",
}


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse(
        {"error": message}, status_code=status, headers={"Cache-Control": "no-store"}
    )


def _file_name(header: str | None) -> str:
    if header is None:
        raise detect.InvalidFileName("The file name is missing (X-File-Name).")
    if not header.isascii():
        # Not percent-encoded as asked; HTTP headers arrive as Latin-1, so undo that.
        try:
            header = header.encode("latin-1").decode("utf-8")
        except UnicodeError:
            raise detect.InvalidFileName("The file name is not valid UTF-8.") from None
    try:
        name = unquote(header, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise detect.InvalidFileName("The file name is not valid UTF-8.") from None
    return detect.validate_name(name)


def _too_large(limit_mb: int, kind: str | None) -> _Refused:
    if kind is None:
        return _Refused(413, f"This file is larger than {limit_mb} MB, the most Carmenta accepts.")
    return _Refused(
        413, f"This file is larger than {limit_mb} MB, the limit for {_KIND_WORDS[kind]}."
    )


def _over_quota(settings: Settings, used: int) -> _Refused:
    left = max(0, settings.storage_quota_mb * MB - used)
    return _Refused(
        413,
        f"This file would go over your storage quota of {settings.storage_quota_mb} MB "
        f"({left / MB:.1f} MB left). Delete some files to make room.",
    )


@dataclass
class _Received:
    size: int
    sha256: str


def _write_block(stream: BinaryIO, hasher: Any, block: bytes) -> None:
    stream.write(block)
    hasher.update(block)


async def _receive(
    request: Request, stream: BinaryIO, *, settings: Settings, used: int
) -> _Received:
    """Copy the body to `stream`, refusing it as soon as it is certainly too large."""
    quota_left = settings.storage_quota_mb * MB - used
    kind: str | None = None
    limit_mb = detect.limit_mb(None, settings)
    head = bytearray()
    hinted = False
    pending = bytearray()
    hasher = hashlib.sha256()
    size = 0
    async for chunk in request.stream():
        if not chunk:
            continue
        size += len(chunk)
        if not hinted:
            head += chunk[: 4096 - len(head)]
            if len(head) >= 4096:
                # The start of the file tells images and audio apart: their limit applies.
                kind = detect.kind_hint(bytes(head))
                limit_mb = detect.limit_mb(kind, settings)
                hinted = True
        if size > limit_mb * MB:
            raise _too_large(limit_mb, kind)
        if size > quota_left:
            raise _over_quota(settings, used)
        pending += chunk
        if len(pending) >= WRITE_BLOCK_BYTES:
            await anyio.to_thread.run_sync(_write_block, stream, hasher, bytes(pending))
            pending.clear()
    if pending:
        await anyio.to_thread.run_sync(_write_block, stream, hasher, bytes(pending))
    await anyio.to_thread.run_sync(stream.flush)
    return _Received(size=size, sha256=hasher.hexdigest())


def _quota_lock_key(owner_id: uuid.UUID) -> str:
    return f"carmenta.files.quota:{owner_id}"


async def _discard(store: StorageBackend, prefix: str) -> None:
    try:
        await store.delete_prefix(prefix=prefix)
    except Exception:
        logger.exception(
            "could not remove the stored object under %s after a failed upload", prefix
        )


async def _drain(request: Request) -> None:
    """Read and drop the rest of a refused body, so the client gets to read the answer.

    Closing a connection with unread request bytes makes the TCP stack reset it, and
    browsers then report a lost connection instead of the message. Bounded in size
    and time: beyond that the client gets the reset after all.
    """
    drained = 0
    with anyio.move_on_after(DRAIN_MAX_SECONDS):
        try:
            async for chunk in request.stream():
                drained += len(chunk)
                if drained > DRAIN_MAX_BYTES:
                    return
        except ClientDisconnect:
            return


async def _refuse(request: Request, status: int, message: str) -> JSONResponse:
    """A refusal before the body was read."""
    await _drain(request)
    return _error(status, message)


def _remove(path: Path) -> None:
    # Synchronous on purpose: it must run even when the request task is cancelled.
    path.unlink(missing_ok=True)


def _checked_headers(request: Request, *, settings: Settings, used: int) -> str:
    """The file's name, once the headers allow reading the body; else _Refused."""
    try:
        name = _file_name(request.headers.get(NAME_HEADER))
    except detect.InvalidFileName as problem:
        raise _Refused(400, str(problem)) from None
    if request.headers.get("content-type", "").lower().startswith("multipart/"):
        # The body is the file itself; a form would be stored with its boundaries.
        raise _Refused(400, "Send the file's bytes as the request body, not as a form.")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit():
        declared_size = int(declared)
        if declared_size == 0:
            raise _Refused(400, "This file is empty.")
        largest = detect.limit_mb(None, settings)
        if declared_size > largest * MB:
            raise _too_large(largest, None)
        if used + declared_size > settings.storage_quota_mb * MB:
            raise _over_quota(settings, used)
    return name


Accept = Callable[[Path, _Received], Awaitable[JSONResponse]]


async def _receive_then(
    request: Request, *, settings: Settings, used: int, owner_id: uuid.UUID, accept: Accept
) -> JSONResponse:
    """Stream the body to a scratch file, hand it to `accept`, and always clean up."""
    fd, temp_name = await anyio.to_thread.run_sync(
        partial(tempfile.mkstemp, prefix="upload-", dir=temp_root(settings))
    )
    temp_path = Path(temp_name)
    body_read = False
    try:
        stream = os.fdopen(fd, "wb")
        try:
            received = await _receive(request, stream, settings=settings, used=used)
        finally:
            stream.close()
        body_read = True
        return await accept(temp_path, received)
    except _Refused as refusal:
        _remove(temp_path)
        if not body_read:
            await _drain(request)
        return _error(refusal.status, refusal.message)
    except ClientDisconnect:
        logger.info("an upload by user %s was interrupted by the client", owner_id)
        return _error(400, "The upload was interrupted before the whole file arrived.")
    except Exception:
        logger.exception("an upload by user %s failed", owner_id)
        return _error(500, "The file could not be saved. Try again in a moment.")
    finally:
        _remove(temp_path)


async def upload_file(request: Request) -> JSONResponse:
    settings = get_settings()
    if not _same_origin(request, settings):
        return await _refuse(request, 403, "This request must come from Carmenta's own pages.")
    token = request_token(request, settings)
    async with db.session_scope() as session:
        user = await auth_service.authenticate(session=session, settings=settings, token=token)
        used = 0
        if user is not None:
            used = await files_service.storage_used(session=session, owner_id=user.user_id)
    if user is None:
        return await _refuse(request, 401, "Sign in to upload files.")
    owner_id = user.user_id

    try:
        name = _checked_headers(request, settings=settings, used=used)
    except _Refused as refusal:
        return await _refuse(request, refusal.status, refusal.message)
    return await _receive_then(
        request,
        settings=settings,
        used=used,
        owner_id=owner_id,
        accept=partial(_accept, name=name, owner_id=owner_id, settings=settings),
    )


async def _checked(
    path: Path, received: _Received, *, name: str, settings: Settings
) -> detect.DetectedType:
    """The type judged from the content, once it passed every check; else _Refused."""
    if received.size == 0:
        raise _Refused(400, "This file is empty.")
    try:
        detected = await anyio.to_thread.run_sync(partial(detect.detect_file, path, name=name))
    except detect.UnsupportedFileType as problem:
        raise _Refused(415, str(problem)) from None
    limit_mb = detect.limit_mb(detected.kind, settings)
    if received.size > limit_mb * MB:
        raise _too_large(limit_mb, detected.kind)
    try:
        await anyio.to_thread.run_sync(
            partial(detect.validate_content, path, detected, settings=settings)
        )
    except detect.UnacceptableContent as problem:
        raise _Refused(422, str(problem)) from None
    return detected


async def _accept(
    path: Path, received: _Received, *, name: str, owner_id: uuid.UUID, settings: Settings
) -> JSONResponse:
    detected = await _checked(path, received, name=name, settings=settings)

    file_id = uuid.uuid4()
    key = files_service.key_of(owner_id, file_id)
    prefix = files_service.prefix_of(owner_id, file_id)
    store = files_service.storage_for(settings)
    try:
        await store.put_file(key=key, path=path, content_type=detected.content_type)
    except StorageError as error:
        logger.error("storing upload %s failed: %s", file_id, error)
        await _discard(store, prefix)
        raise _Refused(
            503, "The file could not be stored right now. Try again in a moment."
        ) from None
    except BaseException:
        await _discard(store, prefix)
        raise

    try:
        async with db.session_scope() as session:
            # Uploads by one user finish one at a time here, so two cannot both fit
            # into the same remaining quota.
            await session.exec(
                text("select pg_advisory_xact_lock(hashtextextended(:key, 0))"),
                params={"key": _quota_lock_key(owner_id)},
            )
            used = await files_service.storage_used(session=session, owner_id=owner_id)
            if used + received.size > settings.storage_quota_mb * MB:
                raise _over_quota(settings, used)
            session.add(
                StoredFile(
                    id=file_id,
                    owner_id=owner_id,
                    storage_key=key,
                    original_name=name,
                    content_type=detected.content_type,
                    kind=detected.kind,
                    size_bytes=received.size,
                    sha256=received.sha256,
                    status=FileStatus.processing.value,
                )
            )
            await session.flush()
            job_id = await jobs_service.enqueue(
                task_name=file_tasks.PROCESS_TASK,
                task_kwargs={"file_id": str(file_id)},
                owner_id=owner_id,
                session=session,
            )
    except BaseException:
        await _discard(store, prefix)
        raise

    logger.info(
        "upload %s stored for user %s: %s, %d bytes",
        file_id,
        owner_id,
        detected.content_type,
        received.size,
    )
    return JSONResponse(
        {
            "id": str(file_id),
            "name": name,
            "kind": detected.kind,
            "content_type": detected.content_type,
            "size_bytes": received.size,
            "status": FileStatus.processing.value,
            "job_id": job_id,
        },
        status_code=201,
        headers={"Cache-Control": "no-store"},
    )


async def replace_file(request: Request) -> JSONResponse:
    """POST /files/{file_id}/replace: new content for an existing file, its id kept.

    The same request and checks as an upload (the quota counted without the content
    being replaced); answers 200 with the file's new description, or the upload's
    errors, or 404 for a file that is not the caller's (or no longer exists) and 409
    when another replacement of the same file committed first.

    The new content is stored under the next revision's keys and the row switches to
    it in one transaction with the processing job; the previous revision's objects
    are deleted only after that commits. A refused, failed or interrupted
    replacement leaves the file as it was: row, object, text and documents.
    """
    settings = get_settings()
    if not _same_origin(request, settings):
        return await _refuse(request, 403, "This request must come from Carmenta's own pages.")
    token = request_token(request, settings)
    try:
        file_id = uuid.UUID(request.path_params["file_id"])
    except ValueError:
        file_id = None
    async with db.session_scope() as session:
        user = await auth_service.authenticate(session=session, settings=settings, token=token)
        current = None
        used = 0
        if user is not None and file_id is not None:
            current = await files_service.get_file(
                session=session, owner_id=user.user_id, file_id=file_id
            )
            used = await files_service.storage_used(session=session, owner_id=user.user_id)
    if user is None:
        return await _refuse(request, 401, "Sign in to replace files.")
    if current is None:
        return await _refuse(request, 404, "That file no longer exists.")
    owner_id = user.user_id
    # The content being replaced goes away, so it does not count against the quota.
    used_by_others = used - current.size_bytes

    try:
        name = _checked_headers(request, settings=settings, used=used_by_others)
    except _Refused as refusal:
        return await _refuse(request, refusal.status, refusal.message)
    return await _receive_then(
        request,
        settings=settings,
        used=used_by_others,
        owner_id=owner_id,
        accept=partial(
            _accept_replacement,
            name=name,
            owner_id=owner_id,
            file_id=current.id,
            revision=current.revision,
            settings=settings,
        ),
    )


async def _discard_revision(
    store: StorageBackend, owner_id: uuid.UUID, file_id: uuid.UUID, revision: int
) -> None:
    # Shielded: a cancelled request must still remove what it stored.
    with anyio.CancelScope(shield=True):
        try:
            await files_service.discard_revision(
                store, owner_id=owner_id, file_id=file_id, revision=revision
            )
        except Exception:
            logger.exception(
                "could not remove revision %d of file %s after a replacement", revision, file_id
            )


async def _accept_replacement(
    path: Path,
    received: _Received,
    *,
    name: str,
    owner_id: uuid.UUID,
    file_id: uuid.UUID,
    revision: int,
    settings: Settings,
) -> JSONResponse:
    detected = await _checked(path, received, name=name, settings=settings)

    new_revision = revision + 1
    key = files_service.key_of(owner_id, file_id, revision=new_revision)
    store = files_service.storage_for(settings)
    try:
        await store.put_file(key=key, path=path, content_type=detected.content_type)
    except StorageError as error:
        logger.error("storing a replacement of %s failed: %s", file_id, error)
        await _discard_revision(store, owner_id, file_id, new_revision)
        raise _Refused(
            503, "The file could not be stored right now. Try again in a moment."
        ) from None
    except BaseException:
        await _discard_revision(store, owner_id, file_id, new_revision)
        raise

    try:
        async with db.session_scope() as session:
            await session.exec(
                text("select pg_advisory_xact_lock(hashtextextended(:key, 0))"),
                params={"key": _quota_lock_key(owner_id)},
            )
            row = (
                await session.exec(
                    select(StoredFile)
                    .where(col(StoredFile.id) == file_id, col(StoredFile.owner_id) == owner_id)
                    .with_for_update()
                )
            ).first()
            if row is None:
                raise _Refused(404, "That file was deleted while its new version was uploading.")
            if row.revision != revision:
                raise _Refused(
                    409,
                    "This file was replaced by another upload meanwhile. "
                    "Reload the page to see its current version.",
                )
            used = await files_service.storage_used(session=session, owner_id=owner_id)
            used -= row.size_bytes
            if used + received.size > settings.storage_quota_mb * MB:
                raise _over_quota(settings, used)
            await session.exec(
                update(StoredFile)
                .where(col(StoredFile.id) == file_id)
                .values(
                    revision=new_revision,
                    storage_key=key,
                    original_name=name,
                    content_type=detected.content_type,
                    kind=detected.kind,
                    size_bytes=received.size,
                    sha256=received.sha256,
                    status=FileStatus.processing.value,
                    error=None,
                    extracted_metadata={},
                    extracted_text=None,
                    updated_at=utcnow(),
                )
            )
            job_id = await jobs_service.enqueue(
                task_name=file_tasks.PROCESS_TASK,
                task_kwargs={"file_id": str(file_id)},
                owner_id=owner_id,
                session=session,
            )
    except BaseException:
        await _discard_revision(store, owner_id, file_id, new_revision)
        raise

    # The row names the new revision now: the previous one's objects can go.
    await _discard_revision(store, owner_id, file_id, revision)
    logger.info(
        "file %s of user %s replaced (revision %d): %s, %d bytes",
        file_id,
        owner_id,
        new_revision,
        detected.content_type,
        received.size,
    )
    return JSONResponse(
        {
            "id": str(file_id),
            "name": name,
            "kind": detected.kind,
            "content_type": detected.content_type,
            "size_bytes": received.size,
            "status": FileStatus.processing.value,
            "job_id": job_id,
            "revision": new_revision,
            "replaced": True,
        },
        status_code=200,
        headers={"Cache-Control": "no-store"},
    )
