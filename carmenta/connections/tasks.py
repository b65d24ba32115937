"""The background job that keeps OAuth connections alive between uses."""

from __future__ import annotations

from carmenta.connections.service import refresh_expiring_connections
from carmenta.jobs.queue import job_app
from carmenta.jobs.tasks import MAINTENANCE_QUEUE

REFRESH_TOKENS_TASK = "connections.refresh_expiring_tokens"
REFRESH_TOKENS_CRON = "*/5 * * * *"  # every 5 minutes


# Tokens expiring within 15 minutes are renewed every 5 minutes, so each one gets
# at least two chances before it lapses, even if nobody uses the connection.
@job_app.periodic(cron=REFRESH_TOKENS_CRON, periodic_id="every-five-minutes")
@job_app.task(
    name=REFRESH_TOKENS_TASK,
    queue=MAINTENANCE_QUEUE,
    queueing_lock=REFRESH_TOKENS_TASK,
)
async def refresh_expiring_tokens(timestamp: int) -> dict[str, int]:
    summary = await refresh_expiring_connections()
    return {
        "refreshed": summary.refreshed,
        "already_fresh": summary.already_fresh,
        "needs_reauth": summary.needs_reauth,
        "failed": summary.failed,
        "skipped": summary.skipped,
    }
