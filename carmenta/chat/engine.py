"""Writing replies: one task per reply, in the app process, independent of any browser.

The person's message is committed before generation starts. The reply row is saved as
it streams (every SAVE_INTERVAL_SECONDS at most), so a closed tab loses nothing and a
stopped server loses at most the last second; the reply goes on even when nobody
watches. Pages follow a reply through `follow()`; Stop cancels the task and keeps what
arrived. A Stop from another instance is seen at the next save (the row is no longer
`streaming`) and ends the task there too.

Tool calls: reads run at once and the reply continues with their results; writes (post,
draft, create) pause the reply in status `waiting` until the person approves or
declines, and then it continues.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlmodel.ext.asyncio.session import AsyncSession

from carmenta.chat import offline
from carmenta.chat.concierge import (
    FoundSources,
    PendingMessage,
    ReplyPlan,
    attachments_still_processing,
    find_sources,
    plan_reply,
    warm_query,
)
from carmenta.chat.llm.streaming import stream_reply
from carmenta.chat.llm.types import (
    ChatTurn,
    ModelCredentials,
    ModelError,
    ModelOption,
    StreamFinished,
    TextDelta,
    ToolCall,
    ToolCallRequested,
    ToolResult,
    ToolSpec,
)
from carmenta.chat.titles import title_for
from carmenta.conversations import service as conversations
from carmenta.conversations.models import MessageStatus
from carmenta.db import session_scope, statement_engine_for, statement_scope
from carmenta.errors import CarmentaError
from carmenta.knowledge.embeddings import Embedder, get_embedder
from carmenta.knowledge.semantic import engine_of
from carmenta.observability import metrics
from carmenta.settings import Settings, get_settings

logger = logging.getLogger(__name__)

SAVE_INTERVAL_SECONDS = 0.5
# The first save waits this long: the row exists already, and the first words matter more.
FIRST_SAVE_SECONDS = 0.1
# Plans reading their sources on extra connections at once (each takes up to four from
# the pool of 30); beyond these, plans read on their one connection.
PARALLEL_PLANS = 4
# A draft's sources serve its send only if they were read this recently: a document or
# memory written meanwhile is missing from the reply's context for at most this long.
# The same holds for the models and tools on offer, read with them: a connection added
# or removed meanwhile shows in the replies started this long after it.
DRAFT_SOURCES_FRESH_SECONDS = 2.0
# How long a reply's details wait to go out with its first words before going alone.
HEADER_WAIT_SECONDS = 0.15
# Turns of the event loop the first words' frame needs to leave for the page.
FIRST_WORDS_OUT_TICKS = 4
MAX_TOOL_ROUNDS = 6
# Files attached to a message are usually read within seconds; a reply waits this long.
ATTACHMENT_WAIT_SECONDS = 60.0
# How long a finished reply waits for its conversation's first title.
TITLE_WAIT_SECONDS = 5.0
FAILED_REPLY = "Something went wrong while writing this reply. Try again."


class ServerStoppingError(CarmentaError):
    """This instance is shutting down and starts no new reply."""

    def __init__(self) -> None:
        super().__init__(
            "This server is restarting and cannot start a reply now. "
            "Your message was not sent; send it again in a moment."
        )


class ModelDirectory(Protocol):
    """Which models a person may use, and the credentials to call one."""

    async def options(self, *, session: AsyncSession, owner_id: uuid.UUID) -> list[ModelOption]: ...

    async def credentials(
        self, *, session: AsyncSession, owner_id: uuid.UUID, option: ModelOption
    ) -> ModelCredentials: ...


@dataclass(frozen=True)
class ToolOffer:
    spec: ToolSpec
    title: str
    writes: bool


@dataclass(frozen=True)
class ToolRun:
    ok: bool
    content: str
    summary: str


class ToolBox(Protocol):
    """The person's connected services, offered to a model as tools."""

    async def offers(self, *, session: AsyncSession, owner_id: uuid.UUID) -> list[ToolOffer]: ...

    def describe(self, *, name: str, arguments: dict[str, Any]) -> str: ...

    async def run(
        self, *, session: AsyncSession, owner_id: uuid.UUID, name: str, arguments: dict[str, Any]
    ) -> ToolRun: ...


@dataclass
class LiveReply:
    """A reply being written by this process, as its followers see it."""

    message_id: uuid.UUID
    conversation_id: uuid.UUID
    owner_id: uuid.UUID
    content: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    status: str = MessageStatus.streaming.value
    error: str | None = None
    version: int = 0
    # Monotonic times of the start and the first text, for measuring time to first token.
    started_at: float = field(default_factory=time.monotonic)
    first_text_at: float | None = None
    # The first words were handed on with the turns their frame needs (`_append`).
    first_words_out: bool = False
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    task: asyncio.Task | None = None
    stop_requested: bool = False
    # The stored reply stopped being `streaming` under us (a Stop on another instance).
    ended_elsewhere: bool = False

    @property
    def finished(self) -> bool:
        return self.status != MessageStatus.streaming.value

    async def publish(self) -> None:
        self.version += 1
        async with self.changed:
            self.changed.notify_all()


@dataclass(frozen=True)
class Snapshot:
    message_id: uuid.UUID
    content: str
    details: dict[str, Any]
    status: str
    error: str | None


