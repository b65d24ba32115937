"""Background work of memory: what to remember from each finished exchange."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from sqlalchemy import text
from sqlmodel.ext.asyncio.session import AsyncSession

from carmenta import db
from carmenta.chat.llm import ModelError
from carmenta.chat.llm.catalog import background_model
from carmenta.jobs import service as jobs_service
from carmenta.jobs.queue import job_app
from carmenta.knowledge.embeddings import get_embedder
from carmenta.memory import service as memory_service
from carmenta.memory.extraction import extract_explicit
from carmenta.memory.model_extraction import ExtractedMemory, extract_with_model
from carmenta.settings import get_settings

logger = logging.getLogger(__name__)

EXTRACT_TASK = "memory.extract_exchange"


async def enqueue_memory_extraction(
    *,
    session: AsyncSession,
    owner_id: uuid.UUID,
    user_message_id: uuid.UUID,
    assistant_message_id: uuid.UUID,
) -> int:
    """Queue the extraction in the caller's transaction; returns the job id."""
    return await jobs_service.enqueue(
        task_name=EXTRACT_TASK,
        task_kwargs={
            "owner_id": str(owner_id),
            "user_message_id": str(user_message_id),
            "assistant_message_id": str(assistant_message_id),
        },
        owner_id=owner_id,
        session=session,
    )


async def _exchange(
    session: AsyncSession,
    owner_id: uuid.UUID,
    user_message_id: uuid.UUID,
    assistant_message_id: uuid.UUID,
) -> tuple[str, str] | None:
    rows = (
        await session.execute(
            text(
                "select id, role, content, conversation_id from messages"
                " where owner_id = :owner and id in (:user_message, :assistant_message)"
            ),
            {
                "owner": owner_id,
                "user_message": user_message_id,
                "assistant_message": assistant_message_id,
            },
        )
    ).all()
    by_id = {row.id: row for row in rows}
    user_row = by_id.get(user_message_id)
    assistant_row = by_id.get(assistant_message_id)
    if user_row is None or assistant_row is None:
        return None
    if user_row.role != "user" or assistant_row.role != "assistant":
        return None
    if user_row.conversation_id != assistant_row.conversation_id:
        return None
    return user_row.content, assistant_row.content


@job_app.task(name=EXTRACT_TASK, queue="memory")
async def extract_exchange(
    *, owner_id: str, user_message_id: str, assistant_message_id: str
) -> dict[str, Any]:
    """Remember what one exchange taught about its owner (a model's judgement when the
    operator configured one, else only what the person asked for in so many words)."""
    owner = uuid.UUID(owner_id)
    user_id, assistant_id = uuid.UUID(user_message_id), uuid.UUID(assistant_message_id)
    settings = get_settings()
    async with db.session_scope() as session:
        exchange = await _exchange(session, owner, user_id, assistant_id)
    if exchange is None:
        # Deleted since, or not this person's: nothing to learn.
        return {"skipped": "no such exchange"}
    user_message, assistant_reply = exchange

    method = "offline"
    found: list[ExtractedMemory] = []
    chosen = await background_model(settings=settings)
    if chosen is not None:
        option, credentials = chosen
        try:
            found = await extract_with_model(
                option=option,
                credentials=credentials,
                user_message=user_message,
                assistant_reply=assistant_reply,
            )
            method = "model"
        except ModelError as error:
            logger.warning("memory extraction fell back offline: %s (%s)", error.kind, option.id)
    if method == "offline":
        found = [ExtractedMemory(proposal, 1.0) for proposal in extract_explicit(user_message)]

    embedder = get_embedder(settings)
    actions: dict[str, int] = {}
    async with db.session_scope() as session:
        for memory in found:
            try:
                _, action = await memory_service.remember(
                    session=session,
                    owner_id=owner,
                    proposal=memory.proposal,
                    embedder=embedder,
                    source="conversation",
                    source_message_id=user_id,
                    confidence=memory.confidence,
                )
            except memory_service.MemoryError:
                continue
            actions[action] = actions.get(action, 0) + 1
    return {"method": method, "proposed": len(found), **actions}
