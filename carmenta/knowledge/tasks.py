"""Background work of the knowledge base: chunk embeddings."""

from __future__ import annotations

from carmenta import db
from carmenta.jobs.queue import job_app
from carmenta.knowledge.embeddings import get_embedder
from carmenta.knowledge.semantic import embed_pending_chunks
from carmenta.settings import get_settings

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
