"""Reflex lifespan task: each server process logs through `configure_logging`."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from carmenta.observability.logs import configure_logging
from carmenta.settings import get_settings


@asynccontextmanager
async def logging_lifespan() -> AsyncIterator[None]:
    # Worker processes re-apply the server's own logging set-up when they start; this
    # runs after it, so the server's lines follow LOG_FORMAT and pass the redaction.
    configure_logging(get_settings())
    yield


@asynccontextmanager
async def quiet_collector_lifespan() -> AsyncIterator[None]:
    """Leave the objects made at start-up out of Python's garbage collection.

    The compiled pages, modules and settings live as long as the process; scanning
    them in every full collection made pauses of several milliseconds land on replies
    being streamed. Frozen, collections walk only what requests and replies create.
    """
    gc.collect()
    gc.freeze()
    yield
