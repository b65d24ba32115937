"""The chat's periodic work: replies whose server stopped mid-stream become interrupted.

A reply saves at least once a second while it streams, so one that has not been saved
for STALE_AFTER has no writer left (its instance was killed). Without this, such a reply
would stay `streaming` until some instance restarts.
"""

from __future__ import annotations

import logging
import uuid

from procrastinate import JobContext

from carmenta.chat import research
from carmenta.chat.lifespan import STALE_AFTER
from carmenta.conversations import service as conversations
from carmenta.conversations.models import MessageStatus
from carmenta.db import session_scope
from carmenta.jobs.queue import job_app
from carmenta.jobs.service import report_progress
from carmenta.jobs.tasks import MAINTENANCE_QUEUE
from carmenta.knowledge.embeddings import get_embedder
from carmenta.settings import get_settings

logger = logging.getLogger(__name__)


@job_app.periodic(cron="* * * * *", periodic_id="every-minute")
@job_app.task(
    name="chat.interrupt_stale_replies",
    queue=MAINTENANCE_QUEUE,
    queueing_lock="chat.interrupt_stale_replies",
)
async def interrupt_stale_replies(timestamp: int) -> dict[str, int]:
    async with session_scope() as session:
        count = await conversations.mark_stale_replies_interrupted(
            session=session, idle_for=STALE_AFTER
        )
        await session.commit()
    return {"interrupted": count}


@job_app.task(name=research.RESEARCH_TASK, queue=research.RESEARCH_QUEUE, pass_context=True)
async def research_task(
    context: JobContext, *, owner_id: str, message_id: str, option_id: str | None = None
) -> dict[str, object]:
    """A research reply (see carmenta.chat.research); cancelling the job stops it."""
    job_id = context.job.id
    owner, message = uuid.UUID(owner_id), uuid.UUID(message_id)
    settings = get_settings()

    async def progress(percent: float, step: str) -> None:
        if job_id is not None:
            await report_progress(job_id=job_id, percent=percent, message=step)

    try:
        report = await research.run_research(
            settings=settings,
            owner_id=owner,
            message_id=message,
            embedder=get_embedder(settings),
            progress=progress,
            model=await research.research_model(
                settings=settings, owner_id=owner, option_id=option_id
            ),
        )
    except Exception:
        logger.exception("research for reply %s failed", message_id)
        async with session_scope() as session:
            stored = await conversations.get_message(
                session=session, owner_id=owner, message_id=message
            )
            await conversations.finish_reply(
                session=session,
                owner_id=owner,
                message_id=message,
                content=stored.content if stored else "",
                status=MessageStatus.failed,
                error="The research stopped with an error. Try again.",
            )
            await session.commit()
        raise
    return research.job_result(report)
