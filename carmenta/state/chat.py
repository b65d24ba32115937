"""A conversation's page: the thread, the composer, and following a reply as it streams.

The reply is written by the chat engine, not by this state: a handler stores the
person's message, starts the reply and returns; a background event follows the reply
and copies what arrived into the page a few times a second.

The page's state is split by how often it changes, because a change re-renders
everything that reads the state it belongs to: `ThreadState` holds the conversation
as read from the database (it changes when the thread does); `LiveReplyState` holds
the message just sent and the reply being followed (it changes with every frame);
`ChatState` holds the rest. Sending and streaming therefore never re-render the
whole thread, which on a long conversation took longer than the first words.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from urllib.parse import urlsplit

import reflex as rx

from carmenta.auth.service import AuthenticatedUser
from carmenta.chat import research, thread
from carmenta.chat import service as chat_service
from carmenta.chat.engine import PreparedReply, ServerStoppingError
from carmenta.conversations import service as conversations
from carmenta.db import session_scope
from carmenta.errors import CarmentaError
from carmenta.jobs import service as jobs
from carmenta.settings import get_settings
from carmenta.state.conversation_list import ConversationListState
from carmenta.state.session import SessionState

# What the send returns when the reply it started is to be followed at once.
_FOLLOW = object()
# The id of the message on screen, and of its reply, while the message is being stored.
SENDING_ID = "sending"
# Updates to the page while a reply streams, at most this often.
FRAME_SECONDS = 0.05
# Turns of the event loop the socket's writer needs to send a frame queued for it.
FRAME_OUT_TICKS = 3
# How long after a reply's first words the sidebar is reloaded (and at the latest when
# the reply ends).
SIDEBAR_RELOAD_AFTER_SECONDS = 0.5
OFFLINE_OPTION = "offline"
LONG_PASTE_CHARS = 4000


def _no_message(role: str) -> thread.ThreadMessage:
    return thread.ThreadMessage(id="", role=role, content="", status="")


class ThreadState(rx.State):
    """The conversation's messages as last read, and the message being edited."""

    messages: list[thread.ThreadMessage] = []
    editing_id: str = ""
    edit_text: str = ""

    @rx.var
    def last_user_id(self) -> str:
        for message in reversed(self.messages):
            if message.role == "user":
                return message.id
        return ""

    @rx.var
    def last_assistant_id(self) -> str:
        if self.messages and self.messages[-1].role == "assistant":
            return self.messages[-1].id
        return ""

    @rx.event
    def start_edit(self, message_id: str, content: str):
        self.editing_id = message_id
        self.edit_text = content

    @rx.event
    def set_edit_text(self, value: str):
        self.edit_text = value

    @rx.event
    def cancel_edit(self):
        self.editing_id = ""


class LiveReplyState(rx.State):
    """The message just sent and the reply this page follows while it streams (an
    empty id: none). Both join the thread when the reply ends."""

    asked: thread.ThreadMessage = _no_message("user")
    reply: thread.ThreadMessage = _no_message("assistant")
    # Their stored ids while they are followed. A message sent from this page goes on
    # showing as SENDING_ID until the first words of its reply: a frame that only
    # changed ids would reach the page just before those words and hold them up there.
    _asked_id: str = ""
    _reply_id: str = ""


def _conversation_id_from(url: str) -> uuid.UUID | None:
    parts = [part for part in urlsplit(url).path.split("/") if part]
    if len(parts) >= 2 and parts[-2] == "chat":
        try:
            return uuid.UUID(parts[-1])
        except ValueError:
            return None
    return None


@dataclass
class _Sending:
    """A message shown as sent, on its way to being stored."""

    text: str
    chips: list[thread.AttachmentChip]
    conversation_id: str
    prepared: PreparedReply | None = None
    session_check: asyncio.Task[AuthenticatedUser | None] | None = None

    @property
    def attachment_ids(self) -> list[uuid.UUID]:
        return [uuid.UUID(chip.id) for chip in self.chips]