@dataclass
class _Round:
    """What one conversation-with-tools has added beyond the stored messages."""

    extra_turns: list[ChatTurn] = field(default_factory=list)

    def as_json(self) -> list[dict[str, Any]]:
        return [
            {
                "role": turn.role,
                "text": turn.text,
                "tool_calls": [
                    {"id": call.id, "name": call.name, "arguments": call.arguments}
                    for call in turn.tool_calls
                ],
                "tool_results": [
                    {
                        "call_id": result.call_id,
                        "content": result.content,
                        "is_error": result.is_error,
                    }
                    for result in turn.tool_results
                ],
            }
            for turn in self.extra_turns
        ]

    @classmethod
    def from_json(cls, value: list[dict[str, Any]]) -> _Round:
        return cls(
            extra_turns=[
                ChatTurn(
                    role=item["role"],
                    text=item.get("text", ""),
                    tool_calls=[ToolCall(**call) for call in item.get("tool_calls", [])],
                    tool_results=[ToolResult(**result) for result in item.get("tool_results", [])],
                )
                for item in value
            ]
        )


_Planned = tuple[ReplyPlan, list[ToolOffer]]


@dataclass
class PreparedReply:
    """A reply's context being read for a message not yet stored (see `prepare`)."""

    owner_id: uuid.UUID
    conversation_id: uuid.UUID
    user_name: str | None
    pending: PendingMessage
    planning: asyncio.Task[_Planned | None]
    # Set once `send` has it: from then on the send decides whether it is used.
    claimed: bool = False

    def cancel(self) -> None:
        self.planning.cancel()


@dataclass
class _DraftReads:
    """The sources for one page's draft, being found or found (see `draft_changed`)."""

    owner_id: uuid.UUID
    text: str
    started_at: float  # time.monotonic()
    found: asyncio.Task[FoundSources | None]

    def fresh(self, now: float) -> bool:
        return now - self.started_at <= DRAFT_SOURCES_FRESH_SECONDS


_Offered = tuple[list[ModelOption], list[ToolOffer]]


@dataclass
class _OfferReads:
    """The models and tools a person may use, read while they type (see
    `draft_changed`): they depend on the person alone, not on the draft."""

    started_at: float  # time.monotonic()
    read: asyncio.Task[_Offered | None]

    def fresh(self, now: float) -> bool:
        return now - self.started_at <= DRAFT_SOURCES_FRESH_SECONDS


def _outcome_read(task: asyncio.Task) -> None:
    """For a task whose result may go unused (a plan or a draft's reads made ahead):
    its outcome is read, so a failure nobody awaits is not reported as unseen."""
    if not task.cancelled():
        task.exception()


# A file in one of these states has not been read yet: its text is not known.
UNREAD_FILE_STATUSES = ("uploading", "processing")


