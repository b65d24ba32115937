"""Files as the rest of the app sees them: list, read, sign, delete, measure.

Every function takes the verified owner's id and filters by it: another user's file
looks exactly like a file that does not exist. Functions taking `session` run in the
caller's transaction; the caller commits.

Stored objects live under `{owner_id}/{file_id}/`: the upload at `original`, and
what processing makes (`thumbnail.webp`, `preview.webp`) beside it. A file whose
content was replaced keeps each later revision in a folder of its own,
`{owner_id}/{file_id}/r{revision}/`, so a new revision never shares a key (and so a
signed link, a cached variant or a browser cache entry) with an older one. Keys are
always derived from the owner id, file id and revision here, never from names or
stored metadata.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from carmenta.files import storage as file_storage
from carmenta.files.models import StoredFile
from carmenta.files.storage.base import StorageBackend, Transform
from carmenta.settings import Settings, get_settings
from carmenta.users.service import register_account_cleanup

logger = logging.getLogger(__name__)

ORIGINAL = "original"
THUMBNAIL = "thumbnail.webp"
PREVIEW = "preview.webp"

# Images are shown small through the store's transformations of the original.
THUMBNAIL_TRANSFORM = Transform(width=320, height=320, resize="cover", format="webp", quality=75)
# Types browsers display inline; anything else is offered as a download only.
_INLINE_TYPES = {
    "image/jpeg",
    "image/png",
    "image/webp",
    "image/gif",
    "application/pdf",
    "audio/mpeg",
    "audio/mp4",
    "audio/aac",
    "audio/wav",
    "audio/ogg",
    "audio/flac",
    "audio/webm",
}
# Formats the stores can transform; others get the thumbnail processing made.
_TRANSFORMABLE_TYPES = {"image/jpeg", "image/png", "image/webp", "image/gif"}


@dataclass(frozen=True)
class FileView:
    id: uuid.UUID
    owner_id: uuid.UUID
    name: str
    kind: str
    content_type: str
    size_bytes: int
    status: str
    error: str | None
    created_at: datetime
    metadata: dict[str, Any] = field(default_factory=dict)
    revision: int = 0


@dataclass(frozen=True)
class FileUrls:
    """Signed links, valid for settings.signed_url_ttl_seconds."""

    download: str
    preview: str | None
    thumbnail: str | None


def storage_for(settings: Settings) -> StorageBackend:
    return file_storage.get_storage(settings)


def prefix_of(owner_id: uuid.UUID, file_id: uuid.UUID) -> str:
    return f"{owner_id}/{file_id}/"


def revision_prefix(owner_id: uuid.UUID, file_id: uuid.UUID, revision: int = 0) -> str:
    """Where one revision's objects live; the first revision sits at the file's own folder."""
    if revision == 0:
        return prefix_of(owner_id, file_id)
    return f"{prefix_of(owner_id, file_id)}r{revision}/"


def key_of(
    owner_id: uuid.UUID, file_id: uuid.UUID, name: str = ORIGINAL, *, revision: int = 0
) -> str:
    return f"{revision_prefix(owner_id, file_id, revision)}{name}"


async def discard_revision(
    store: StorageBackend, *, owner_id: uuid.UUID, file_id: uuid.UUID, revision: int
) -> None:
    """Delete one revision's objects (original, derived images, cached variants).

    The first revision shares the file's folder with later ones' subfolders, so its
    objects are deleted by name rather than by prefix.
    """
    if revision == 0:
        for name in (ORIGINAL, THUMBNAIL, PREVIEW):
            await store.delete_prefix(prefix=key_of(owner_id, file_id, name))
    else:
        await store.delete_prefix(prefix=revision_prefix(owner_id, file_id, revision))


# Called in the transaction that records a file's processing outcome, so work that
# must follow it (adding the file to the knowledge base again) is queued atomically.
ProcessedListener = Callable[..., Awaitable[None]]
_processed_listeners: list[ProcessedListener] = []


def register_processed_listener(listener: ProcessedListener) -> None:
    """`listener(session=, file_id=, owner_id=, status=)` after each processing run."""
    if listener not in _processed_listeners:
        _processed_listeners.append(listener)


async def notify_processed(
    *, session: AsyncSession, file_id: uuid.UUID, owner_id: uuid.UUID, status: str
) -> None:
    for listener in list(_processed_listeners):
        await listener(session=session, file_id=file_id, owner_id=owner_id, status=status)


def _view(row: StoredFile) -> FileView:
    return FileView(
        id=row.id,
        owner_id=row.owner_id,
        name=row.original_name,
        kind=row.kind,
        content_type=row.content_type,
        size_bytes=row.size_bytes,
        status=row.status,
        error=row.error,
        created_at=row.created_at,
        metadata=dict(row.extracted_metadata or {}),
        revision=row.revision,
    )


async def list_files(*, session: AsyncSession, owner_id: uuid.UUID) -> list[FileView]:
    """The owner's files, newest first."""
    result = await session.exec(
        select(StoredFile)
        .where(col(StoredFile.owner_id) == owner_id)
        .order_by(col(StoredFile.created_at).desc(), col(StoredFile.id).desc())
    )
    return [_view(row) for row in result.all()]


async def get_file(
    *, session: AsyncSession, owner_id: uuid.UUID, file_id: uuid.UUID
) -> FileView | None:
    row = await _owned_row(session=session, owner_id=owner_id, file_id=file_id)
    return _view(row) if row is not None else None


