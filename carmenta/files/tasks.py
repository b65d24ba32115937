"""The background task that processes each upload (see carmenta.files.processing)."""

from __future__ import annotations

import uuid
from typing import Any

from procrastinate import JobContext, RetryStrategy

from carmenta.files.processing import TransientProcessingError, process_file
from carmenta.jobs.queue import job_app
from carmenta.jobs.service import report_progress
from carmenta.settings import get_settings

PROCESS_TASK = "files.process"
# Retries after a store or speech-service outage: 10 s, then 100 s later.
MAX_RETRIES = 2


@job_app.task(
    name=PROCESS_TASK,
    pass_context=True,
    retry=RetryStrategy(
        max_attempts=MAX_RETRIES,
        exponential_wait=10,
        retry_exceptions={TransientProcessingError},
    ),
)
async def process(context: JobContext, *, file_id: str) -> dict[str, Any]:
    job_id = context.job.id

    async def progress(percent: float, message: str) -> None:
        if job_id is not None:
            await report_progress(job_id=job_id, percent=percent, message=message)

    return await process_file(
        file_id=uuid.UUID(file_id),
        settings=get_settings(),
        progress=progress,
        # The last try records the failure on the file instead of raising.
        final_attempt=context.job.attempts >= MAX_RETRIES,
    )


@job_app.periodic(cron="23 * * * *", periodic_id="hourly")
@job_app.task(name="files.sweep_orphans", queue="maintenance", queueing_lock="files.sweep_orphans")
async def sweep_orphans(timestamp: int) -> dict[str, int]:
    """Hourly: stored objects without a row (a crash mid-upload) and stale scratch files."""
    from carmenta.files.service import sweep_orphans as sweep

    return await sweep(settings=get_settings())