class ChatEngine:
    def __init__(
        self,
        *,
        models: ModelDirectory,
        tools: ToolBox | None,
        settings: Settings | None = None,
        embedder: Embedder | None = None,
    ) -> None:
        self._models = models
        self._tools = tools
        self._settings = settings
        self._embedder = embedder
        self._live: dict[uuid.UUID, LiveReply] = {}
        self._background: set[asyncio.Task] = set()
        self._titling: dict[uuid.UUID, asyncio.Task] = {}
        self._accepting = True
        self._parallel_plans = asyncio.Semaphore(PARALLEL_PLANS)
        # Each page's draft and the sources found for it, by the page's key.
        self._drafts: dict[str, _DraftReads] = {}
        # What each person typing may use, by their id.
        self._offers: dict[uuid.UUID, _OfferReads] = {}

    @property
    def settings(self) -> Settings:
        return self._settings or get_settings()

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = get_embedder(self.settings)
        return self._embedder

    # -- starting replies ---------------------------------------------------------------

    def draft_changed(self, *, page: str, owner_id: uuid.UUID, text: str) -> None:
        """A page's draft changed (the composer tells only once typing pauses): its
        sources are found as a message's would be (the profile, and the memories and
        documents it calls up, embedding it if anything is embedded to compare with), so
        that sending it soon after goes straight to the model. A newer draft from the
        same page replaces the one being read."""
        try:
            text = conversations.checked_message(text)  # as `send` will store it
        except conversations.MessageRefused:
            text = ""
        previous = self._drafts.get(page)
        if (
            previous is not None
            and previous.owner_id == owner_id
            and previous.text == text
            and previous.fresh(time.monotonic())
        ):
            return  # told again, unchanged: what is being read still holds
        if previous is not None:
            del self._drafts[page]
            previous.found.cancel()
        self._forget_stale_drafts()
        if not text.strip():
            return
        reads = _DraftReads(
            owner_id=owner_id,
            text=text,
            started_at=time.monotonic(),
            found=asyncio.create_task(self._sources_for_draft(owner_id, text)),
        )
        self._drafts[page] = reads
        reads.found.add_done_callback(_outcome_read)  # claimed or not
        self._read_offers_ahead(owner_id)

    def _read_offers_ahead(self, owner_id: uuid.UUID) -> None:
        """The models and tools on offer to this person, read now unless read moments
        ago: a send soon after plans with them instead of reading them again."""
        if owner_id in self._offers or self._parallel_plans.locked():
            return  # fresh (stale ones are gone by now), or busy: sends read their own
        offers = _OfferReads(
            started_at=time.monotonic(),
            read=asyncio.create_task(self._offered_to(owner_id)),
        )
        self._offers[owner_id] = offers
        offers.read.add_done_callback(_outcome_read)  # used or not

    async def _offered_to(self, owner_id: uuid.UUID) -> _Offered | None:
        """None when they could not be read (a send then reads them for itself)."""
        try:
            async with statement_scope() as session:
                return await self._read_offered(session, owner_id)
        except Exception:  # noqa: BLE001 - only a head start; sending reads anew
            logger.debug("reading the models and tools on offer failed", exc_info=True)
            return None

    async def _read_offered(self, session: AsyncSession, owner_id: uuid.UUID) -> _Offered:
        """The models this person may use and their connected services as tools."""
        options = await self._models.options(session=session, owner_id=owner_id)
        offers = (
            await self._tools.offers(session=session, owner_id=owner_id)
            if self._tools is not None
            else []
        )
        return options, offers

    async def _sources_for_draft(self, owner_id: uuid.UUID, text: str) -> FoundSources | None:
        """None when it could not be read (the send then reads for itself)."""
        try:
            if self._parallel_plans.locked():
                # Busy: the connections are kept for messages being sent. Only the
                # embedding (on the CPU, not a connection) is done ahead.
                await warm_query(owner_id=owner_id, query=text, embedder=self.embedder)
                return None
            async with self._parallel_plans, statement_scope() as session:
                return await find_sources(
                    session=session,
                    owner_id=owner_id,
                    query=text,
                    embedder=self.embedder,
                    parallel=True,
                )
        except Exception:  # noqa: BLE001 - a draft is only a head start; sending reads anew
            logger.debug("reading for a draft failed", exc_info=True)
            return None

    def _forget_stale_drafts(self) -> None:
        now = time.monotonic()
        for page, reads in list(self._drafts.items()):
            if not reads.fresh(now):
                reads.found.cancel()
                del self._drafts[page]
        for owner_id, offers in list(self._offers.items()):
            if not offers.fresh(now):
                del self._offers[owner_id]  # not cancelled: a plan may be waiting for it

    def _offers_read_ahead(self, owner_id: uuid.UUID) -> asyncio.Task[_Offered | None] | None:
        """The models and tools on offer to this person, read moments ago (or being
        read). Shared by every plan in that time: they only read it."""
        offers = self._offers.get(owner_id)
        if offers is None or not offers.fresh(time.monotonic()):
            return None  # a stale one is dropped at the next draft or claim
        return offers.read

    def _claim_draft_sources(
        self, owner_id: uuid.UUID, text: str
    ) -> asyncio.Task[FoundSources | None] | None:
        """The sources found for a draft of exactly this message, read moments ago (or
        still being read), taken so that no other send uses them."""
        self._forget_stale_drafts()
        for page, reads in list(self._drafts.items()):
            if reads.owner_id == owner_id and reads.text == text:
                del self._drafts[page]
                return reads.found
        return None

    def prepare(
        self,
        *,
        owner_id: uuid.UUID,
        conversation_id: uuid.UUID,
        content: str,
        attachment_ids: list[uuid.UUID] | None = None,
        user_name: str | None = None,
    ) -> PreparedReply:
        """Start reading what a reply to this message will need, before it is sent.

        For a page that knows who is signed in but has yet to check the session again:
        the reads run meanwhile. Only reads: nothing is stored or shown, and `send`
        uses the result only for the same person, conversation and message; the caller
        cancels it otherwise. Raises MessageRefused for a message that cannot be sent.
        """
        pending = PendingMessage(
            content=conversations.checked_message(content),
            attachment_ids=_attachment_keys(attachment_ids),
            message_id=uuid.uuid4(),
            reply_id=uuid.uuid4(),
        )
        planning = asyncio.create_task(
            self._plan_pending(owner_id, conversation_id, pending, user_name=user_name)
        )
        planning.add_done_callback(_outcome_read)  # used or not
        return PreparedReply(owner_id, conversation_id, user_name, pending, planning)

    async def send(
        self,
        *,
        owner_id: uuid.UUID,
        conversation_id: uuid.UUID,
        content: str,
        attachment_ids: list[uuid.UUID] | None = None,
        user_name: str | None = None,
        prepared: PreparedReply | None = None,
    ) -> tuple[conversations.MessageView, conversations.MessageView]:
        """Store the person's message and start the reply; returns both rows.

        The reply's context is read while the message is being stored (or was already
        being read: `prepared`, from `prepare`), neither waiting for the other; the
        model is asked only once the message is committed.
        """
        if prepared is not None:
            prepared.claimed = True
        if prepared is not None and not _prepared_for(
            prepared, owner_id, conversation_id, content, attachment_ids, user_name
        ):
            prepared.cancel()
            prepared = None
        try:
            self._refuse_when_stopping()
        except ServerStoppingError:
            if prepared is not None:
                prepared.cancel()
            raise
        if prepared is None:
            prepared = self.prepare(
                owner_id=owner_id,
                conversation_id=conversation_id,
                content=content,
                attachment_ids=attachment_ids,
                user_name=user_name,
            )
        pending, planning = prepared.pending, prepared.planning
        try:
            # One statement, committed as it runs: no BEGIN or COMMIT on the way.
            async with statement_scope() as session:
                user_message, reply = await conversations.add_exchange(
                    session=session,
                    owner_id=owner_id,
                    conversation_id=conversation_id,
                    content=content,
                    attachment_ids=attachment_ids,
                    message_id=pending.message_id,
                    reply_id=pending.reply_id,
                )
        except BaseException:
            planning.cancel()
            await asyncio.gather(planning, return_exceptions=True)
            raise
        self._launch(
            reply, user_name=user_name, first_message=user_message.content, planning=planning
        )
        return user_message, reply

    async def regenerate(
        self, *, owner_id: uuid.UUID, conversation_id: uuid.UUID, user_name: str | None = None
    ) -> conversations.MessageView:
        self._refuse_when_stopping()
        async with session_scope() as session:
            await conversations.prepare_regenerate(
                session=session, owner_id=owner_id, conversation_id=conversation_id
            )
            reply = await conversations.start_reply(
                session=session, owner_id=owner_id, conversation_id=conversation_id, model=None
            )
            await session.commit()
        self._launch(reply, user_name=user_name)
        return reply

    async def edit_and_resend(
        self,
        *,
        owner_id: uuid.UUID,
        conversation_id: uuid.UUID,
        message_id: uuid.UUID,
        content: str,
        user_name: str | None = None,
    ) -> conversations.MessageView:
        self._refuse_when_stopping()
        async with session_scope() as session:
            await conversations.edit_last_user_message(
                session=session,
                owner_id=owner_id,
                conversation_id=conversation_id,
                message_id=message_id,
                content=content,
            )
            reply = await conversations.start_reply(
                session=session, owner_id=owner_id, conversation_id=conversation_id, model=None
            )
            await session.commit()
        self._launch(reply, user_name=user_name)
        return reply

    async def answer_confirmation(
        self,
        *,
        owner_id: uuid.UUID,
        message_id: uuid.UUID,
        approve: bool,
        user_name: str | None = None,
    ) -> bool:
        """The person approved or declined the action a waiting reply asked for."""
        self._refuse_when_stopping()
        async with session_scope() as session:
            message = await conversations.reopen_waiting_reply(
                session=session, owner_id=owner_id, message_id=message_id
            )
            await session.commit()
        if message is None:
            return False
        self._launch(message, user_name=user_name, confirmation=approve)
        return True

    def _launch(
        self,
        reply: conversations.MessageView,
        *,
        user_name: str | None,
        first_message: str | None = None,
        confirmation: bool | None = None,
        planning: asyncio.Task[_Planned | None] | None = None,
    ) -> LiveReply:
        live = LiveReply(
            message_id=reply.id,
            conversation_id=reply.conversation_id,
            owner_id=_owner_of(reply),
            content=reply.content,
            details=dict(reply.details),
        )
        self._live[reply.id] = live
        metrics.chat_stream_started()
        live.task = asyncio.create_task(
            self._write(
                live,
                user_name=user_name,
                first_message=first_message,
                confirmation=confirmation,
                planning=planning,
            ),
            name=f"reply-{reply.id}",
        )
        return live

    @property
    def accepting(self) -> bool:
        return self._accepting

    def stop_accepting(self) -> None:
        """The server is going down: new replies are refused, running ones go on."""
        self._accepting = False

    def _refuse_when_stopping(self) -> None:
        if not self._accepting:
            raise ServerStoppingError()

    # -- following and stopping ---------------------------------------------------------

    def live(self, message_id: uuid.UUID) -> LiveReply | None:
        return self._live.get(message_id)

    def live_ids(self) -> list[uuid.UUID]:
        return list(self._live)

    async def follow(
        self, *, owner_id: uuid.UUID, message_id: uuid.UUID
    ) -> AsyncIterator[Snapshot]:
        """Snapshots of a live reply as it changes, ending with its final state."""
        live = self._live.get(message_id)
        if live is None or live.owner_id != owner_id:
            return
        seen = -1
        while True:
            async with live.changed:
                if live.version == seen and not live.finished:
                    await live.changed.wait()
            seen = live.version
            yield Snapshot(
                message_id=live.message_id,
                content=live.content,
                details=live.details,
                status=live.status,
                error=live.error,
            )
            if live.finished:
                return

    async def stop(self, *, owner_id: uuid.UUID, message_id: uuid.UUID) -> bool:
        """End a reply and keep what arrived. Works for a reply another instance writes."""
        live = self._live.get(message_id)
        if live is not None and live.owner_id == owner_id and live.task is not None:
            live.stop_requested = True
            live.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(live.task)
            return True
        async with session_scope() as session:
            message = await conversations.get_message(
                session=session, owner_id=owner_id, message_id=message_id
            )
            if message is None:
                return False
            stopped = await conversations.finish_reply(
                session=session,
                owner_id=owner_id,
                message_id=message_id,
                content=message.content,
                status=MessageStatus.stopped,
            )
            await session.commit()
        return stopped

    async def shutdown(self) -> int:
        """The server is stopping: no new reply starts, those in flight are saved as
        interrupted (their text kept) so another instance can show and regenerate them.
        Returns how many replies were in flight."""
        self.stop_accepting()
        for reads in self._drafts.values():
            reads.found.cancel()  # nobody will send them now
        self._drafts.clear()
        for offers in self._offers.values():
            offers.read.cancel()
        self._offers.clear()
        ids: list[uuid.UUID] = []
        # A send that passed the check just before may launch while we wait: loop.
        while self._live:
            batch = list(self._live.values())
            ids.extend(live.message_id for live in batch)
            for live in batch:
                if live.task is not None:
                    live.task.cancel()
            for live in batch:
                if live.task is not None:
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await live.task
                self._live.pop(live.message_id, None)
        if not ids:
            return 0
        # Writers save their own text as interrupted; this catches any that could not.
        async with session_scope() as session:
            await conversations.mark_replies_interrupted(session=session, message_ids=ids)
            await session.commit()
        return len(ids)

    # -- the reply task -----------------------------------------------------------------

    async def _write(
        self,
        live: LiveReply,
        *,
        user_name: str | None,
        first_message: str | None,
        confirmation: bool | None,
        planning: asyncio.Task[_Planned | None] | None = None,
    ) -> None:
        autosave: asyncio.Task | None = None
        header: asyncio.Task | None = None
        try:
            planned = await planning if planning is not None else None
            if planned is None:
                planned = await self._plan(live, user_name=user_name)
            plan, offers = planned
            live.details = {**live.details, **plan.details()}
            if plan.option is not None:
                live.details["model_label"] = plan.option.label
            # The plan's details (model, sources) reach the page with the first words,
            # or on their own if those are slow to come: a frame of its own just before
            # the first words would only hold them up on the page.
            header = asyncio.create_task(self._publish_unless_written(live))
            # Its first save (the plan's details) comes after the model call has started,
            # not on the way to the first words.
            autosave = asyncio.create_task(self._autosave(live, first_after=FIRST_SAVE_SECONDS))
            if plan.offline:
                await self._write_offline(live, plan)
            else:
                await self._write_with_model(live, plan, offers, confirmation=confirmation)
            autosave.cancel()
            if live.status == MessageStatus.streaming.value:
                if first_message is not None and plan.untitled:
                    # Asked after the reply, so the model's two answers never interleave;
                    # only while the conversation has no title (a model call costs).
                    titling = asyncio.create_task(self._title(live, plan, first_message))
                    self._titling[live.conversation_id] = titling
                    titling.add_done_callback(
                        lambda _: self._titling.pop(live.conversation_id, None)
                    )
                await self._finish(live, MessageStatus.complete)
                self._after_exchange(live)
        except asyncio.CancelledError:
            if live.ended_elsewhere:
                live.status = MessageStatus.stopped.value
                await live.publish()
                return
            status = MessageStatus.stopped if live.stop_requested else MessageStatus.interrupted
            await asyncio.shield(self._finish(live, status))
            if not live.stop_requested:
                raise
        except _ReplyEnded:
            # Stopped elsewhere (another instance, or the row is gone): nothing to save.
            live.status = MessageStatus.stopped.value
            await live.publish()
        except ModelError as error:
            await self._finish(live, MessageStatus.failed, error=str(error))
        except conversations.ConversationNotFound:
            live.status = MessageStatus.failed.value
            await live.publish()
        except Exception:
            logger.exception("reply %s failed", live.message_id)
            await self._finish(live, MessageStatus.failed, error=FAILED_REPLY)
        finally:
            if autosave is not None:
                autosave.cancel()
            if header is not None:
                header.cancel()
            self._live.pop(live.message_id, None)
            metrics.chat_stream_ended(live.status)

    async def _publish_unless_written(self, live: LiveReply) -> None:
        await asyncio.sleep(HEADER_WAIT_SECONDS)
        if live.version == 0:
            await live.publish()

    async def _autosave(self, live: LiveReply, *, first_after: float = 0.0) -> None:
        """Save the reply after `first_after` seconds, then what has arrived every
        SAVE_INTERVAL_SECONDS, even while the model pauses. A reply no longer
        `streaming` in the database (stopped elsewhere, or deleted) ends its task."""
        saved_version: int | None = None
        if first_after:
            await asyncio.sleep(first_after)
        while True:
            if live.version != saved_version:
                saved_version = live.version
                try:
                    await self._save(live)
                except _ReplyEnded:
                    live.ended_elsewhere = True
                    if live.task is not None:
                        live.task.cancel()
                    return
            await asyncio.sleep(SAVE_INTERVAL_SECONDS)

    async def _await_attachments(self, live: LiveReply) -> None:
        """Files sent with the message are read (processed) before the reply uses them."""
        deadline = time.monotonic() + ATTACHMENT_WAIT_SECONDS
        while True:
            async with session_scope() as session:
                pending = await attachments_still_processing(
                    session=session, owner_id=live.owner_id, conversation_id=live.conversation_id
                )
            if not pending or time.monotonic() > deadline:
                return
            if live.details.get("preparing") is None:
                live.details["preparing"] = "Reading the attached files…"
                await live.publish()
            await asyncio.sleep(0.4)

    async def _plan(self, live: LiveReply, *, user_name: str | None) -> _Planned:
        """The reply's context, and the tools offered to its model."""
        # Usually no file is still being read: then one session checks and plans. A
        # plan only reads, each read on its own: no BEGIN and COMMIT around them.
        async with statement_scope() as session:
            if not await attachments_still_processing(
                session=session, owner_id=live.owner_id, conversation_id=live.conversation_id
            ):
                return await self._plan_in(
                    session, live.owner_id, live.conversation_id, user_name=user_name
                )
        await self._await_attachments(live)
        live.details.pop("preparing", None)
        async with statement_scope() as session:
            return await self._plan_in(
                session, live.owner_id, live.conversation_id, user_name=user_name
            )

    async def _plan_pending(
        self,
        owner_id: uuid.UUID,
        conversation_id: uuid.UUID,
        pending: PendingMessage,
        *,
        user_name: str | None,
    ) -> _Planned | None:
        """The plan for a message being stored; None when one of its files is still
        being read (the reply then waits for it and plans again)."""
        async with statement_scope() as session:
            planned = await self._plan_in(
                session, owner_id, conversation_id, user_name=user_name, pending=pending
            )
        if any(attachment.status in UNREAD_FILE_STATUSES for attachment in planned[0].attachments):
            return None
        return planned

    async def _plan_in(
        self,
        session: AsyncSession,
        owner_id: uuid.UUID,
        conversation_id: uuid.UUID,
        *,
        user_name: str | None,
        pending: PendingMessage | None = None,
    ) -> _Planned:
        async def credentials_for(option: ModelOption) -> ModelCredentials:
            return await self._models.credentials(session=session, owner_id=owner_id, option=option)

        offered: list[ToolOffer] = []

        async def options_and_tools(on: AsyncSession) -> list[ModelOption]:
            # Both are read while the sources are found on other connections, so the
            # tools cost nothing on the way to the first token; they are offered only
            # if the chosen model takes them.
            options, offers = await self._read_offered(on, owner_id)
            offered.extend(offers)
            return options

        # Read while the person typed, moments ago (see `draft_changed`).
        read_ahead = self._offers_read_ahead(owner_id)

        async def offered_ahead() -> list[ModelOption] | None:
            if read_ahead is None:
                return None
            try:
                # Shielded: other plans may be waiting for the same reads.
                ahead = await asyncio.shield(read_ahead)
            except asyncio.CancelledError:
                if not read_ahead.cancelled():
                    raise  # this plan was cancelled, not the reads
                return None
            if ahead is None:
                return None
            options, offers = ahead
            offered.extend(offers)
            return list(options)

        async def options_and_tools_apart() -> list[ModelOption]:
            ahead = await offered_ahead()
            if ahead is not None:
                return ahead
            reads = statement_engine_for(engine_of(session))
            async with AsyncSession(bind=reads, expire_on_commit=False) as own:
                return await options_and_tools(own)

        async def options_and_tools_here() -> list[ModelOption]:
            ahead = await offered_ahead()
            return ahead if ahead is not None else await options_and_tools(session)

        # Sources read for this very message while it was a draft are not read again.
        drafted = (
            self._claim_draft_sources(owner_id, pending.content) if pending is not None else None
        )
        # This session writes nothing: the sources, and the models and tools on offer,
        # may be read on connections of their own, at the same time as the thread. A
        # plan doing so holds this connection while it waits for those: with many at
        # once they could take the whole pool and wait on each other, so past
        # PARALLEL_PLANS the others read one after another on this one.
        parallel = not self._parallel_plans.locked()
        async with self._parallel_plans if parallel else contextlib.nullcontext():
            options: Awaitable[list[ModelOption]] = (
                asyncio.create_task(options_and_tools_apart())
                if parallel
                # Read after the conversation, once the sources are being found alongside.
                else options_and_tools_here()
            )
            try:
                plan = await plan_reply(
                    session=session,
                    settings=self.settings,
                    owner_id=owner_id,
                    conversation_id=conversation_id,
                    embedder=self.embedder,
                    options=options,
                    credentials_for=credentials_for,
                    user_name=user_name,
                    parallel_search=parallel,
                    pending=pending,
                    drafted=drafted,
                )
            finally:
                if isinstance(options, asyncio.Task) and not options.done():
                    # The plan failed before it needed them: nothing is left running.
                    options.cancel()
                    await asyncio.gather(options, return_exceptions=True)
        offers = offered if plan.option is not None and plan.option.tools else []
        return plan, offers

    async def _write_offline(self, live: LiveReply, plan: ReplyPlan) -> None:
        async with session_scope() as session:
            reply = await offline.compose_offline_reply(
                session=session, owner_id=live.owner_id, plan=plan, embedder=self.embedder
            )
        live.details["offline"] = True
        separator = "\n\n" if live.content else ""
        live.content += separator
        async for event in offline.stream_text(
            reply, words_per_second=self.settings.offline_words_per_second
        ):
            if isinstance(event, TextDelta):
                await self._append(live, event.text)

    async def _write_with_model(
        self,
        live: LiveReply,
        plan: ReplyPlan,
        offers: list[ToolOffer],
        *,
        confirmation: bool | None,
    ) -> None:
        assert plan.option is not None and plan.credentials is not None
        by_name = {offer.spec.name: offer for offer in offers}
        rounds = _Round.from_json(live.details.pop("pending_turns", None) or [])
        if confirmation is not None:
            finished = await self._resolve_confirmation(live, rounds, approve=confirmation)
            if not finished:
                return
        usage_in = usage_out = 0
        for _ in range(MAX_TOOL_ROUNDS + 1):
            calls: list[ToolCall] = []
            round_text = ""
            if live.content and not live.content.endswith("\n"):
                await self._append(live, "\n\n")
            async for event in stream_reply(
                option=plan.option,
                credentials=plan.credentials,
                system=plan.system_prompt,
                turns=[*plan.turns, *rounds.extra_turns],
                tools=[offer.spec for offer in offers],
                max_tokens=self.settings.reply_max_tokens,
            ):
                if isinstance(event, TextDelta):
                    round_text += event.text
                    await self._append(live, event.text)
                elif isinstance(event, ToolCallRequested):
                    calls.append(ToolCall(id=event.id, name=event.name, arguments=event.arguments))
                elif isinstance(event, StreamFinished):
                    usage_in += event.input_tokens or 0
                    usage_out += event.output_tokens or 0
            live.details["usage"] = {"input_tokens": usage_in, "output_tokens": usage_out}
            if not calls:
                return
            rounds.extra_turns.append(ChatTurn(role="assistant", text=round_text, tool_calls=calls))
            results: list[ToolResult] = []
            writes: list[ToolCall] = []
            for call in calls:
                offer = by_name.get(call.name)
                if offer is not None and offer.writes:
                    writes.append(call)
                else:
                    results.append(await self._run_tool(live, call, offer))
            if writes:
                # Reads have run; each action waits for the person's answer in turn.
                for call in writes:
                    live.details.setdefault("steps", []).append(
                        self._step(call, by_name.get(call.name), "queued")
                    )
                await self._wait_for_confirmation(live, writes, results, rounds)
                return
            rounds.extra_turns.append(ChatTurn(role="user", tool_results=results))
        await self._append(live, "\n\n*Stopped after too many tool calls in a row.*")

    def _step(self, call: ToolCall, offer: ToolOffer | None, status: str) -> dict[str, Any]:
        describe = (
            self._tools.describe(name=call.name, arguments=call.arguments)
            if self._tools
            else call.name
        )
        return {
            "id": call.id,
            "name": call.name,
            "title": offer.title if offer else call.name,
            "call": describe,
            "status": status,
            "result": "",
        }

    def _update_step(self, live: LiveReply, call_id: str, **changes: Any) -> None:
        for step in live.details.setdefault("steps", []):
            if step["id"] == call_id:
                step.update(changes)

    async def _run_tool(
        self, live: LiveReply, call: ToolCall, offer: ToolOffer | None
    ) -> ToolResult:
        live.details.setdefault("steps", []).append(self._step(call, offer, "running"))
        await self._save(live)
        await live.publish()
        if offer is None or self._tools is None:
            outcome = ToolRun(
                ok=False, content=f"There is no tool named {call.name}.", summary="Unknown tool"
            )
        else:
            async with session_scope() as session:
                outcome = await self._tools.run(
                    session=session,
                    owner_id=live.owner_id,
                    name=call.name,
                    arguments=call.arguments,
                )
                await session.commit()
        self._update_step(
            live, call.id, status="done" if outcome.ok else "failed", result=outcome.summary
        )
        await self._save(live)
        await live.publish()
        return ToolResult(call_id=call.id, content=outcome.content, is_error=not outcome.ok)

    async def _wait_for_confirmation(
        self,
        live: LiveReply,
        writes: list[ToolCall],
        results: list[ToolResult],
        rounds: _Round,
    ) -> None:
        self._update_step(live, writes[0].id, status="waiting")
        live.details["pending_calls"] = [
            {"id": call.id, "name": call.name, "arguments": call.arguments} for call in writes
        ]
        live.details["pending_results"] = [
            {"call_id": result.call_id, "content": result.content, "is_error": result.is_error}
            for result in results
        ]
        live.details["pending_turns"] = rounds.as_json()
        await self._finish(live, MessageStatus.waiting)

    async def _resolve_confirmation(
        self, live: LiveReply, rounds: _Round, *, approve: bool
    ) -> bool:
        """Carry out (or not) the first waiting action; True once none is left waiting."""
        pending = list(live.details.pop("pending_calls", None) or [])
        results = [ToolResult(**item) for item in live.details.pop("pending_results", None) or []]
        if not pending:
            return True
        first = pending.pop(0)
        call = ToolCall(id=first["id"], name=first["name"], arguments=first["arguments"])
        results.append(await self._confirmed_call(live, call, approve=approve))
        if pending:
            following = [
                ToolCall(id=item["id"], name=item["name"], arguments=item["arguments"])
                for item in pending
            ]
            await self._wait_for_confirmation(live, following, results, rounds)
            return False
        rounds.extra_turns.append(ChatTurn(role="user", tool_results=results))
        return True

    async def _confirmed_call(
        self, live: LiveReply, call: ToolCall, *, approve: bool
    ) -> ToolResult:
        if not approve:
            self._update_step(live, call.id, status="declined", result="You declined.")
            await self._save(live)
            await live.publish()
            return ToolResult(
                call_id=call.id,
                content="The person declined this action; it was not carried out.",
                is_error=True,
            )
        outcome: ToolRun
        if self._tools is None:
            outcome = ToolRun(ok=False, content="Tools are not available.", summary="Unavailable")
        else:
            self._update_step(live, call.id, status="running")
            await live.publish()
            async with session_scope() as session:
                outcome = await self._tools.run(
                    session=session,
                    owner_id=live.owner_id,
                    name=call.name,
                    arguments=call.arguments,
                )
                await session.commit()
        self._update_step(
            live, call.id, status="done" if outcome.ok else "failed", result=outcome.summary
        )
        await self._save(live)
        await live.publish()
        return ToolResult(call_id=call.id, content=outcome.content, is_error=not outcome.ok)

    async def _append(self, live: LiveReply, piece: str) -> None:
        if not piece:
            return
        if live.first_text_at is None and piece.strip():
            live.first_text_at = time.monotonic()
            metrics.chat_first_token(live.first_text_at - live.started_at)
        live.content += piece
        await live.publish()
        # A stream whose next pieces have already arrived reads on without ever giving
        # the loop away: the pages following it would see nothing until the burst ends.
        # The first words get the turns their frame needs to leave (the follower's
        # update, then the socket's writer); each later piece, one turn.
        first_words = live.first_text_at is not None and not live.first_words_out
        live.first_words_out = live.first_words_out or first_words
        for _ in range(FIRST_WORDS_OUT_TICKS if first_words else 1):
            await asyncio.sleep(0)

    async def _save(self, live: LiveReply) -> None:
        async with session_scope() as session:
            still_streaming = await conversations.save_reply_progress(
                session=session,
                owner_id=live.owner_id,
                message_id=live.message_id,
                content=live.content,
                details=_stored(live.details),
            )
            await session.commit()
        if not still_streaming:
            raise _ReplyEnded()

    async def _finish(
        self, live: LiveReply, status: MessageStatus, *, error: str | None = None
    ) -> None:
        usage = live.details.get("usage") or {}
        async with session_scope() as session:
            await conversations.finish_reply(
                session=session,
                owner_id=live.owner_id,
                message_id=live.message_id,
                content=live.content,
                status=status,
                error=error,
                details=_stored(live.details),
                input_tokens=usage.get("input_tokens"),
                output_tokens=usage.get("output_tokens"),
            )
            await session.commit()
        live.status = status.value
        live.error = error
        await live.publish()

    # -- after a complete exchange ------------------------------------------------------

    def _after_exchange(self, live: LiveReply) -> None:
        task = asyncio.create_task(self._follow_up(live))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _title(self, live: LiveReply, plan: ReplyPlan, first_message: str) -> None:
        try:
            title = await title_for(
                message=first_message, option=plan.option, credentials=plan.credentials
            )
            if title:
                async with session_scope() as session:
                    await conversations.title_if_untitled(
                        session=session,
                        owner_id=live.owner_id,
                        conversation_id=live.conversation_id,
                        title=title,
                    )
                    await session.commit()
        except Exception:
            logger.exception("titling the conversation of reply %s failed", live.message_id)

    async def _follow_up(self, live: LiveReply) -> None:
        try:
            async with session_scope() as session:
                await _enqueue_memory_extraction(session=session, live=live)
                await session.commit()
        except Exception:
            logger.exception("queueing memory extraction for reply %s failed", live.message_id)

    async def title_ready(self, conversation_id: uuid.UUID) -> None:
        """Wait (a little) for a new conversation's title, so the page can show it."""
        titling = self._titling.get(conversation_id)
        if titling is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(titling), TITLE_WAIT_SECONDS)

    async def wait_for_background(self) -> None:
        """Tests and shutdown: let titling and job enqueueing finish."""
        while self._background or self._titling:
            await asyncio.gather(
                *list(self._background), *list(self._titling.values()), return_exceptions=True
            )


