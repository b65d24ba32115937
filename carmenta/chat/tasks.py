"""The chat's periodic work: replies whose server stopped mid-stream become interrupted.

A reply saves at least once a second while it streams, so one that has not been saved
for STALE_AFTER has no writer left (its instance was killed). Without this, such a reply
would stay `streaming` until some instance restarts.
"""

from __future__ import annotations

from carmenta.chat.lifespan import STALE_AFTER
from carmenta.conversations import service as conversations
from carmenta.db import session_scope
from carmenta.jobs.queue import job_app
from carmenta.jobs.tasks import MAINTENANCE_QUEUE


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
