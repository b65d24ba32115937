"""Data exports: ask for one, follow it, download it, and let it expire.

An export is a row in `data_exports` and a job that writes the zip (see
`carmenta.exports.archive`) and stores it at `{owner_id}/exports/{export_id}.zip`,
inside the owner's prefix, so deleting the account deletes it too. The zip is
reached only through a signed link made for its owner, and is deleted once the
export expires (EXPORT_RETENTION_HOURS).

Functions taking `session` run in the caller's transaction; the caller commits.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import delete, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from carmenta import db
from carmenta.exports.archive import ArchiveSummary, Progress, write_archive
from carmenta.exports.models import DataExport, ExportStatus
from carmenta.files import storage as file_storage
from carmenta.jobs import service as jobs_service
from carmenta.settings import Settings

logger = logging.getLogger(__name__)

BUILD_TASK = "exports.build"
EXPORTS_QUEUE = "exports"
ZIP_TYPE = "application/zip"
# What a person is told when the build failed; the cause goes to the log only.
FAILED_MESSAGE = "The export could not be made. Try again in a moment."


@dataclass(frozen=True)
class ExportView:
    id: uuid.UUID
    status: ExportStatus
    percent: int
    step: str | None
    error: str | None
    size_bytes: int
    created_at: datetime
    expires_at: datetime

    @property
    def building(self) -> bool:
        return self.status is ExportStatus.building


def export_key(owner_id: uuid.UUID, export_id: uuid.UUID) -> str:
    return f"{owner_id}/exports/{export_id}.zip"


def _retention(settings: Settings) -> timedelta:
    return timedelta(hours=settings.export_retention_hours)


async def request_export(
    *, session: AsyncSession, owner_id: uuid.UUID, settings: Settings
) -> ExportView:
    """Start an export of everything the owner keeps; one already building is reused."""
    building = await _latest(session=session, owner_id=owner_id, status=ExportStatus.building)
    if building is not None:
        view = await _view(session=session, owner_id=owner_id, export=building)
        if view.building:
            return view
    now = datetime.now(UTC)
    export = DataExport(owner_id=owner_id, expires_at=now + _retention(settings))
    session.add(export)
    await session.flush()
    export.job_id = await jobs_service.enqueue(
        task_name=BUILD_TASK,
        task_kwargs={"owner_id": str(owner_id), "export_id": str(export.id)},
        owner_id=owner_id,
        session=session,
    )
    await session.flush()
    return await _view(session=session, owner_id=owner_id, export=export)


async def latest_export(*, session: AsyncSession, owner_id: uuid.UUID) -> ExportView | None:
    """The owner's newest export that has not expired, as it stands now."""
    export = await _latest(session=session, owner_id=owner_id)
    if export is None:
        return None
    return await _view(session=session, owner_id=owner_id, export=export)


async def _latest(
    *, session: AsyncSession, owner_id: uuid.UUID, status: ExportStatus | None = None
) -> DataExport | None:
    query = select(DataExport).where(
        col(DataExport.owner_id) == owner_id, col(DataExport.expires_at) > datetime.now(UTC)
    )
    if status is not None:
        query = query.where(col(DataExport.status) == status.value)
    result = await session.exec(query.order_by(col(DataExport.created_at).desc()).limit(1))
    return result.first()


async def _view(*, session: AsyncSession, owner_id: uuid.UUID, export: DataExport) -> ExportView:
    status = ExportStatus(export.status)
    percent = 100 if status is ExportStatus.ready else 0
    step: str | None = None
    error = export.error
    if status is ExportStatus.building and export.job_id is not None:
        job = await jobs_service.get_job(owner_id=owner_id, job_id=export.job_id, session=session)
        if job is None or job.status in (
            jobs_service.JobStatus.failed,
            jobs_service.JobStatus.cancelled,
        ):
            # The job ended without reaching the point where it records its outcome.
            status, error = ExportStatus.failed, FAILED_MESSAGE
        else:
            percent, step = job.percent, job.message
    return ExportView(
        id=export.id,
        status=status,
        percent=min(percent, 99) if status is ExportStatus.building else percent,
        step=step,
        error=error,
        size_bytes=export.size_bytes,
        created_at=export.created_at,
        expires_at=export.expires_at,
    )


