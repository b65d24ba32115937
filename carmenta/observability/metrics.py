"""Prometheus metrics: HTTP requests, jobs, chat streams; `GET /metrics` behind a token.

The counters live in this process. With several server processes on one machine, set
PROMETHEUS_MULTIPROC_DIR (prometheus-client's multiprocess mode) and every process
writes there; the endpoint then adds them all up.
"""

from __future__ import annotations

import hmac
import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy import text
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from carmenta.settings import get_settings

REGISTRY = CollectorRegistry(auto_describe=True)

HTTP_REQUESTS = Counter(
    "carmenta_http_requests",
    "HTTP requests answered, by route template and status.",
    ["method", "route", "status"],
    registry=REGISTRY,
)
HTTP_DURATION = Histogram(
    "carmenta_http_request_duration_seconds",
    "Time from a request's arrival to the end of its response, by route template.",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
CHAT_STREAMS_IN_FLIGHT = Gauge(
    "carmenta_chat_streams_in_flight",
    "Replies this process is writing right now.",
    multiprocess_mode="livesum",
    registry=REGISTRY,
)
CHAT_STREAMS_STARTED = Counter(
    "carmenta_chat_streams_started", "Replies started.", registry=REGISTRY
)
CHAT_STREAMS_FINISHED = Counter(
    "carmenta_chat_streams_finished",
    "Replies ended, by how they ended (complete, stopped, failed, interrupted, waiting).",
    ["status"],
    registry=REGISTRY,
)
CHAT_TIME_TO_FIRST_TOKEN = Histogram(
    "carmenta_chat_time_to_first_token_seconds",
    "Time from a reply's start to its first text.",
    buckets=(0.1, 0.25, 0.5, 1, 2, 3, 5, 8, 13, 20, 30, 60),
    registry=REGISTRY,
)

# Procrastinate's job states, shown even when no job is in them.
JOB_STATUSES = ("todo", "doing", "succeeded", "failed", "cancelled", "aborted")


def chat_stream_started() -> None:
    CHAT_STREAMS_STARTED.inc()
    CHAT_STREAMS_IN_FLIGHT.inc()


def chat_first_token(seconds: float) -> None:
    CHAT_TIME_TO_FIRST_TOKEN.observe(max(seconds, 0.0))


def chat_stream_ended(status: str) -> None:
    CHAT_STREAMS_IN_FLIGHT.dec()
    CHAT_STREAMS_FINISHED.labels(status=status).inc()


async def job_counts() -> dict[tuple[str, str], int]:
    """(queue, status) -> jobs, read from the queue's own table."""
    from carmenta.db import session_scope

    async with session_scope() as session:
        rows = await session.execute(
            text(
                "select queue_name, status::text, count(*) from procrastinate_jobs "
                "group by queue_name, status"
            )
        )
        return {(queue, status): count for queue, status, count in rows}


def _jobs_exposition(counts: dict[tuple[str, str], int]) -> bytes:
    registry = CollectorRegistry()
    gauge = Gauge(
        "carmenta_jobs",
        "Jobs in the queue table by queue and status (todo = queued, doing = running).",
        ["queue", "status"],
        registry=registry,
    )
    queues = {queue for queue, _ in counts} or {"default"}
    for queue in sorted(queues):
        for status in JOB_STATUSES:
            gauge.labels(queue=queue, status=status).set(counts.get((queue, status), 0))
    for (queue, status), count in counts.items():
        gauge.labels(queue=queue, status=status).set(count)
    return generate_latest(registry)


def _process_exposition() -> bytes:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest(REGISTRY)


def _authorized(request: Request) -> bool:
    expected = get_settings().metrics_token
    if expected is None:
        return False
    authorization = request.headers.get("authorization", "")
    scheme, _, presented = authorization.partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        return False
    return hmac.compare_digest(presented.strip().encode(), expected.get_secret_value().encode())


async def metrics_endpoint(request: Request) -> Response:
    """Prometheus text format; 404 without the right token, as if there were no such page."""
    if not _authorized(request):
        return PlainTextResponse("Not Found", status_code=404)
    body = _process_exposition()
    try:
        body += _jobs_exposition(await job_counts())
    except Exception:  # the database is down: serve what this process knows
        import logging

        logging.getLogger(__name__).warning("job counts unavailable for /metrics", exc_info=True)
    return Response(body, media_type=CONTENT_TYPE_LATEST, headers={"Cache-Control": "no-store"})
