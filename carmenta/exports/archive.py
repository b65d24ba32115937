"""The zip of everything a person keeps in Carmenta, written entry by entry.

Layout of the archive:

    README.md                     what is where
    account.json                  who the export is for
    conversations/<name>.json     each conversation with its messages, as data
    conversations/<name>.md       the same, readable
    documents/<tree>/<name>.md    knowledge documents, in their tree
    documents.json                every document's metadata
    memories.json                 what the assistant remembers
    files.json                    the file list
    files/<id>-<name>             the files themselves, streamed from the store
    connections.json              connected services: provider, account, scopes, dates

Only columns named here are written: never a credential, password hash, token or
embedding. Nothing reads a whole file into memory; file bodies are copied in chunks.
"""

from __future__ import annotations

import json
import re
import unicodedata
import uuid
import zipfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from carmenta.connections.models import ServiceConnection
from carmenta.conversations.models import Conversation, Message
from carmenta.files import service as files_service
from carmenta.files.models import StoredFile
from carmenta.files.storage import StorageBackend
from carmenta.knowledge.models import Document
from carmenta.memory.models import Memory
from carmenta.users.models import User

Progress = Callable[[float, str], Awaitable[None]]

_UNSAFE_NAME = re.compile(r"[^\w.\- ]+")
_ROLE_HEADINGS = {"user": "You", "assistant": "Assistant", "system": "System", "tool": "Tool"}


@dataclass(frozen=True)
class ArchiveSummary:
    conversations: int
    messages: int
    documents: int
    memories: int
    files: int
    missing_files: int
    connections: int


def safe_name(text: str, *, fallback: str, limit: int = 80) -> str:
    """A file name from free text: no separators, no dots at the ends, not empty."""
    normalized = unicodedata.normalize("NFKC", text or "")
    cleaned = _UNSAFE_NAME.sub("-", normalized).strip(" .-")
    cleaned = re.sub(r"-{2,}", "-", cleaned)[:limit].strip(" .-")
    return cleaned or fallback


