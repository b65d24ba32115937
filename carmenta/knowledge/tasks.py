"""Background work of the knowledge base: chunk embeddings, files added as documents."""

from __future__ import annotations

import logging
import uuid

from procrastinate import JobContext

from carmenta import db
from carmenta.jobs.queue import job_app
from carmenta.jobs.service import report_progress
from carmenta.knowledge import file_documents
from carmenta.knowledge.embeddings import get_embedder
from carmenta.knowledge.semantic import embed_pending_chunks
from carmenta.settings import get_settings

logger = logging.getLogger(__name__)

# Upper bound of one run, so a huge backlog is worked off in several jobs.
MAX_BATCHES_PER_RUN = 50


@job_app.periodic(cron="* * * * *", periodic_id="every-minute")
@job_app.task(
    name="knowledge.embed_chunks", queue="embeddings", queueing_lock="knowledge.embed_chunks"
)
async def embed_chunks(timestamp: int | None = None) -> dict[str, int]:
    """Embed the chunks still waiting for one, a batch per transaction."""
    embedder = get_embedder(get_settings())
    embedded = 0
    for _ in range(MAX_BATCHES_PER_RUN):
        async with db.session_scope() as session:
            done = await embed_pending_chunks(session=session, embedder=embedder)
        embedded += done
        if not done:
            break
    return {"embedded": embedded}


@job_app.task(name=file_documents.INGEST_TASK, pass_context=True)
async def ingest_file(context: JobContext, *, file_id: str, owner_id: str) -> dict[str, object]:
    """A file's extracted text into its knowledge documents (see file_documents)."""
    job_id = context.job.id
    file_uuid, owner_uuid = uuid.UUID(file_id), uuid.UUID(owner_id)

    async def progress(percent: float, message: str) -> None:
        if job_id is not None:
            await report_progress(job_id=job_id, percent=percent, message=message)

    try:
        async with db.session_scope() as session:
            return await file_documents.ingest_file(
                session=session, owner_id=owner_uuid, file_id=file_uuid, progress=progress
            )
    except Exception:
        logger.exception("adding file %s to the knowledge base failed", file_id)
        async with db.session_scope() as session:
            await file_documents.record_ingest_failure(
                session=session,
                owner_id=owner_uuid,
                file_id=file_uuid,
                reason="Something went wrong while adding this file. Try again in a moment.",
            )
        raise