class ChatState(SessionState):
    conversation_id: str = ""
    title: str = ""
    loading: bool = False
    not_found: bool = False
    error: str = ""
    draft: str = ""
    pending_attachments: list[thread.AttachmentChip] = []
    # The reply being written (its id), and a message being stored: backend-only, so
    # that the page hears only when `is_streaming` flips (see `_set_streaming`).
    _streaming_id: str = ""
    # A message is on screen and being stored (see `_show_sending`).
    _sending: bool = False
    is_streaming: bool = False
    models: list[dict[str, str]] = []
    model_choice: str = ""
    research_mode: bool = False
    # Whose reply `follow_reply` follows: set by the handler that verified them and
    # started (or found) the reply, so following needs no second check.
    _reply_owner: str = ""

    @rx.event
    def set_research_mode(self, value: bool):
        self.research_mode = value

    async def _research_job_of(self, message_id: str) -> int | None:
        for message in (await self.get_state(ThreadState)).messages:
            if message.id == message_id and message.research_job:
                return int(message.research_job)
        return None

    def _set_streaming(self, *, reply_id: str | None = None, sending: bool | None = None) -> None:
        """Change what is being sent or streamed; the page is told only when that
        changes whether anything is (a message stored, say, and its reply started)."""
        if reply_id is not None:
            self._streaming_id = reply_id
        if sending is not None:
            self._sending = sending
        streaming = bool(self._streaming_id) or self._sending
        if self.is_streaming != streaming:
            self.is_streaming = streaming

    @rx.var
    def model_label(self) -> str:
        for option in self.models:
            if option["id"] == self.model_choice:
                return option["label"]
        return "Offline assistant"

    async def _user_id(self) -> uuid.UUID | None:
        user = await self.verified_user()
        return user.user_id if user is not None else None

    async def _refresh(self, owner: uuid.UUID, conversation_id: uuid.UUID) -> None:
        async with session_scope() as session:
            conversation, messages = await thread.load_thread(
                session=session,
                settings=get_settings(),
                owner_id=owner,
                conversation_id=conversation_id,
            )
        self.title = conversation.title
        self.model_choice = conversation.model or self.model_choice
        live = await self.get_state(LiveReplyState)
        following = {live._reply_id, live._asked_id} - {""}
        if following:
            # A reply this page follows shows after the thread until it ends (with the
            # message it answers); in the thread as well, it would show twice.
            messages = [message for message in messages if message.id not in following]
        (await self.get_state(ThreadState)).messages = messages
        streaming = [m.id for m in messages if m.status == "streaming"]
        self._set_streaming(reply_id=streaming[-1] if streaming else "")

    async def _load_models(self, owner: uuid.UUID) -> None:
        try:
            async with session_scope() as session:
                options = await chat_service.model_options(session=session, owner_id=owner)
        except CarmentaError:
            options = []
        self.models = [{"id": option.id, "label": option.label} for option in options] + [
            {"id": OFFLINE_OPTION, "label": "Offline assistant"}
        ]
        if not self.model_choice or all(o["id"] != self.model_choice for o in self.models):
            default = get_settings().default_model
            ids = [option["id"] for option in self.models]
            self.model_choice = default if default in ids else ids[0]

    @rx.event
    async def load(self):
        """on_load of /chat/<id> and of the home page (a new conversation)."""
        self.loading = True
        self.error = ""
        self.not_found = False
        thread_state = await self.get_state(ThreadState)
        thread_state.editing_id = ""
        owner = await self._user_id()
        if owner is None:
            self.loading = False
            return None
        conversation_id = _conversation_id_from(str(self.router.url))
        self.conversation_id = str(conversation_id) if conversation_id else ""
        thread_state.messages = []
        self.title = ""
        self._set_streaming(reply_id="")
        self.model_choice = ""
        self._stop_following(await self.get_state(LiveReplyState))
        try:
            if conversation_id is not None:
                await self._refresh(owner, conversation_id)
            await self._load_models(owner)
        except conversations.ConversationNotFound:
            self.not_found = True
        except Exception:  # noqa: BLE001 - the page shows the failure instead of breaking
            self.error = "This conversation could not be loaded. Try again in a moment."
        self.loading = False
        if self._streaming_id and await self._research_job_of(self._streaming_id) is not None:
            return ChatState.poll_reply
        if self._streaming_id and chat_service.get_engine().live(uuid.UUID(self._streaming_id)):
            await self._start_following(owner, self._streaming_id)
            return ChatState.follow_reply
        if self._streaming_id:
            # Written by another instance: read it from the database until it ends.
            return ChatState.poll_reply
        return None

    @rx.event
    def set_draft(self, value: str):
        self.draft = value
        if self._verified_user_id and not self.research_mode:
            # Its sources are read once the typing pauses, so that sending it is quicker.
            chat_service.get_engine().draft_changed(
                page=self.router.session.client_token,
                owner_id=uuid.UUID(self._verified_user_id),
                text=value,
            )

    @rx.event
    def attached(self, info: dict):
        self.pending_attachments = [
            *self.pending_attachments,
            thread.AttachmentChip(
                id=str(info.get("id", "")),
                name=str(info.get("name", "file")),
                kind=str(info.get("kind", "")),
                size=thread.human_size(int(info.get("size_bytes") or info.get("size") or 0)),
            ),
        ]

    @rx.event
    def remove_attachment(self, file_id: str):
        self.pending_attachments = [a for a in self.pending_attachments if a.id != file_id]

    @rx.event
    async def choose_model(self, option_id: str):
        self.model_choice = option_id
        owner = await self._user_id()
        if owner is None or not self.conversation_id:
            return
        try:
            async with session_scope() as session:
                await conversations.set_model(
                    session=session,
                    owner_id=owner,
                    conversation_id=uuid.UUID(self.conversation_id),
                    model=option_id,
                )
                await session.commit()
        except CarmentaError as error:
            self.error = str(error)

    def _prepare_reply(self, text: str, attachments: list[uuid.UUID]) -> PreparedReply | None:
        """Start reading the reply's context for whoever this page last verified, while
        the send checks the session again; `None` when there is nothing to prepare."""
        engine = chat_service.get_engine()
        if (
            not self._verified_user_id
            or not self.conversation_id
            or self.research_mode
            or not engine.accepting
            or not (text.strip() or attachments)
        ):
            return None
        try:
            return engine.prepare(
                owner_id=uuid.UUID(self._verified_user_id),
                conversation_id=uuid.UUID(self.conversation_id),
                content=text,
                attachment_ids=attachments,
                user_name=self.user_name or None,
            )
        except CarmentaError:
            return None  # the send itself says what is wrong with the message

    @rx.event(background=True)
    async def send(self, form: dict | None = None):
        """Store the message and start its reply, then follow the reply from here.

        A background event so that following needs no second request from the page:
        the first words go out as soon as they arrive. The message shows as sent at
        once (its own frame, drawn while the server works); the state is then held
        while the message is stored, as an ordinary event would hold it.
        """
        sending = None
        async with self:
            sending = await self._show_sending(form)
        if sending is None:
            return
        # The frame that shows the message is on its way to the page: it leaves before
        # the session check and the reply's reads take the loop, so that the page draws
        # it while they run, and is free again when the first words come.
        for _ in range(FRAME_OUT_TICKS):
            await asyncio.sleep(0)
        # Started outside the state's lock: the engine uses the reads only for the same
        # person, conversation and message, once the session check has named them.
        # The check first (a task starts in the order it was made): the message is
        # stored only after it, while the reads, mostly done ahead as the person typed,
        # finish meanwhile.
        sending.session_check = self.start_session_check()
        sending.prepared = self._prepare_reply(sending.text, sending.attachment_ids)
        try:
            async with self:
                outcome = await self._send_now(sending)
                owner, message_id = self._reply_owner, self._streaming_id
        finally:
            if sending.prepared is not None and not sending.prepared.claimed:
                # Refused before the engine took it (signed out, say): dropped.
                sending.prepared.cancel()
            if sending.session_check is not None and not sending.session_check.done():
                sending.session_check.cancel()
        if outcome is _FOLLOW:
            async for event in self._follow(uuid.UUID(owner), message_id):
                yield event
        elif outcome:
            for event in outcome:
                yield event

    async def _show_sending(self, form: dict | None) -> _Sending | None:
        """The message on screen at once, as sent, while it is checked and stored: the
        page draws it meanwhile, and is free for the first words when they come."""
        text = self._message_in(form)
        if self._streaming_id or self._sending:
            self.error = "Wait for the reply to finish, or stop it first."
            return None
        chips = [chip for chip in self.pending_attachments if chip.id]
        if not text.strip() and not chips:
            self.error = "Write a message or attach a file first."
            return None
        try:
            conversations.checked_message(text)  # too long: said now, never shown as sent
        except CarmentaError as error:
            self.error = str(error)
            return None
        self.error = ""
        self._set_streaming(sending=True)
        self.draft = ""
        self.pending_attachments = []
        live = await self.get_state(LiveReplyState)
        live.asked = thread.ThreadMessage(
            id=SENDING_ID, role="user", content=text, status="complete", attachments=chips
        )
        live.reply = thread.ThreadMessage(
            id=SENDING_ID, role="assistant", content="", status="streaming"
        )
        return _Sending(text=text, chips=chips, conversation_id=self.conversation_id)

    def _message_in(self, form: dict | None) -> str:
        return str((form or {}).get("message", self.draft) or "")

    async def _send_now(self, sending: _Sending) -> list | object | None:
        """The send under the state's lock: events for the page, or _FOLLOW. Refused,
        the message leaves the thread and returns to the box."""
        outcome = None
        try:
            outcome = await self._send(sending)
        finally:
            self._set_streaming(sending=False)
            if outcome is None:
                live = await self.get_state(LiveReplyState)
                if live.asked.id == SENDING_ID:
                    self._stop_following(live)
                if sending.conversation_id == self.conversation_id:
                    self.draft = self.draft or sending.text
                    self.pending_attachments = self.pending_attachments or sending.chips
        return outcome

    async def _send(self, sending: _Sending):
        text, prepared, attachments = sending.text, sending.prepared, sending.attachment_ids
        user = await self.verified_user(sending.session_check)
        if user is None:
            return None
        if self.conversation_id != sending.conversation_id:
            return None  # the page moved to another conversation meanwhile
        if not self.research_mode and not chat_service.get_engine().accepting:
            # Refused before a new conversation is created for nothing.
            self.error = str(ServerStoppingError())
            return None
        new_conversation = not self.conversation_id
        try:
            if new_conversation:
                async with session_scope() as session:
                    conversation = await conversations.create_conversation(
                        session=session, owner_id=user.user_id, model=self.model_choice or None
                    )
                    await session.commit()
                self.conversation_id = str(conversation.id)
            if self.research_mode:
                async with session_scope() as session:
                    reply, _ = await research.start_research(
                        session=session,
                        owner_id=user.user_id,
                        conversation_id=uuid.UUID(self.conversation_id),
                        question=text,
                    )
                    await session.commit()
            else:
                sent, reply = await chat_service.get_engine().send(
                    owner_id=user.user_id,
                    conversation_id=uuid.UUID(self.conversation_id),
                    content=text,
                    attachment_ids=attachments,
                    user_name=user.display_name,
                    prepared=prepared,
                )
        except CarmentaError as error:
            # The message returns to the box (`_send_now`): nothing written is lost.
            self.error = str(error)
            if new_conversation:
                self.conversation_id = ""
            return None
        self._set_streaming(reply_id=str(reply.id))
        if new_conversation:
            return [
                rx.redirect(f"/chat/{self.conversation_id}"),
                ConversationListState.reload,
            ]
        if self.research_mode:
            self._stop_following(await self.get_state(LiveReplyState))
            await self._refresh(user.user_id, uuid.UUID(self.conversation_id))
            return [ChatState.poll_reply, ConversationListState.reload]
        # The thread is neither read again nor changed, and the page is not told: the
        # message and its reply go on showing after the thread, as drawn when it was
        # sent, until the first words (_follow); both join the thread when it ends.
        live = await self.get_state(LiveReplyState)
        self._reply_owner = str(user.user_id)
        live._asked_id, live._reply_id = str(sent.id), str(reply.id)
        # The sidebar is reloaded a moment after the first words (_follow): a
        # reload queued here would hold this page's state while they wait.
        return _FOLLOW

    async def _start_following(self, owner: uuid.UUID, reply_id: str) -> None:
        """The reply leaves the thread (when it is in it) for LiveReplyState while it
        streams."""
        self._reply_owner = str(owner)
        thread_state = await self.get_state(ThreadState)
        in_thread = next((m for m in thread_state.messages if m.id == reply_id), None)
        if in_thread is not None:
            thread_state.messages = [m for m in thread_state.messages if m.id != reply_id]
        live = await self.get_state(LiveReplyState)
        live.reply = in_thread or thread.ThreadMessage(
            id=reply_id, role="assistant", content="", status="streaming"
        )
        live._reply_id = reply_id
        if live.asked.id:
            live.asked = _no_message("user")
        live._asked_id = ""

    def _stop_following(self, live: LiveReplyState) -> None:
        self._reply_owner = ""
        live._asked_id = live._reply_id = ""
        if live.reply.id:
            live.reply = _no_message("assistant")
        if live.asked.id:
            live.asked = _no_message("user")

    @rx.event(background=True)
    async def follow_reply(self):
        async with self:
            message_id = self._streaming_id
            owner = uuid.UUID(self._reply_owner) if self._reply_owner else None
        if owner is None or not message_id:
            return
        async for event in self._follow(owner, message_id):
            yield event

    async def _follow(self, owner: uuid.UUID, message_id: str):
        """Copy a live reply into LiveReplyState as it grows (for background events)."""
        engine = chat_service.get_engine()
        last_frame = 0.0
        text_shown = False
        first = True
        # When the sidebar is to be reloaded (the conversation moves to the top), once the
        # first words are out; None: not due.
        reload_at: float | None = None
        async for snapshot in engine.follow(owner_id=owner, message_id=uuid.UUID(message_id)):
            if first and not snapshot.content and snapshot.status == "streaming":
                # The page already shows the reply starting: nothing to send yet.
                first = False
                continue
            first = False
            now = time.monotonic()
            # The first words go out at once (the frame before them is often only the
            # reply's header); after that, at most one frame per FRAME_SECONDS.
            first_words = bool(snapshot.content) and not text_shown
            if (
                snapshot.status == "streaming"
                and now - last_frame < FRAME_SECONDS
                and not first_words
            ):
                continue
            last_frame = now
            async with self:
                live = await self.get_state(LiveReplyState)
                if live._reply_id == message_id:
                    live.reply = self._live_view(snapshot)
            if first_words:
                text_shown = True
                # Not at once: its query and its frame would take the server and the
                # page while the page draws the first words.
                reload_at = now + SIDEBAR_RELOAD_AFTER_SECONDS
            elif reload_at is not None and now >= reload_at:
                reload_at = None
                yield ConversationListState.reload
        async with self:
            live = await self.get_state(LiveReplyState)
            if live._reply_id == message_id:
                # The finished reply joins the thread in the same frame: no flicker.
                self._stop_following(live)
            if self.conversation_id:
                await self._refresh(owner, uuid.UUID(self.conversation_id))
            if self._streaming_id == message_id:
                self._set_streaming(reply_id="")
            conversation_id = self.conversation_id
        if conversation_id:
            await engine.title_ready(uuid.UUID(conversation_id))
            async with self:
                await self._refresh(owner, uuid.UUID(conversation_id))
        yield ConversationListState.reload

    def _live_view(self, snapshot) -> thread.ThreadMessage:
        view = conversations.MessageView(
            id=snapshot.message_id,
            conversation_id=uuid.UUID(self.conversation_id),
            owner_id=uuid.UUID(int=0),
            role="assistant",
            content=snapshot.content,
            status=snapshot.status,
            model=None,
            error=snapshot.error,
            details=snapshot.details,
        )
        return thread.thread_message(view, {})

    @rx.event(background=True)
    async def poll_reply(self):
        """A reply another instance writes: read from the database until it ends."""
        # Research may take half an hour or more; two hours is a generous bound.
        for _ in range(7200):
            await asyncio.sleep(1.0)
            async with self:
                owner = await self._user_id()
                if owner is None or not self.conversation_id or not self._streaming_id:
                    return
                await self._refresh(owner, uuid.UUID(self.conversation_id))
                if not self._streaming_id:
                    return

    @rx.event
    async def stop(self):
        owner = await self._user_id()
        if owner is None or not self._streaming_id:
            return
        job_id = await self._research_job_of(self._streaming_id)
        if job_id is not None:
            # Research stops at its next step and keeps what it found.
            await jobs.cancel_job(owner_id=owner, job_id=job_id)
            return
        await chat_service.get_engine().stop(
            owner_id=owner, message_id=uuid.UUID(self._streaming_id)
        )
        # Stopped, the reply joins the thread with what arrived.
        self._stop_following(await self.get_state(LiveReplyState))
        if self.conversation_id:
            await self._refresh(owner, uuid.UUID(self.conversation_id))
        self._set_streaming(reply_id="")

    @rx.event
    async def regenerate(self):
        user = await self.verified_user()
        if user is None or not self.conversation_id:
            return None
        try:
            reply = await chat_service.get_engine().regenerate(
                owner_id=user.user_id,
                conversation_id=uuid.UUID(self.conversation_id),
                user_name=user.display_name,
            )
        except CarmentaError as error:
            self.error = str(error)
            return None
        self._set_streaming(reply_id=str(reply.id))
        await self._refresh(user.user_id, uuid.UUID(self.conversation_id))
        await self._start_following(user.user_id, str(reply.id))
        return ChatState.follow_reply

    @rx.event
    async def resend_edit(self):
        user = await self.verified_user()
        thread_state = await self.get_state(ThreadState)
        if user is None or not self.conversation_id or not thread_state.editing_id:
            return None
        try:
            reply = await chat_service.get_engine().edit_and_resend(
                owner_id=user.user_id,
                conversation_id=uuid.UUID(self.conversation_id),
                message_id=uuid.UUID(thread_state.editing_id),
                content=thread_state.edit_text,
                user_name=user.display_name,
            )
        except CarmentaError as error:
            self.error = str(error)
            return None
        thread_state.editing_id = ""
        self._set_streaming(reply_id=str(reply.id))
        await self._refresh(user.user_id, uuid.UUID(self.conversation_id))
        await self._start_following(user.user_id, str(reply.id))
        return ChatState.follow_reply

    @rx.event
    async def confirm_action(self, message_id: str, approve: bool):
        user = await self.verified_user()
        if user is None:
            return None
        started = await chat_service.get_engine().answer_confirmation(
            owner_id=user.user_id,
            message_id=uuid.UUID(message_id),
            approve=approve,
            user_name=user.display_name,
        )
        if not started:
            self.error = "That action was already answered."
            return None
        self._set_streaming(reply_id=message_id)
        await self._start_following(user.user_id, message_id)
        return ChatState.follow_reply