def _attachment_keys(attachment_ids: list[uuid.UUID] | None) -> list[str]:
    # As the message stores them: in the order attached, without repeats.
    return [str(file_id) for file_id in dict.fromkeys(attachment_ids or [])]


def _prepared_for(
    prepared: PreparedReply,
    owner_id: uuid.UUID,
    conversation_id: uuid.UUID,
    content: str,
    attachment_ids: list[uuid.UUID] | None,
    user_name: str | None,
) -> bool:
    pending = prepared.pending
    return (
        prepared.owner_id == owner_id
        and prepared.conversation_id == conversation_id
        and prepared.user_name == user_name
        # (As `checked_message` leaves it; the length was checked when it was prepared.)
        and pending.content == content.replace("\x00", "")
        and pending.attachment_ids == _attachment_keys(attachment_ids)
    )


class _ReplyEnded(Exception):
    """The stored reply is no longer streaming (stopped elsewhere, or deleted)."""


def _stored(details: dict[str, Any]) -> dict[str, Any]:
    # Keys starting with "_" are this process's bookkeeping, not the message's.
    return json.loads(
        json.dumps({k: v for k, v in details.items() if not k.startswith("_")}, default=str)
    )


def _owner_of(reply: conversations.MessageView) -> uuid.UUID:
    owner = getattr(reply, "owner_id", None)
    if owner is None:
        raise ValueError("a reply row must carry its owner")
    return owner


async def _enqueue_memory_extraction(*, session: AsyncSession, live: LiveReply) -> None:
    from carmenta.memory import tasks as memory_tasks

    user_message = await conversations.previous_user_message(
        session=session, owner_id=live.owner_id, message_id=live.message_id
    )
    if user_message is None:
        return
    await memory_tasks.enqueue_memory_extraction(
        session=session,
        owner_id=live.owner_id,
        user_message_id=user_message.id,
        assistant_message_id=live.message_id,
    )
