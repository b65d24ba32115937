"""What the Files page shows and does about the knowledge base, one transaction each."""

from __future__ import annotations

import uuid

from carmenta import db
from carmenta.knowledge import file_documents

KNOWLEDGE_PAGE = "/knowledge"


def _parsed(file_id: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(file_id)
    except (ValueError, TypeError):
        return None


def document_url(document_id: uuid.UUID) -> str:
    return f"{KNOWLEDGE_PAGE}?doc={document_id}"


async def knowledge_fields(*, owner_id: uuid.UUID) -> dict[str, dict[str, str]]:
    """Per file id (as text): its knowledge state, progress, reason and link."""
    async with db.session_scope() as session:
        states = await file_documents.knowledge_states(session=session, owner_id=owner_id)
    return {
        str(file_id): {
            "knowledge_state": view.state,
            "knowledge_percent": str(view.percent),
            "knowledge_message": view.message,
            "knowledge_error": view.error,
            "knowledge_url": document_url(view.document_id) if view.document_id else "",
        }
        for file_id, view in states.items()
    }


def empty_fields() -> dict[str, str]:
    return {
        "knowledge_state": "none",
        "knowledge_percent": "0",
        "knowledge_message": "",
        "knowledge_error": "",
        "knowledge_url": "",
    }


async def add_to_knowledge(*, owner_id: uuid.UUID, file_id: str) -> str:
    """Empty once the file is (being) added; otherwise why not, for its owner."""
    parsed = _parsed(file_id)
    if parsed is None:
        return "That file no longer exists."
    try:
        async with db.session_scope() as session:
            view = await file_documents.add_file_to_knowledge(
                session=session, owner_id=owner_id, file_id=parsed
            )
    except file_documents.CannotAddFile as refusal:
        return str(refusal)
    return "" if view is not None else "That file no longer exists."


async def remove_from_knowledge(*, owner_id: uuid.UUID, file_id: str) -> bool:
    parsed = _parsed(file_id)
    if parsed is None:
        return False
    async with db.session_scope() as session:
        return await file_documents.remove_file_from_knowledge(
            session=session, owner_id=owner_id, file_id=parsed
        )