async def download_url(
    *, session: AsyncSession, owner_id: uuid.UUID, export_id: uuid.UUID, settings: Settings
) -> str | None:
    """A signed link to the owner's finished export; None if it is not theirs or not ready."""
    export = (
        await session.exec(
            select(DataExport).where(
                col(DataExport.id) == export_id,
                col(DataExport.owner_id) == owner_id,
                col(DataExport.status) == ExportStatus.ready.value,
            )
        )
    ).first()
    now = datetime.now(UTC)
    if export is None or export.object_key is None or export.expires_at <= now:
        return None
    # The link never outlives the export itself.
    remaining = int((export.expires_at - now).total_seconds())
    expires_in = max(60, min(settings.signed_url_ttl_seconds, remaining))
    return await file_storage.get_storage(settings).signed_url(
        key=export_key(owner_id, export.id),
        expires_in=expires_in,
        download_name=f"carmenta-export-{export.created_at:%Y-%m-%d}.zip",
    )


async def write_owner_archive(
    *, owner_id: uuid.UUID, path: Path, settings: Settings, progress: Progress | None = None
) -> ArchiveSummary:
    """Write the owner's zip to a local file (the export job, and operators' exports)."""
    async with db.session_scope() as session:
        return await write_archive(
            session=session,
            owner_id=owner_id,
            store=file_storage.get_storage(settings),
            path=path,
            progress=progress,
        )


async def build_export(
    *,
    owner_id: uuid.UUID,
    export_id: uuid.UUID,
    settings: Settings,
    progress: Progress | None = None,
) -> dict[str, object]:
    """Write, store and record the export (the job's work). Commits as it goes."""
    from carmenta.files.processing import temp_root

    async with db.session_scope() as session:
        export = (
            await session.exec(
                select(DataExport).where(
                    col(DataExport.id) == export_id, col(DataExport.owner_id) == owner_id
                )
            )
        ).first()
    if export is None or export.status != ExportStatus.building.value:
        return {"skipped": True}

    scratch = temp_root(settings) / f"export-{export_id}.zip"
    store = file_storage.get_storage(settings)
    key = export_key(owner_id, export_id)
    try:
        summary = await write_owner_archive(
            owner_id=owner_id, path=scratch, settings=settings, progress=progress
        )
        if progress is not None:
            await progress(97, "Saving")
        size = scratch.stat().st_size
        await store.put_file(key=key, path=scratch, content_type=ZIP_TYPE)
        now = datetime.now(UTC)
        async with db.session_scope() as session:
            result = await session.exec(
                update(DataExport)
                .where(col(DataExport.id) == export_id, col(DataExport.owner_id) == owner_id)
                .values(
                    status=ExportStatus.ready.value,
                    object_key=key,
                    size_bytes=size,
                    completed_at=now,
                    expires_at=now + _retention(settings),
                    updated_at=now,
                )
            )
        if not result.rowcount:
            # The account (or the export) was deleted while the zip was being written.
            await store.delete_prefix(prefix=key)
            return {"skipped": True}
    except Exception:
        logger.exception("export %s failed", export_id)
        async with db.session_scope() as session:
            await session.exec(
                update(DataExport)
                .where(col(DataExport.id) == export_id)
                .values(status=ExportStatus.failed.value, error=FAILED_MESSAGE)
            )
        raise
    finally:
        scratch.unlink(missing_ok=True)
    return {"size_bytes": size, **asdict(summary)}


async def purge_expired_exports(*, settings: Settings, now: datetime | None = None) -> int:
    """Delete expired exports: their zips first, then their rows. Returns how many."""
    now = now or datetime.now(UTC)
    async with db.session_scope() as session:
        expired = (
            await session.exec(
                select(DataExport.id, DataExport.owner_id).where(col(DataExport.expires_at) <= now)
            )
        ).all()
    store = file_storage.get_storage(settings)
    for export_id, owner_id in expired:
        await store.delete_prefix(prefix=export_key(owner_id, export_id))
    if expired:
        async with db.session_scope() as session:
            await session.exec(
                delete(DataExport).where(col(DataExport.id).in_([row[0] for row in expired]))
            )
    return len(expired)


# For the account page, which has no session of its own ------------------------------


@dataclass(frozen=True)
class ExportStanding:
    export: ExportView | None
    download_url: str | None


async def export_standing(*, owner_id: uuid.UUID, settings: Settings) -> ExportStanding:
    """The owner's latest export and, once it is ready, a fresh signed link to it."""
    async with db.session_scope() as session:
        view = await latest_export(session=session, owner_id=owner_id)
        url = None
        if view is not None and view.status is ExportStatus.ready:
            url = await download_url(
                session=session, owner_id=owner_id, export_id=view.id, settings=settings
            )
    return ExportStanding(export=view, download_url=url)


async def start_export(*, owner_id: uuid.UUID, settings: Settings) -> ExportView:
    async with db.session_scope() as session:
        return await request_export(session=session, owner_id=owner_id, settings=settings)
