"""What the thread shows of a conversation: plain data for the page, no Reflex."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from sqlmodel.ext.asyncio.session import AsyncSession

from carmenta.chat.concierge import describe_summary
from carmenta.conversations import service as conversations
from carmenta.files import service as files_service
from carmenta.settings import Settings


@dataclass
class AttachmentChip:
    id: str
    name: str
    kind: str
    size: str
    thumbnail: str = ""
    status: str = ""


@dataclass
class SourceLink:
    kind: str
    title: str
    href: str


@dataclass
class ToolStep:
    id: str
    title: str
    call: str
    status: str
    result: str


@dataclass
class ThreadMessage:
    id: str
    role: str
    content: str
    status: str
    error: str = ""
    model_label: str = ""
    used: str = ""
    offline: bool = False
    preparing: str = ""
    # Research replies: their job, how far it got and what it is doing.
    research_job: str = ""
    research_percent: int = 0
    research_step: str = ""
    attachments: list[AttachmentChip] = field(default_factory=list)
    sources: list[SourceLink] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    steps: list[ToolStep] = field(default_factory=list)


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("bytes", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{int(value)} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} bytes"


def thread_message(
    message: conversations.MessageView, chips: dict[str, AttachmentChip]
) -> ThreadMessage:
    details = message.details
    context = details.get("context") or {}
    return ThreadMessage(
        id=str(message.id),
        role=message.role,
        content=message.content,
        status=message.status,
        error=message.error or "",
        model_label=str(details.get("model_label") or ""),
        used=describe_summary(context.get("summary") or {}),
        offline=bool(details.get("offline")),
        preparing=str(details.get("preparing") or ""),
        research_job=str((details.get("research") or {}).get("job_id") or ""),
        research_percent=int((details.get("research") or {}).get("percent") or 0),
        research_step=str((details.get("research") or {}).get("step") or ""),
        attachments=[
            chips[file_id] for file_id in details.get("attachments") or [] if file_id in chips
        ],
        sources=[
            SourceLink(kind=item["kind"], title=item["title"], href=item["href"])
            for item in context.get("sources") or []
        ],
        notices=list(context.get("notices") or []),
        steps=[
            ToolStep(
                id=str(step.get("id", "")),
                title=str(step.get("title", "")),
                call=str(step.get("call", "")),
                status=str(step.get("status", "")),
                result=str(step.get("result", "")),
            )
            for step in details.get("steps") or []
        ],
    )


async def attachment_chips(
    *,
    session: AsyncSession,
    settings: Settings,
    owner_id: uuid.UUID,
    messages: list[conversations.MessageView],
) -> dict[str, AttachmentChip]:
    wanted = {
        file_id for message in messages for file_id in message.details.get("attachments") or []
    }
    chips: dict[str, AttachmentChip] = {}
    for file_id in wanted:
        view = await files_service.get_file(
            session=session, owner_id=owner_id, file_id=uuid.UUID(file_id)
        )
        if view is None:
            chips[file_id] = AttachmentChip(
                id=file_id, name="Deleted file", kind="deleted", size="", status="deleted"
            )
            continue
        urls = await files_service.signed_urls(owner_id=owner_id, file=view, settings=settings)
        # Image and PDF thumbnails come from the transformation URLs.
        thumbnail = (urls.thumbnail or "") if urls else ""
        chips[file_id] = AttachmentChip(
            id=file_id,
            name=view.name,
            kind=view.kind,
            size=human_size(view.size_bytes),
            thumbnail=thumbnail,
            status=view.status,
        )
    return chips


async def load_thread(
    *,
    session: AsyncSession,
    settings: Settings,
    owner_id: uuid.UUID,
    conversation_id: uuid.UUID,
) -> tuple[conversations.ConversationView, list[ThreadMessage]]:
    conversation = await conversations.get_conversation(
        session=session, owner_id=owner_id, conversation_id=conversation_id
    )
    messages = await conversations.list_messages(
        session=session, owner_id=owner_id, conversation_id=conversation_id
    )
    chips = await attachment_chips(
        session=session, settings=settings, owner_id=owner_id, messages=messages
    )
    return conversation, [thread_message(message, chips) for message in messages]
