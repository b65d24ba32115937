"""Uploaded files in the knowledge base: their extracted text kept as documents.

`add_file_to_knowledge` records the owner's wish in `file_knowledge` and queues the
`knowledge.ingest_file` job (or, while the file is still being read, lets the end of
processing queue it). The job writes the text into one document per file under
`knowledge.files.<slug of the file name>`, titled with the file name; its chunks wait
for the embedding job like any document's.

Text longer than a document may hold (documents.MAX_CONTENT_BYTES) is split on
paragraph boundaries into numbered parts: the first stays the file's document, the
others are placed below it ("<name> (part 2)", ...). Extracted text is capped at
processing.MAX_TEXT_BYTES, so a file makes at most a few parts.

When a file is processed again (its content was replaced) a file in the knowledge
base is added again: the same document is updated in place, so its id, path and
the links to it stay. Deleting the file deletes its documents (the foreign key
cascades) and the `file_knowledge` row; links to them become unresolved.

Every function takes the verified owner's id; another user's file looks like no file.
Functions run in the caller's transaction; the caller commits.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy import text
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from carmenta.errors import CarmentaError
from carmenta.files import service as files_service
from carmenta.files.models import FileStatus, StoredFile
from carmenta.jobs import service as jobs_service
from carmenta.knowledge import service as documents
from carmenta.knowledge.models import DocumentSource, FileKnowledge, FileKnowledgeStatus
from carmenta.model_fields import utcnow

logger = logging.getLogger(__name__)

INGEST_TASK = "knowledge.ingest_file"
FILES_PARENT = "knowledge.files"

Progress = Callable[[float, str], Awaitable[None]]


class CannotAddFile(CarmentaError, ValueError):
    """The file has nothing the knowledge base could hold; the message says why."""


@dataclass(frozen=True)
class FileKnowledgeView:
    """Where a file stands with the knowledge base, as its owner sees it."""

    file_id: uuid.UUID
    # "none", "waiting" (the file is still being read), "adding", "ready", "failed".
    state: str
    percent: int = 0
    message: str = ""
    error: str = ""
    document_id: uuid.UUID | None = None


def _lock_key(file_id: uuid.UUID) -> str:
    # Ingest runs of one file never overlap; a later one sees the earlier one's work.
    return f"knowledge.file:{file_id}"


async def _owned_file(
    session: AsyncSession, owner_id: uuid.UUID, file_id: uuid.UUID, *, lock: bool
) -> StoredFile | None:
    query = select(StoredFile).where(
        col(StoredFile.id) == file_id, col(StoredFile.owner_id) == owner_id
    )
    if lock:
        query = query.with_for_update()
    return (await session.exec(query)).first()


async def _entry(
    session: AsyncSession, owner_id: uuid.UUID, file_id: uuid.UUID, *, lock: bool
) -> FileKnowledge | None:
    query = select(FileKnowledge).where(
        col(FileKnowledge.file_id) == file_id, col(FileKnowledge.owner_id) == owner_id
    )
    if lock:
        query = query.with_for_update()
    return (await session.exec(query)).first()


def _refusal_for(row: StoredFile) -> str | None:
    """Why this file cannot be added, or None when it can (now or once it is read)."""
    if row.status == FileStatus.failed.value:
        reason = row.error or "it could not be read"
        return f"{row.original_name} could not be read, so it cannot be added: {reason}"
    if row.status == FileStatus.ready.value and not (row.extracted_text or "").strip():
        return (
            f"{row.original_name} has no text to add: Carmenta found none in it "
            "(pictures, and audio without a speech service, have none)."
        )
    return None


async def _queue_ingest(session: AsyncSession, entry: FileKnowledge) -> None:
    entry.job_id = await jobs_service.enqueue(
        task_name=INGEST_TASK,
        task_kwargs={"file_id": str(entry.file_id), "owner_id": str(entry.owner_id)},
        owner_id=entry.owner_id,
        session=session,
        lock=_lock_key(entry.file_id),
    )
    entry.status = FileKnowledgeStatus.adding.value
    entry.error = None
    entry.updated_at = utcnow()


async def add_file_to_knowledge(
    *, session: AsyncSession, owner_id: uuid.UUID, file_id: uuid.UUID
) -> FileKnowledgeView | None:
    """Keep the owner's file in the knowledge base; None when there is no such file.

    A file still being read is added when processing finishes. Raises CannotAddFile
    for a file that failed processing or has no text. Asking again while it is
    being added, or once it is in, changes nothing.
    """
    # The file row is locked first (as processing's update does), so the end of
    # processing cannot slip between reading its status and recording the wish.
    row = await _owned_file(session, owner_id, file_id, lock=True)
    if row is None:
        return None
    refusal = _refusal_for(row)
    if refusal is not None:
        raise CannotAddFile(refusal)
    entry = await _entry(session, owner_id, file_id, lock=True)
    if entry is None:
        entry = FileKnowledge(file_id=file_id, owner_id=owner_id)
        session.add(entry)
    elif entry.status in (FileKnowledgeStatus.waiting.value, FileKnowledgeStatus.adding.value):
        return await _view_of(session, row, entry)
    elif entry.status == FileKnowledgeStatus.ready.value and entry.ingested_sha256 == row.sha256:
        if entry.document_id is not None:
            return await _view_of(session, row, entry)
    if row.status == FileStatus.ready.value:
        await _queue_ingest(session, entry)
    else:
        entry.status = FileKnowledgeStatus.waiting.value
        entry.error = None
        entry.job_id = None
        entry.updated_at = utcnow()
    await session.flush()
    return await _view_of(session, row, entry)


async def remove_file_from_knowledge(
    *, session: AsyncSession, owner_id: uuid.UUID, file_id: uuid.UUID
) -> bool:
    """Delete the file's documents and forget the wish; the file itself stays.

    False when the file was not in the knowledge base (or is not the owner's). A
    queued or running ingest finds the wish gone and writes nothing.
    """
    # Deleting the row waits for a running ingest's transaction, then wins.
    removed = await session.execute(
        text(
            "delete from file_knowledge where owner_id = :owner and file_id = :file"
            " returning file_id"
        ),
        {"owner": owner_id, "file": file_id},
    )
    had_entry = removed.first() is not None
    deleted = await session.execute(
        text("delete from documents where owner_id = :owner and source_file_id = :file"),
        {"owner": owner_id, "file": file_id},
    )
    return had_entry or bool(deleted.rowcount)  # type: ignore[attr-defined]


async def file_documents(
    *, session: AsyncSession, owner_id: uuid.UUID, file_id: uuid.UUID
) -> list[documents.DocumentView]:
    """The documents made from the file, the first part first."""
    result = await session.execute(
        text(
            "select id, path::text as path, title, content, source, created_at, updated_at"
            " from documents where owner_id = :owner and source_file_id = :file"
            " order by nlevel(path), created_at, id"
        ),
        {"owner": owner_id, "file": file_id},
    )
    return [documents._view(row) for row in result.all()]


async def _view_of(session: AsyncSession, row: StoredFile, entry: FileKnowledge | None):
    if entry is None:
        return FileKnowledgeView(file_id=row.id, state="none")
    states = await knowledge_states(session=session, owner_id=row.owner_id, file_ids=[row.id])
    return states.get(row.id, FileKnowledgeView(file_id=row.id, state="none"))


async def knowledge_states(
    *, session: AsyncSession, owner_id: uuid.UUID, file_ids: list[uuid.UUID] | None = None
) -> dict[uuid.UUID, FileKnowledgeView]:
    """Each of the owner's files that is (or is being) kept in the knowledge base.

    Files absent from the answer are not in the knowledge base. A file whose content
    is being read again shows as waiting: its documents are updated afterwards.
    """
    result = await session.execute(
        text(
            """
            select k.file_id, k.status, k.error, k.document_id, f.status as file_status,
                   p.percent, p.message
              from file_knowledge k
              join files f on f.id = k.file_id and f.owner_id = :owner
              left join job_progress p on p.job_id = k.job_id and p.owner_id = :owner
             where k.owner_id = :owner
               and (cast(:files as uuid[]) is null or k.file_id = any(cast(:files as uuid[])))
            """
        ),
        {"owner": owner_id, "files": file_ids},
    )
    states: dict[uuid.UUID, FileKnowledgeView] = {}
    for row in result.all():
        state = row.status
        if row.file_status in (FileStatus.processing.value, FileStatus.uploading.value):
            state = FileKnowledgeStatus.waiting.value
        if state == FileKnowledgeStatus.ready.value and row.document_id is None:
            # Its document was deleted from the knowledge base directly.
            continue
        states[row.file_id] = FileKnowledgeView(
            file_id=row.file_id,
            state=state,
            percent=int(row.percent or 0) if state == FileKnowledgeStatus.adding.value else 0,
            message=(row.message or "") if state == FileKnowledgeStatus.adding.value else "",
            error=row.error or "" if state == FileKnowledgeStatus.failed.value else "",
            document_id=row.document_id,
        )
    return states


# The end of processing: add the file again when its content changed.


async def after_file_processed(
    *, session: AsyncSession, file_id: uuid.UUID, owner_id: uuid.UUID, status: str
) -> None:
    """Runs in the transaction that records the processing outcome."""
    entry = await _entry(session, owner_id, file_id, lock=True)
    if entry is None:
        return
    row = await _owned_file(session, owner_id, file_id, lock=False)
    if row is None:
        return
    refusal = _refusal_for(row)
    if refusal is not None:
        entry.status = FileKnowledgeStatus.failed.value
        entry.error = refusal
        entry.job_id = None
        entry.updated_at = utcnow()
        return
    if (
        status == FileStatus.ready.value
        and entry.status == FileKnowledgeStatus.ready.value
        and entry.ingested_sha256 == row.sha256
        and entry.document_id is not None
    ):
        return  # processed again without a change (a retried run)
    await _queue_ingest(session, entry)


files_service.register_processed_listener(after_file_processed)


# The ingest job's work.

_PARAGRAPH_BREAK = re.compile(r"(\n\s*\n)")


def split_for_documents(content: str, *, limit: int = documents.MAX_CONTENT_BYTES) -> list[str]:
    """`content` in parts of at most `limit` UTF-8 bytes, cut between paragraphs when
    one fits, else between characters; one part when it fits whole."""
    if len(content.encode("utf-8")) <= limit:
        return [content]
    parts: list[str] = []
    current: list[str] = []
    size = 0
    for piece in _PARAGRAPH_BREAK.split(content):
        encoded = piece.encode("utf-8")
        while len(encoded) > limit:
            # A paragraph larger than a part: cut it at a character boundary.
            if current:
                parts.append("".join(current))
                current, size = [], 0
            head = encoded[:limit].decode("utf-8", "ignore")
            parts.append(head)
            encoded = encoded[len(head.encode("utf-8")) :]
            piece = encoded.decode("utf-8")
        if size + len(encoded) > limit:
            parts.append("".join(current))
            current, size = [], 0
        current.append(piece)
        size += len(encoded)
    if current:
        parts.append("".join(current))
    cleaned = [part.strip() for part in parts]
    return [part for part in cleaned if part]


def _part_title(name: str, number: int) -> str:
    return name if number == 1 else f"{name} (part {number})"


async def ingest_file(
    *,
    session: AsyncSession,
    owner_id: uuid.UUID,
    file_id: uuid.UUID,
    progress: Progress | None = None,
) -> dict[str, object]:
    """Write the file's text into its documents; the ingest job's work, in one transaction.

    Returns {"status": ...}: "ready" with the document id and part count, "removed"
    (no longer wanted, or no such file), "waiting" (being read again: the end of
    processing queues another run) or "failed" with the reason recorded.
    """

    async def report(percent: float, message: str) -> None:
        if progress is not None:
            await progress(percent, message)

    entry = await _entry(session, owner_id, file_id, lock=True)
    if entry is None:
        return {"status": "removed"}
    row = await _owned_file(session, owner_id, file_id, lock=False)
    if row is None:
        return {"status": "removed"}
    if row.status in (FileStatus.processing.value, FileStatus.uploading.value):
        entry.status = FileKnowledgeStatus.waiting.value
        entry.job_id = None
        entry.updated_at = utcnow()
        return {"status": "waiting"}
    refusal = _refusal_for(row)
    if refusal is not None:
        return _failed(entry, refusal)

    await report(10, "Splitting the text")
    parts = split_for_documents(row.extracted_text or "")
    existing = await file_documents(session=session, owner_id=owner_id, file_id=file_id)
    main = next((doc for doc in existing if doc.id == entry.document_id), None)
    if main is None and existing:
        main = existing[0]
    extras = [doc for doc in existing if main is None or doc.id != main.id]
    try:
        written: list[uuid.UUID] = []
        for number, part in enumerate(parts, start=1):
            title = _part_title(row.original_name, number)
            await report(10 + 80 * (number - 1) / len(parts), f"Writing part {number}")
            if number == 1:
                main = await _write(session, owner_id, row.id, main, FILES_PARENT, title, part)
                written.append(main.id)
            else:
                previous = extras.pop(0) if extras else None
                assert main is not None
                doc = await _write(session, owner_id, row.id, previous, main.path, title, part)
                written.append(doc.id)
        for surplus in extras:
            await session.execute(
                text("delete from documents where owner_id = :owner and id = :id"),
                {"owner": owner_id, "id": surplus.id},
            )
    except (documents.DocumentTooLarge, documents.InvalidPath) as problem:
        return _failed(entry, f"{row.original_name} could not be added: {problem}")
    assert main is not None
    entry.status = FileKnowledgeStatus.ready.value
    entry.error = None
    entry.document_id = main.id
    entry.ingested_sha256 = row.sha256
    entry.updated_at = utcnow()
    await session.flush()
    await report(95, "Saved")
    return {"status": "ready", "document_id": str(main.id), "parts": len(written)}


def _failed(entry: FileKnowledge, reason: str) -> dict[str, object]:
    entry.status = FileKnowledgeStatus.failed.value
    entry.error = reason
    entry.updated_at = utcnow()
    return {"status": "failed", "error": reason}


async def _write(
    session: AsyncSession,
    owner_id: uuid.UUID,
    file_id: uuid.UUID,
    current: documents.DocumentView | None,
    parent: str,
    title: str,
    content: str,
) -> documents.DocumentView:
    if current is None:
        return await documents.create_document(
            session=session,
            owner_id=owner_id,
            parent_path=parent,
            title=title,
            content=content,
            source=DocumentSource.file.value,
            source_file_id=file_id,
        )
    # Updated in place: the path (wherever the owner moved it) and the links stay.
    updated = await documents.update_document(
        session=session, owner_id=owner_id, document_id=current.id, title=title, content=content
    )
    assert updated is not None
    return updated


async def record_ingest_failure(
    *, session: AsyncSession, owner_id: uuid.UUID, file_id: uuid.UUID, reason: str
) -> None:
    """After an unexpected error, so the page shows a reason instead of "adding"."""
    entry = await _entry(session, owner_id, file_id, lock=True)
    if entry is not None:
        _failed(entry, reason)
