"""The Concierge: what goes to the model with each message, and which model answers.

Before each reply it gathers, within a token budget: the profile documents (always),
the memories and knowledge documents relevant to the message, and the message's
attachments (their text, or the images themselves for a model that can see). It
chooses the model: the person's explicit choice wins; images need a vision model;
otherwise the configured default; with none configured, the offline assistant.
"""

from __future__ import annotations

import asyncio
import inspect
import re
import tempfile
import uuid
import weakref
from collections import OrderedDict
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlmodel.ext.asyncio.session import AsyncSession

from carmenta import db
from carmenta.chat.llm.types import ChatTurn, ImageInput, ModelCredentials, ModelOption
from carmenta.conversations import service as conversations
from carmenta.conversations.models import MessageRole, MessageStatus
from carmenta.files import service as files_service
from carmenta.files.storage.base import Transform
from carmenta.files.storage.transform import NotRenderable, render_variant
from carmenta.knowledge import semantic
from carmenta.knowledge import service as knowledge
from carmenta.knowledge.embeddings import Embedder
from carmenta.knowledge.search import clean_query
from carmenta.memory import service as memory
from carmenta.settings import Settings

# Tokens are estimated at four characters each: close enough to budget with.
CHARS_PER_TOKEN = 4
PROFILE_SHARE = 0.25
MEMORY_SHARE = 0.15
FILE_SHARE = 0.35
MAX_DOCUMENTS = 6
MAX_MEMORIES = 8
# Below this fused score a document is a weak match: offered to a model, not quoted.
IMAGE_MAX_SIDE = 1568


