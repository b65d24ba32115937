"""Background work of exports: build a person's zip, and delete expired ones."""

from __future__ import annotations

import uuid
from typing import Any

from procrastinate import JobContext

from carmenta.exports import service as exports_service
from carmenta.jobs.queue import job_app
from carmenta.jobs.service import report_progress
from carmenta.settings import get_settings

PURGE_EXPIRED_CRON = "41 * * * *"  # hourly


@job_app.task(
    name=exports_service.BUILD_TASK, queue=exports_service.EXPORTS_QUEUE, pass_context=True
)
async def build(context: JobContext, *, owner_id: str, export_id: str) -> dict[str, Any]:
    job_id = context.job.id

    async def progress(percent: float, message: str) -> None:
        if job_id is not None:
            await report_progress(job_id=job_id, percent=percent, message=message)

    return await exports_service.build_export(
        owner_id=uuid.UUID(owner_id),
        export_id=uuid.UUID(export_id),
        settings=get_settings(),
        progress=progress,
    )


@job_app.periodic(cron=PURGE_EXPIRED_CRON, periodic_id="hourly")
@job_app.task(
    name="exports.purge_expired", queue="maintenance", queueing_lock="exports.purge_expired"
)
async def purge_expired(timestamp: int) -> dict[str, int]:
    return {"deleted": await exports_service.purge_expired_exports(settings=get_settings())}
