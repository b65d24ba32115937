"""Is the app able to serve? Checked by load balancers and by `make run`."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from carmenta import db

DATABASE_TIMEOUT_SECONDS = 3.0


@dataclass(frozen=True)
class ComponentHealth:
    ok: bool
    latency_ms: float | None = None
    error: str | None = None


async def check_database() -> ComponentHealth:
    started = time.perf_counter()
    try:
        await asyncio.wait_for(db.ping(), timeout=DATABASE_TIMEOUT_SECONDS)
    except TimeoutError:
        return ComponentHealth(ok=False, error="the database did not answer in time")
    except Exception as error:  # any failure means unhealthy; say what kind, not details
        return ComponentHealth(ok=False, error=_describe(error))
    return ComponentHealth(ok=True, latency_ms=round((time.perf_counter() - started) * 1000, 2))


def _describe(error: Exception) -> str:
    # Driver messages can contain host names and user names; keep the class only.
    name = type(error).__name__
    original = getattr(error, "orig", None)
    if original is not None:
        name = type(original).__name__
    return f"database unreachable ({name})"