def estimate_tokens(value: str) -> int:
    return (len(value) + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN


def _trimmed(value: str, tokens: int) -> str:
    limit = max(0, tokens) * CHARS_PER_TOKEN
    if len(value) <= limit:
        return value
    cut = value[:limit]
    # End on a word boundary, and say that something was left out.
    return cut[: cut.rfind(" ")].rstrip() + " …" if " " in cut else cut + " …"


@dataclass(frozen=True)
class ContextSource:
    """One thing the reply drew on, shown to the person and openable."""

    kind: str  # "profile", "document", "memory" or "file"
    id: str
    title: str
    href: str
    text: str

    def as_dict(self) -> dict[str, str]:
        # The text stays on the server; the thread shows what was used, not all of it.
        return {"kind": self.kind, "id": self.id, "title": self.title, "href": self.href}


@dataclass
class Attachment:
    id: str
    name: str
    kind: str
    content_type: str
    size_bytes: int
    status: str
    text: str | None = None


@dataclass
class ReplyPlan:
    """Everything a reply needs, decided before the first token."""

    query: str
    option: ModelOption | None
    credentials: ModelCredentials | None
    system_prompt: str
    turns: list[ChatTurn]
    sources: list[ContextSource] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)
    # The conversation still had the default title: its first exchange names it.
    untitled: bool = False

    @property
    def offline(self) -> bool:
        return self.option is None

    def summary(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for source in self.sources:
            counts[source.kind] = counts.get(source.kind, 0) + 1
        return counts

    def details(self) -> dict[str, Any]:
        return {
            "context": {
                "sources": [source.as_dict() for source in self.sources],
                "summary": self.summary(),
                "notices": self.notices,
            }
        }


def describe_summary(summary: dict[str, int]) -> str:
    """'3 documents, 2 memories' for the thread."""
    names = {
        "document": ("document", "documents"),
        "memory": ("memory", "memories"),
        "file": ("file", "files"),
        "profile": ("profile note", "profile notes"),
    }
    parts = []
    for kind in ("document", "memory", "file", "profile"):
        count = summary.get(kind, 0)
        if count:
            singular, plural = names[kind]
            parts.append(f"{count} {singular if count == 1 else plural}")
    return ", ".join(parts)


async def load_attachments(
    *, session: AsyncSession, owner_id: uuid.UUID, file_ids: list[str]
) -> list[Attachment]:
    if not file_ids:
        return []
    rows = (
        await session.execute(
            text(
                "select id, original_name, kind, content_type, size_bytes, status,"
                " extracted_text from files where owner_id = :owner and id = any(:ids)"
            ),
            {"owner": owner_id, "ids": [uuid.UUID(value) for value in file_ids]},
        )
    ).all()
    by_id = {str(row.id): row for row in rows}
    return [
        Attachment(
            id=file_id,
            name=row.original_name,
            kind=row.kind,
            content_type=row.content_type,
            size_bytes=row.size_bytes,
            status=row.status,
            text=row.extracted_text,
        )
        for file_id in file_ids
        if (row := by_id.get(file_id)) is not None
    ]


async def attachments_still_processing(
    *, session: AsyncSession, owner_id: uuid.UUID, conversation_id: uuid.UUID
) -> int:
    """How many files of the last message are not read yet (uploading or processing)."""
    row = (
        await session.execute(
            text(
                "with last_user as ("
                "  select details from messages where conversation_id = :conversation"
                "  and owner_id = :owner and role = 'user' order by created_at desc limit 1)"
                " select count(*) from files f, last_user u"
                " where f.owner_id = :owner and f.status in ('uploading', 'processing')"
                " and f.id::text in (select jsonb_array_elements_text("
                "   coalesce(u.details->'attachments', '[]'::jsonb)))"
            ),
            {"conversation": conversation_id, "owner": owner_id},
        )
    ).scalar_one()
    return int(row)


async def image_for_model(
    *, settings: Settings, owner_id: uuid.UUID, file_id: str, content_type: str
) -> ImageInput | None:
    """The image, scaled to what vision models accept, as JPEG; None if unreadable."""
    storage = files_service.storage_for(settings)
    key = files_service.key_of(owner_id, uuid.UUID(file_id))
    with tempfile.TemporaryDirectory(prefix="carmenta-vision-") as work:
        source = Path(work) / "original"
        target = Path(work) / "scaled.jpg"
        try:
            await storage.download_to(key=key, path=source)
            await asyncio.to_thread(
                render_variant,
                source=source,
                content_type=content_type,
                transform=Transform(
                    width=IMAGE_MAX_SIDE,
                    height=IMAGE_MAX_SIDE,
                    resize="contain",
                    format="jpeg",
                    quality=85,
                ),
                dest=target,
                max_pixels=settings.max_image_pixels,
            )
        except (NotRenderable, OSError):
            return None
        return ImageInput(media_type="image/jpeg", data=target.read_bytes())


def choose_model(
    *,
    options: list[ModelOption],
    chosen_id: str | None,
    default_id: str | None,
    needs_vision: bool,
) -> tuple[ModelOption | None, list[str]]:
    """The model to answer with, and any notice the person should see about the choice."""
    notices: list[str] = []
    by_id = {option.id: option for option in options}
    if chosen_id and chosen_id in by_id:
        chosen = by_id[chosen_id]
        if needs_vision and not chosen.vision:
            notices.append(
                f"{chosen.label} cannot see images; it was given the images' descriptions only."
            )
        return chosen, notices
    if chosen_id and chosen_id not in by_id and chosen_id != "offline":
        notices.append("The model chosen for this conversation is no longer available.")
    if chosen_id == "offline":
        return None, notices
    candidates = options
    if needs_vision:
        seeing = [option for option in options if option.vision]
        if seeing:
            candidates = seeing
        elif options:
            notices.append("None of your models can see images; they get descriptions only.")
    if not candidates:
        return None, notices
    if default_id and any(option.id == default_id for option in candidates):
        return by_id[default_id], notices
    return candidates[0], notices


def _history_turns(messages: list[conversations.MessageView], budget_tokens: int) -> list[ChatTurn]:
    """The conversation so far, newest kept first when it does not all fit."""
    turns: list[ChatTurn] = []
    used = 0
    for message in reversed(messages):
        if message.role not in (MessageRole.user, MessageRole.assistant):
            continue
        if message.role == MessageRole.assistant and (
            message.status in (MessageStatus.failed, MessageStatus.streaming)
            or not message.content.strip()
        ):
            continue
        content = message.content
        names = message.details.get("attachment_names") or []
        if names:
            content = f"{content}\n\n[Attached: {', '.join(names)}]".strip()
        cost = estimate_tokens(content)
        if turns and used + cost > budget_tokens:
            break
        used += cost
        turns.append(ChatTurn(role=message.role, text=content))  # type: ignore[arg-type]
    turns.reverse()
    # Providers expect the conversation to open with the person.
    while turns and turns[0].role != "user":
        turns.pop(0)
    return _merged(turns)


def _merged(turns: list[ChatTurn]) -> list[ChatTurn]:
    # Two turns of the same role in a row (a reply that failed in between) become one.
    merged: list[ChatTurn] = []
    for turn in turns:
        if merged and merged[-1].role == turn.role and not turn.images:
            previous = merged[-1]
            merged[-1] = ChatTurn(
                role=previous.role,
                text=f"{previous.text}\n\n{turn.text}".strip(),
                images=previous.images,
            )
        else:
            merged.append(turn)
    return merged


def _system_prompt(
    *,
    user_name: str | None,
    profile: list[ContextSource],
    memories: list[ContextSource],
    documents: list[ContextSource],
    files: list[ContextSource],
    now: datetime,
) -> str:
    lines = [
        "You are Carmenta, a personal assistant"
        + (f" for {user_name}." if user_name else ".")
        + " You know the person through their profile, memories and knowledge base below;"
        " use them when they help, and say which document or memory a fact came from."
        " If something is not in the context and you do not know it, say so.",
        f"Today is {now.strftime('%A, %d %B %Y')} (UTC).",
    ]
    if profile:
        lines.append("\n## The person's profile")
        lines.extend(f"### {source.title}\n{source.text}" for source in profile)
    if memories:
        lines.append("\n## What you remember about them")
        lines.extend(f"- {source.text}" for source in memories)
    if documents:
        lines.append("\n## From their knowledge base (most relevant first)")
        lines.extend(f"### {source.title}\n{source.text}" for source in documents)
    if files:
        lines.append("\n## Files attached to the message")
        lines.extend(f"### {source.title}\n{source.text}" for source in files)
    return "\n".join(lines)


@dataclass(frozen=True)
class QueryVectors:
    """The message embedded once for memory recall and for document search."""

    # Whether any of the owner's memories / document chunks is embedded at all.
    memories: bool
    chunks: bool
    # The message as recall compares it, and cleaned as document search does.
    recall: Any = None
    search: Any = None


# Query vectors kept per embedder, by text: a draft embedded while the person pauses
# typing (`warm_query`) is not embedded again when it is sent, and a message sent while
# its draft is still being embedded waits for that instead of starting over. 384 floats
# each, so the whole cache stays under a megabyte.
QUERY_VECTORS_KEPT = 256


@dataclass
class _QueryVectors:
    kept: OrderedDict[str, Any] = field(default_factory=OrderedDict)
    # Texts being embedded, each with the future of its batch's vectors by text.
    pending: dict[str, asyncio.Future[dict[str, Any]]] = field(default_factory=dict)


_query_vectors: weakref.WeakKeyDictionary[Any, _QueryVectors] = weakref.WeakKeyDictionary()
# Whether each person's last message found anything embedded to compare it with: the
# drafts of people with nothing embedded are not embedded.
OWNERS_KEPT = 4096
_owners_with_vectors: OrderedDict[uuid.UUID, bool] = OrderedDict()


def _remember_vectors(owner_id: uuid.UUID, found: bool) -> None:
    _owners_with_vectors[owner_id] = found
    _owners_with_vectors.move_to_end(owner_id)
    while len(_owners_with_vectors) > OWNERS_KEPT:
        _owners_with_vectors.popitem(last=False)


async def _embed_batch(embedder: Embedder, vectors: _QueryVectors, texts: list[str]) -> dict:
    batch: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
    for text_ in texts:
        vectors.pending[text_] = batch
    try:
        embedded = {}
        for text_, vector in zip(texts, await embedder.embed_async(texts), strict=True):
            vector = vector.copy()
            vector.setflags(write=False)  # shared by every later caller
            embedded[text_] = vector
        batch.set_result(embedded)
        return embedded
    finally:
        if not batch.done():
            batch.cancel()  # whoever waits on it embeds for themselves
        for text_ in texts:
            if vectors.pending.get(text_) is batch:
                del vectors.pending[text_]


async def _embedded_texts(embedder: Embedder, texts: list[str]) -> list[Any]:
    vectors = _query_vectors.setdefault(embedder, _QueryVectors())
    found = {text_: vectors.kept[text_] for text_ in texts if text_ in vectors.kept}
    loop = asyncio.get_running_loop()
    waiting = {
        text_: vectors.pending[text_]
        for text_ in texts
        # (a batch left by another event loop, as in tests, cannot be waited on here)
        if text_ not in found
        and text_ in vectors.pending
        and vectors.pending[text_].get_loop() is loop
    }
    missing = [text_ for text_ in texts if text_ not in found and text_ not in waiting]
    if missing:
        found.update(await _embed_batch(embedder, vectors, missing))
    for text_, batch in waiting.items():
        try:
            found[text_] = (await asyncio.shield(batch))[text_]
        except asyncio.CancelledError:
            if not batch.cancelled():
                raise  # this caller was cancelled, not the batch it waited on
            found.update(await _embed_batch(embedder, vectors, [text_]))
    for text_ in texts:
        vectors.kept[text_] = found[text_]
        vectors.kept.move_to_end(text_)
    while len(vectors.kept) > QUERY_VECTORS_KEPT:
        vectors.kept.popitem(last=False)
    return [found[text_] for text_ in texts]


def _query_texts(query: str) -> tuple[str, str]:
    """The message as recall compares it, and cleaned as document search does."""
    return query, clean_query(query)


async def warm_query(*, owner_id: uuid.UUID, query: str, embedder: Embedder) -> bool:
    """Embed a message before it is sent (a draft), so sending it finds the vectors;
    only for a person whose last message had something embedded to compare with.
    Returns whether it did."""
    if not _owners_with_vectors.get(owner_id):
        return False
    recall, search = _query_texts(query)
    await _embedded_texts(embedder, list(dict.fromkeys(t for t in (recall, search) if t)))
    return True


async def embed_query(
    *, session: AsyncSession, owner_id: uuid.UUID, query: str, embedder: Embedder
) -> QueryVectors:
    """One embedding pass for both searches, and none when nothing could match.

    Embedding runs on the CPU before the model is asked, so it is most of the time to
    the first token: the two texts (usually the same) are embedded together, and not
    at all for a person with no embedded memories or documents.
    """
    found = (
        await session.execute(
            text(
                "select exists(select 1 from memories where owner_id = :owner"
                "   and embedding is not null) as memories,"
                " exists(select 1 from document_chunks where owner_id = :owner"
                "   and embedding is not null) as chunks"
            ),
            {"owner": owner_id},
        )
    ).one()
    _remember_vectors(owner_id, bool(found.memories or found.chunks))
    query, cleaned = _query_texts(query)
    wanted = ([query] if found.memories else []) + ([cleaned] if found.chunks and cleaned else [])
    texts = list(dict.fromkeys(wanted))
    vectors = dict(zip(texts, await _embedded_texts(embedder, texts), strict=True)) if texts else {}
    return QueryVectors(
        memories=bool(found.memories),
        chunks=bool(found.chunks),
        recall=vectors.get(query) if found.memories else None,
        search=vectors.get(cleaned) if found.chunks else None,
    )


@dataclass
class FoundSources:
    """What a message could draw on, before it is fitted into the token budget."""

    profile: list[knowledge.DocumentView] = field(default_factory=list)
    memories: list[memory.MemoryView] = field(default_factory=list)
    # Most relevant first.
    documents: list[knowledge.DocumentView] = field(default_factory=list)


async def _profile_documents(
    session: AsyncSession, owner_id: uuid.UUID
) -> list[knowledge.DocumentView]:
    return await knowledge.list_tree(session=session, owner_id=owner_id, root="profile")


async def _recalled(
    session: AsyncSession,
    owner_id: uuid.UUID,
    query: str,
    embedder: Embedder,
    vectors: QueryVectors,
) -> list[memory.MemoryView]:
    return await memory.recall(
        session=session,
        owner_id=owner_id,
        query=query,
        embedder=embedder,
        limit=MAX_MEMORIES,
        query_vector=vectors.recall,
        semantic=vectors.memories,
    )


# Words of a question that ask rather than name what is asked about. PostgreSQL's own
# stop words (what, do, I, about, my...) go already; these would otherwise be required
# of every document found ("What do I know about gardens?" needs "know" and "garden").
_ASKING_WORDS = re.compile(
    r"\b(know|knows|tell|remember|recall|please|find|show|give|anything|something|"
    r"everything|info|information)\b",
    re.IGNORECASE,
)


def text_query(question: str) -> str:
    """The words of a question a full-text search should require; the question itself
    when nothing else is left."""
    kept = " ".join(_ASKING_WORDS.sub(" ", question).split())
    return kept if re.search(r"\w", kept) else question


async def _relevant_documents(
    session: AsyncSession,
    owner_id: uuid.UUID,
    query: str,
    embedder: Embedder,
    vector: QueryVectors | Awaitable[Any],
    parallel: bool,
) -> list[knowledge.DocumentView]:
    """`vector`: the query's vectors, or the awaitable of its search vector (None when
    no chunk of the owner's is embedded)."""
    if isinstance(vector, QueryVectors):
        query_vector, semantic_side = vector.search, vector.chunks
    else:
        query_vector, semantic_side = vector, True
    # The semantic side has the whole question's vector already (or none at all).
    hits = await semantic.hybrid_search(
        session=session,
        owner_id=owner_id,
        query=text_query(query),
        embedder=embedder,
        subtree="knowledge",
        limit=MAX_DOCUMENTS,
        parallel=parallel,
        query_vector=query_vector,
        semantic=semantic_side,
    )
    return await knowledge.get_documents(
        session=session, owner_id=owner_id, document_ids=[hit.id for hit in hits]
    )


async def find_sources(
    *,
    session: AsyncSession,
    owner_id: uuid.UUID,
    query: str,
    embedder: Embedder,
    parallel: bool = False,
) -> FoundSources:
    """The profile documents, and the memories and knowledge documents relevant to `query`.

    With `parallel` the reads run at once on connections of their own from the session's
    engine (the memories and the profile on one, the documents on another), so the time
    is that of the longest rather than the sum. Those connections see committed rows
    only: pass it only for a session that has written no documents or memories.
    """
    asked = bool(query.strip())
    if not parallel:
        profile = await _profile_documents(session, owner_id)
        if not asked:
            return FoundSources(profile=profile)
        vectors = await embed_query(
            session=session, owner_id=owner_id, query=query, embedder=embedder
        )
        memories = await _recalled(session, owner_id, query, embedder, vectors)
        documents = await _relevant_documents(
            session, owner_id, query, embedder, vectors, parallel=False
        )
        return FoundSources(profile=profile, memories=memories, documents=documents)

    # Plain reads, each on its own (the searches too: each is one statement), so no
    # BEGIN and COMMIT around them.
    reads = db.statement_engine_for(semantic.engine_of(session))
    embedded: asyncio.Future[QueryVectors] = asyncio.get_running_loop().create_future()

    async def profile_and_memories() -> tuple[list, list]:
        async with AsyncSession(bind=reads, expire_on_commit=False) as own:
            vectors = QueryVectors(memories=False, chunks=False)
            if asked:
                vectors = await embed_query(
                    session=own, owner_id=owner_id, query=query, embedder=embedder
                )
            embedded.set_result(vectors)
            profile = await _profile_documents(own, owner_id)
            memories = await _recalled(own, owner_id, query, embedder, vectors) if asked else []
            return profile, memories

    async def search_vector() -> Any:
        # Shielded: cancelling the search must not cancel what the other side sets.
        vectors = await asyncio.shield(embedded)
        return vectors.search if vectors.chunks else None

    async def documents() -> list[knowledge.DocumentView]:
        if not asked:
            return []
        async with AsyncSession(bind=reads, expire_on_commit=False) as own:
            # The full-text search starts at once; the semantic side waits for the
            # vector the other side finds or makes.
            return await _relevant_documents(
                own, owner_id, query, embedder, search_vector(), parallel=True
            )

    # A failure on one side cancels the other: nothing is left running unawaited.
    async with asyncio.TaskGroup() as group:
        first = group.create_task(profile_and_memories())
        second = group.create_task(documents())
    profile, memories = first.result()
    return FoundSources(profile=profile, memories=memories, documents=second.result())


def fit_sources(
    found: FoundSources, *, budget_tokens: int, attachments: list[Attachment]
) -> tuple[list[ContextSource], list[ContextSource], list[ContextSource], list[ContextSource]]:
    """Profile, memories, documents and file text, each trimmed to its share."""
    profile_budget = int(budget_tokens * PROFILE_SHARE)
    memory_budget = int(budget_tokens * MEMORY_SHARE)
    file_budget = int(budget_tokens * FILE_SHARE) if attachments else 0
    profile: list[ContextSource] = []
    for document in found.profile:
        body = document.content.strip()
        if not body or document.path == "profile":
            continue
        piece = _trimmed(body, profile_budget - sum(estimate_tokens(p.text) for p in profile))
        if not piece:
            break
        profile.append(
            ContextSource(
                kind="profile",
                id=str(document.id),
                title=document.title,
                href=f"/knowledge?doc={document.id}",
                text=piece,
            )
        )

    memories: list[ContextSource] = []
    used = 0
    for item in found.memories:
        cost = estimate_tokens(item.content)
        if used + cost > memory_budget:
            break
        used += cost
        memories.append(
            ContextSource(
                kind="memory",
                id=str(item.id),
                title=item.content[:80],
                href="/memory",
                text=item.content,
            )
        )

    files: list[ContextSource] = []
    used = 0
    for attachment in attachments:
        body = (attachment.text or "").strip()
        if not body:
            continue
        piece = _trimmed(body, file_budget - used)
        if not piece:
            break
        used += estimate_tokens(piece)
        files.append(
            ContextSource(
                kind="file",
                id=attachment.id,
                title=attachment.name,
                href="/files",
                text=piece,
            )
        )

    documents: list[ContextSource] = []
    remaining = (
        budget_tokens
        - sum(estimate_tokens(p.text) for p in profile)
        - sum(estimate_tokens(m.text) for m in memories)
        - used
    )
    per_document = max(200, remaining // max(1, len(found.documents)))
    for document in found.documents:
        if remaining <= 0:
            break
        piece = _trimmed(document.content.strip(), min(per_document, remaining))
        if not piece:
            continue
        remaining -= estimate_tokens(piece)
        documents.append(
            ContextSource(
                kind="document",
                id=str(document.id),
                title=document.title,
                href=f"/knowledge?doc={document.id}",
                text=piece,
            )
        )
    return profile, memories, documents, files


async def gather_sources(
    *,
    session: AsyncSession,
    owner_id: uuid.UUID,
    query: str,
    embedder: Embedder,
    budget_tokens: int,
    attachments: list[Attachment],
    parallel_search: bool = False,
) -> tuple[list[ContextSource], list[ContextSource], list[ContextSource], list[ContextSource]]:
    """Profile, memories, documents and file text, each trimmed to its share.

    `parallel_search` lets the reads run on connections of their own (see
    `find_sources`): only for a session that has written no documents of its own.
    """
    found = await find_sources(
        session=session, owner_id=owner_id, query=query, embedder=embedder, parallel=parallel_search
    )
    return fit_sources(found, budget_tokens=budget_tokens, attachments=attachments)


@dataclass(frozen=True)
class PendingMessage:
    """A message being stored while its reply is planned.

    Planning reads the conversation alongside the transaction that stores the message,
    so the rows it reads may or may not hold the message and its empty reply yet: they
    are left out by id, and the message is added from here.
    """

    content: str
    attachment_ids: list[str]
    message_id: uuid.UUID
    reply_id: uuid.UUID


def _with_pending(
    messages: list[conversations.MessageView],
    pending: PendingMessage,
    *,
    conversation_id: uuid.UUID,
    owner_id: uuid.UUID,
) -> list[conversations.MessageView]:
    earlier = [m for m in messages if m.id not in (pending.message_id, pending.reply_id)]
    details = {"attachments": pending.attachment_ids} if pending.attachment_ids else {}
    asked = conversations.MessageView(
        id=pending.message_id,
        conversation_id=conversation_id,
        owner_id=owner_id,
        role=MessageRole.user.value,
        content=pending.content,
        status=MessageStatus.complete.value,
        model=None,
        error=None,
        details=details,
    )
    return [*earlier, asked]


async def plan_reply(
    *,
    session: AsyncSession,
    settings: Settings,
    owner_id: uuid.UUID,
    conversation_id: uuid.UUID,
    embedder: Embedder,
    options: list[ModelOption] | Awaitable[list[ModelOption]],
    credentials_for: Any,
    user_name: str | None = None,
    now: datetime | None = None,
    parallel_search: bool = False,
    pending: PendingMessage | None = None,
    drafted: asyncio.Task[FoundSources | None] | None = None,
) -> ReplyPlan:
    """Assemble the context for answering the conversation's last user message, or
    `pending` (a message being stored meanwhile).

    `credentials_for(option)` returns the credentials of a chosen option (it is a
    parameter so the caller decides where keys come from). `options` may be a
    coroutine on `session`: it is awaited after the conversation is read. `drafted`
    holds the sources found for `pending` while it was a draft (None inside: found
    anew); this plan owns it, and cancels it if it fails first.
    """
    found_task: asyncio.Task[FoundSources | None] | None = None
    if pending is not None and drafted is not None:
        found_task = drafted
    elif pending is not None and parallel_search:
        # The sources depend on the message alone: found while the conversation is read.
        found_task = asyncio.create_task(
            find_sources(
                session=session,
                owner_id=owner_id,
                query=pending.content,
                embedder=embedder,
                parallel=True,
            )
        )
    try:
        conversation, messages = await conversations.get_reply_thread(
            session=session, owner_id=owner_id, conversation_id=conversation_id
        )
        if pending is not None:
            messages = _with_pending(
                messages, pending, conversation_id=conversation_id, owner_id=owner_id
            )
        last_user = next((m for m in reversed(messages) if m.role == MessageRole.user), None)
        if last_user is None:
            raise conversations.MessageRefused("There is no message to answer yet.")
        query = last_user.content
        attachments = await load_attachments(
            session=session,
            owner_id=owner_id,
            file_ids=list(last_user.details.get("attachments") or []),
        )
        if inspect.isawaitable(options):
            options = await options
        found = await found_task if found_task is not None else None
        if found is None:
            found = await find_sources(
                session=session,
                owner_id=owner_id,
                query=query,
                embedder=embedder,
                parallel=parallel_search,
            )
    finally:
        if inspect.iscoroutine(options):
            options.close()  # not awaited: the plan failed before it was needed
        if found_task is not None and not found_task.done():
            found_task.cancel()
            await asyncio.gather(found_task, return_exceptions=True)
    needs_vision = any(attachment.kind == "image" for attachment in attachments)
    option, notices = choose_model(
        options=options,
        chosen_id=conversation.model,
        default_id=settings.default_model,
        needs_vision=needs_vision,
    )
    budget = settings.context_token_budget
    profile, memories, documents, files = fit_sources(
        found, budget_tokens=budget, attachments=attachments
    )
    system = _system_prompt(
        user_name=user_name,
        profile=profile,
        memories=memories,
        documents=documents,
        files=files,
        now=now or datetime.now(UTC),
    )
    history_budget = budget
    if option is not None:
        history_budget = max(
            budget,
            option.context_tokens - estimate_tokens(system) - settings.reply_max_tokens - 512,
        )
    turns = _history_turns(messages, history_budget)
    images: list[ImageInput] = []
    if option is not None and option.vision:
        for attachment in attachments:
            if attachment.kind != "image":
                continue
            image = await image_for_model(
                settings=settings,
                owner_id=owner_id,
                file_id=attachment.id,
                content_type=attachment.content_type,
            )
            if image is None:
                notices.append(f"{attachment.name} could not be read as an image.")
            else:
                images.append(image)
    if images and turns and turns[-1].role == "user":
        last = turns[-1]
        turns[-1] = ChatTurn(role="user", text=last.text, images=[*last.images, *images])
    credentials = credentials_for(option) if option is not None else None
    if asyncio.iscoroutine(credentials):
        credentials = await credentials
    return ReplyPlan(
        query=query,
        option=option,
        credentials=credentials,
        system_prompt=system,
        turns=turns,
        sources=[*documents, *memories, *files, *profile],
        notices=notices,
        attachments=attachments,
        untitled=conversation.title == conversations.DEFAULT_TITLE,
    )