def _when(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _json_bytes(value: Any) -> bytes:
    return (json.dumps(value, ensure_ascii=False, indent=2) + "\n").encode()


def document_entry(path: str) -> str:
    """`projects.garden.tomatoes` -> `documents/projects/garden/tomatoes.md`."""
    labels = [safe_name(label, fallback="untitled") for label in path.split(".") if label]
    return "documents/" + "/".join(labels or ["untitled"]) + ".md"


def conversation_markdown(conversation: Conversation, messages: list[Message]) -> str:
    lines = [f"# {conversation.title}", ""]
    lines.append(f"Started {conversation.created_at:%Y-%m-%d %H:%M} UTC")
    if conversation.model:
        lines.append(f"Model: {conversation.model}")
    lines.append("")
    for message in messages:
        heading = _ROLE_HEADINGS.get(message.role, message.role.title())
        status = "" if message.status == "complete" else f" ({message.status})"
        lines += [f"## {heading}{status}", f"_{message.created_at:%Y-%m-%d %H:%M} UTC_", ""]
        lines += [message.content.rstrip() or "_(empty)_", ""]
    return "\n".join(lines)


def _conversation_data(conversation: Conversation, messages: list[Message]) -> dict[str, Any]:
    return {
        "id": str(conversation.id),
        "title": conversation.title,
        "model": conversation.model,
        "starred": conversation.starred,
        "archived_at": _when(conversation.archived_at),
        "created_at": _when(conversation.created_at),
        "updated_at": _when(conversation.updated_at),
        "messages": [
            {
                "id": str(message.id),
                "role": message.role,
                "content": message.content,
                "status": message.status,
                "model": message.model,
                "input_tokens": message.input_tokens,
                "output_tokens": message.output_tokens,
                "details": message.details,
                "created_at": _when(message.created_at),
            }
            for message in messages
        ],
    }


def _readme(user: User, summary_lines: list[str]) -> str:
    return "\n".join(
        [
            "# Your Carmenta data",
            "",
            f"Exported for {user.email or user.display_name or user.id}.",
            "",
            *summary_lines,
            "",
            "- `conversations/`: each conversation as JSON and as readable Markdown",
            "- `documents/`: your knowledge documents as Markdown, in their tree;"
            " `documents.json` has their details",
            "- `memories.json`: what the assistant remembers about you",
            "- `files/`: your files; `files.json` lists them",
            "- `connections.json`: the services you connected (no passwords or tokens)",
            "",
        ]
    )


class _Entries:
    """Unique entry names: two conversations with one title get two files."""

    def __init__(self) -> None:
        self._taken: set[str] = set()

    def unique(self, name: str) -> str:
        if name not in self._taken:
            self._taken.add(name)
            return name
        stem, dot, extension = name.rpartition(".")
        if not dot:
            stem, extension = name, ""
        counter = 2
        while True:
            candidate = f"{stem}-{counter}.{extension}" if dot else f"{stem}-{counter}"
            if candidate not in self._taken:
                self._taken.add(candidate)
                return candidate
            counter += 1


async def _nothing(percent: float, message: str) -> None:
    return None


async def write_archive(
    *,
    session: AsyncSession,
    owner_id: uuid.UUID,
    store: StorageBackend,
    path: Path,
    progress: Progress | None = None,
) -> ArchiveSummary:
    """Write the owner's data to a new zip at `path`. Raises LookupError for no such user."""
    report = progress or _nothing
    user = await session.get(User, owner_id)
    if user is None:
        raise LookupError("there is no such user")
    entries = _Entries()
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as archive:

        def write(name: str, data: bytes) -> None:
            archive.writestr(entries.unique(name), data)

        write(
            "account.json",
            _json_bytes(
                {
                    "id": str(user.id),
                    "email": user.email,
                    "display_name": user.display_name,
                    "sign_in": user.auth_provider,
                    "created_at": _when(user.created_at),
                }
            ),
        )

        await report(2, "Conversations")
        conversations = (
            await session.exec(
                select(Conversation)
                .where(col(Conversation.owner_id) == owner_id)
                .order_by(col(Conversation.created_at))
            )
        ).all()
        message_count = 0
        for index, conversation in enumerate(conversations):
            messages = list(
                (
                    await session.exec(
                        select(Message)
                        .where(
                            col(Message.owner_id) == owner_id,
                            col(Message.conversation_id) == conversation.id,
                        )
                        .order_by(col(Message.created_at), col(Message.id))
                    )
                ).all()
            )
            message_count += len(messages)
            stem = (
                f"conversations/{conversation.created_at:%Y-%m-%d}-"
                f"{safe_name(conversation.title, fallback='conversation', limit=60)}"
            )
            name = entries.unique(stem + ".json")
            archive.writestr(name, _json_bytes(_conversation_data(conversation, messages)))
            archive.writestr(
                name.removesuffix(".json") + ".md",
                conversation_markdown(conversation, messages).encode(),
            )
            await report(2 + 28 * (index + 1) / len(conversations), "Conversations")

        await report(30, "Documents")
        documents = (
            await session.exec(
                select(Document)
                .where(col(Document.owner_id) == owner_id)
                .order_by(col(Document.path))
            )
        ).all()
        document_index = []
        for document in documents:
            entry = entries.unique(document_entry(str(document.path)))
            archive.writestr(entry, document.content.encode())
            document_index.append(
                {
                    "file": entry,
                    "id": str(document.id),
                    "path": str(document.path),
                    "title": document.title,
                    "source": document.source,
                    "source_file_id": str(document.source_file_id)
                    if document.source_file_id
                    else None,
                    "created_at": _when(document.created_at),
                    "updated_at": _when(document.updated_at),
                }
            )
        write("documents.json", _json_bytes(document_index))

        await report(40, "Memories")
        memories = (
            await session.exec(
                select(Memory)
                .where(col(Memory.owner_id) == owner_id)
                .order_by(col(Memory.created_at))
            )
        ).all()
        write(
            "memories.json",
            _json_bytes(
                [
                    {
                        "id": str(memory.id),
                        "content": memory.content,
                        "kind": memory.kind,
                        "source": memory.source,
                        "slot": memory.slot,
                        "confidence": memory.confidence,
                        "pinned": memory.pinned,
                        "current": memory.superseded_by_id is None,
                        "superseded_by": str(memory.superseded_by_id)
                        if memory.superseded_by_id
                        else None,
                        "created_at": _when(memory.created_at),
                        "updated_at": _when(memory.updated_at),
                    }
                    for memory in memories
                ]
            ),
        )

        await report(45, "Connections")
        connections = (
            await session.exec(
                select(ServiceConnection)
                .where(col(ServiceConnection.owner_id) == owner_id)
                .order_by(col(ServiceConnection.created_at))
            )
        ).all()
        # Named columns only: the encrypted credentials are never read into the archive.
        write(
            "connections.json",
            _json_bytes(
                [
                    {
                        "provider": connection.provider,
                        "account": connection.account_label,
                        "kind": connection.credential_type,
                        "status": connection.status,
                        "is_default": connection.is_default,
                        "scopes": list(connection.scopes),
                        "connected_at": _when(connection.connected_at),
                        "last_used_at": _when(connection.last_used_at),
                        "expires_at": _when(connection.expires_at),
                    }
                    for connection in connections
                ]
            ),
        )

        await report(50, "Files")
        files = (
            await session.exec(
                select(StoredFile)
                .where(col(StoredFile.owner_id) == owner_id)
                .order_by(col(StoredFile.created_at))
            )
        ).all()
        file_index = []
        missing = 0
        for index, stored in enumerate(files):
            key = files_service.key_of(owner_id, stored.id, revision=stored.revision)
            entry: str | None = None
            # A row can outlive its object (an upload that never finished): listed, no body.
            if await store.exists(key=key):
                entry = entries.unique(
                    f"files/{str(stored.id)[:8]}-"
                    f"{safe_name(stored.original_name, fallback='file', limit=120)}"
                )
                with archive.open(entry, "w", force_zip64=True) as target:
                    async for chunk in store.read(key=key):
                        target.write(chunk)
            else:
                missing += 1
            file_index.append(
                {
                    "file": entry,
                    "id": str(stored.id),
                    "name": stored.original_name,
                    "content_type": stored.content_type,
                    "kind": stored.kind,
                    "size_bytes": stored.size_bytes,
                    "sha256": stored.sha256,
                    "status": stored.status,
                    "created_at": _when(stored.created_at),
                    "updated_at": _when(stored.updated_at),
                }
            )
            await report(50 + 45 * (index + 1) / len(files), "Files")
        write("files.json", _json_bytes(file_index))

        summary = ArchiveSummary(
            conversations=len(conversations),
            messages=message_count,
            documents=len(documents),
            memories=len(memories),
            files=len(files) - missing,
            missing_files=missing,
            connections=len(connections),
        )
        write(
            "README.md",
            _readme(
                user,
                [
                    f"{summary.conversations} conversations ({summary.messages} messages),"
                    f" {summary.documents} documents, {summary.memories} memories,"
                    f" {summary.files} files, {summary.connections} connections.",
                ],
            ).encode(),
        )
    return summary
