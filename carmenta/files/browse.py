"""What the Files page shows: a user's files with signed links, in one transaction."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from carmenta import db
from carmenta.files import service as files_service
from carmenta.settings import Settings


@dataclass(frozen=True)
class FileCard:
    id: str
    name: str
    kind: str
    content_type: str
    size_label: str
    status: str
    error: str
    created: str
    thumbnail_url: str
    preview_url: str
    download_url: str
    details: str


def size_label(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    if size < 1024 * 1024:
        return f"{size / 1024:.0f} KB"
    return f"{size / (1024 * 1024):.1f} MB"


def _details(kind: str, metadata: dict) -> str:
    parts = []
    if metadata.get("width") and metadata.get("height"):
        parts.append(f"{metadata['width']}×{metadata['height']}")
    if metadata.get("page_count"):
        count = metadata["page_count"]
        parts.append(f"{count} page{'s' if count != 1 else ''}")
    if metadata.get("duration_seconds"):
        seconds = round(float(metadata["duration_seconds"]))
        parts.append(f"{seconds // 60}:{seconds % 60:02d}")
    return " · ".join(parts)


async def file_cards(*, owner_id: uuid.UUID, settings: Settings) -> list[FileCard]:
    async with db.session_scope() as session:
        files = await files_service.list_files(session=session, owner_id=owner_id)
    cards = []
    for file in files:
        urls = await files_service.signed_urls(owner_id=owner_id, file=file, settings=settings)
        cards.append(
            FileCard(
                id=str(file.id),
                name=file.name,
                kind=file.kind,
                content_type=file.content_type,
                size_label=size_label(file.size_bytes),
                status=file.status,
                error=file.error or "",
                created=file.created_at.strftime("%d %b %Y, %H:%M"),
                thumbnail_url=(urls.thumbnail if urls and urls.thumbnail else ""),
                preview_url=(urls.preview if urls and urls.preview else ""),
                download_url=(urls.download if urls else ""),
                details=_details(file.kind, file.metadata or {}),
            )
        )
    return cards


async def remove_file(*, owner_id: uuid.UUID, file_id: str) -> bool:
    try:
        parsed = uuid.UUID(file_id)
    except (ValueError, TypeError):
        return False
    async with db.session_scope() as session:
        return await files_service.delete_file(session=session, owner_id=owner_id, file_id=parsed)
