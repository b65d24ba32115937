"""The chat's part of the server's life: before serving, replies a stopped server left
`streaming` are marked interrupted, the clients of the server's model keys are opened
and the embedding model is loaded; on shutdown, replies still being written are saved
as interrupted."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from carmenta.chat.llm.catalog import open_environment_clients
from carmenta.chat.service import get_engine
from carmenta.conversations import service as conversations
from carmenta.db import session_scope
from carmenta.knowledge.embeddings import get_embedder
from carmenta.settings import get_settings

logger = logging.getLogger(__name__)

# A reply saves at least once a second; one idle this long has no writer left. Another
# instance's live replies are younger than this.
STALE_AFTER = timedelta(seconds=15)


async def _interrupt_stale_replies() -> None:
    async with session_scope() as session:
        count = await conversations.mark_stale_replies_interrupted(
            session=session, idle_for=STALE_AFTER
        )
        await session.commit()
    if count:
        logger.info("marked %d replies interrupted by the last shutdown", count)


def _warm_embedder() -> None:
    # The first question otherwise waits for the model to load.
    get_embedder(get_settings()).embed(["warm up"])


@asynccontextmanager
async def chat_lifespan() -> AsyncIterator[None]:
    try:
        await _interrupt_stale_replies()
    except Exception:
        logger.exception("could not mark interrupted replies")
    try:
        open_environment_clients(get_settings())
    except Exception:
        logger.exception("could not open the model clients")
    warm = asyncio.create_task(asyncio.to_thread(_warm_embedder), name="carmenta-warm-embedder")
    try:
        yield
    finally:
        warm.cancel()
        interrupted = await get_engine().shutdown()
        if interrupted:
            logger.info("saved %d replies in flight as interrupted", interrupted)