async def _owned_row(
    *, session: AsyncSession, owner_id: uuid.UUID, file_id: uuid.UUID
) -> StoredFile | None:
    result = await session.exec(
        select(StoredFile).where(
            col(StoredFile.id) == file_id, col(StoredFile.owner_id) == owner_id
        )
    )
    return result.first()


async def extracted_text(
    *, session: AsyncSession, owner_id: uuid.UUID, file_id: uuid.UUID
) -> str | None:
    """What processing read out of the file; None while there is none (or no such file)."""
    result = await session.exec(
        select(col(StoredFile.extracted_text)).where(
            col(StoredFile.id) == file_id, col(StoredFile.owner_id) == owner_id
        )
    )
    return result.first()


async def storage_used(*, session: AsyncSession, owner_id: uuid.UUID) -> int:
    """Bytes of the owner's uploads (originals; derived images are not counted)."""
    result = await session.exec(
        select(func.coalesce(func.sum(StoredFile.size_bytes), 0)).where(
            col(StoredFile.owner_id) == owner_id
        )
    )
    return int(result.one())


async def delete_file(*, session: AsyncSession, owner_id: uuid.UUID, file_id: uuid.UUID) -> bool:
    """Delete the owner's file: its row, its original and everything derived from it.

    False when there is no such file of theirs; nothing changes then. The row goes
    first (in the caller's transaction); if the store then fails, the error reaches
    the caller, whose rollback keeps the row so deleting again finishes the job.
    """
    result = await session.exec(
        delete(StoredFile)
        .where(col(StoredFile.id) == file_id, col(StoredFile.owner_id) == owner_id)
        .returning(col(StoredFile.id))
    )
    if result.first() is None:
        return False
    await storage_for(get_settings()).delete_prefix(prefix=prefix_of(owner_id, file_id))
    return True


async def signed_urls(
    *, owner_id: uuid.UUID, file: FileView, settings: Settings
) -> FileUrls | None:
    """Links to the file for its owner; None when `file` is not theirs."""
    if file.owner_id != owner_id:
        return None
    store = storage_for(settings)
    ttl = settings.signed_url_ttl_seconds
    original = key_of(owner_id, file.id, revision=file.revision)
    download = await store.signed_url(key=original, expires_in=ttl, download_name=file.name)
    preview: str | None = None
    thumbnail: str | None = None
    # Processing records which derived objects it made; their keys are derived here.
    has_thumbnail = bool(file.metadata.get("thumbnail_key"))
    if file.content_type in _INLINE_TYPES:
        preview = await store.signed_url(key=original, expires_in=ttl)
    elif file.kind == "image" and file.metadata.get("preview_key"):
        # HEIC: most browsers cannot show it, so processing made a WebP to preview.
        preview = await store.signed_url(
            key=key_of(owner_id, file.id, PREVIEW, revision=file.revision), expires_in=ttl
        )
    if file.content_type in _TRANSFORMABLE_TYPES and file.status != "failed":
        thumbnail = await store.signed_url(
            key=original, expires_in=ttl, transform=THUMBNAIL_TRANSFORM
        )
    elif has_thumbnail:
        thumbnail = await store.signed_url(
            key=key_of(owner_id, file.id, THUMBNAIL, revision=file.revision), expires_in=ttl
        )
    return FileUrls(download=download, preview=preview, thumbnail=thumbnail)


async def delete_account_files(*, session: AsyncSession, user_id: uuid.UUID) -> None:
    """Account deletion: every stored object of the user (their rows cascade)."""
    await storage_for(get_settings()).delete_prefix(prefix=f"{user_id}/")


# Not best effort: an account must not disappear while its files stay in the store.
register_account_cleanup(delete_account_files, best_effort=False)


# An object is an orphan when no row names it this long after it was written: long
# enough that an upload still between storing and committing is never mistaken for one.
ORPHAN_GRACE = timedelta(hours=1)
STALE_TEMP_AGE = timedelta(days=1)


async def sweep_orphans(*, settings: Settings, now: datetime | None = None) -> dict[str, int]:
    """Delete stored folders whose row is gone, and old scratch files.

    An upload stores its object before its row commits, so a crash between the two
    leaves an object no row names; this finds and removes such objects.
    """
    from carmenta import db
    from carmenta.files.processing import temp_root

    now = now or datetime.now(UTC)
    store = storage_for(settings)
    candidates: list[tuple[str, uuid.UUID]] = []
    async for prefix, changed in store.file_folders():
        _, _, name = prefix.partition("/")
        try:
            file_id = uuid.UUID(name)
        except ValueError:
            continue
        if now - changed >= ORPHAN_GRACE:
            candidates.append((prefix, file_id))
    removed = 0
    if candidates:
        async with db.session_scope() as session:
            known = set(
                (
                    await session.execute(
                        select(StoredFile.id).where(
                            col(StoredFile.id).in_([file_id for _, file_id in candidates])
                        )
                    )
                ).scalars()
            )
        for prefix, file_id in candidates:
            if file_id not in known:
                await store.delete_prefix(prefix=prefix)
                removed += 1
    stale = 0
    for entry in temp_root(settings).iterdir():
        modified = datetime.fromtimestamp(entry.stat().st_mtime, UTC)
        if entry.is_file() and now - modified >= STALE_TEMP_AGE:
            entry.unlink(missing_ok=True)
            stale += 1
    return {"orphans_removed": removed, "stale_temp_files_removed": stale}
