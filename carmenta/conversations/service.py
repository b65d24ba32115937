# ruff: noqa: S608  (only the module constants _CONVERSATION_COLUMNS and _MESSAGE_COLUMNS
# are interpolated)
"""Conversations and their messages, always filtered by the verified owner.

The caller owns the transaction. Replies are written while they stream: a reply row is
created with status `streaming`, its text saved as it grows, and finished with one of
the final statuses. Saving progress only touches a row that is still streaming, so a
Stop or an interruption recorded meanwhile is never overwritten.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlmodel.ext.asyncio.session import AsyncSession

from carmenta import db
from carmenta.conversations.models import MessageRole, MessageStatus
from carmenta.errors import CarmentaError
from carmenta.knowledge.search import clean_query

MAX_TITLE_CHARS = 120
MAX_MESSAGE_CHARS = 200_000
MAX_ATTACHMENTS = 20
DEFAULT_TITLE = "New conversation"
FINAL_STATUSES = frozenset(
    {
        MessageStatus.complete,
        MessageStatus.stopped,
        MessageStatus.waiting,
        MessageStatus.interrupted,
        MessageStatus.failed,
    }
)


class ConversationNotFound(CarmentaError, LookupError):
    def __init__(self) -> None:
        super().__init__("That conversation does not exist, or it is not yours.")


class MessageRefused(CarmentaError, ValueError):
    """The message cannot be taken as it is; the text says why."""


# The partial unique index that lets one reply stream per conversation.
ONE_STREAMING_REPLY_INDEX = "uq_messages_one_streaming_reply"


@contextmanager
def _one_reply_at_a_time() -> Iterator[None]:
    """A second streaming reply, refused by the index, in the person's words."""
    try:
        yield
    except IntegrityError as error:
        diagnostic = getattr(error.orig, "diag", None)
        if getattr(diagnostic, "constraint_name", None) == ONE_STREAMING_REPLY_INDEX:
            raise ReplyInProgress() from None
        raise


class ReplyInProgress(CarmentaError):
    def __init__(self) -> None:
        super().__init__("A reply is still being written. Stop it or wait for it to finish.")


@dataclass(frozen=True)
class ConversationView:
    id: uuid.UUID
    title: str
    model: str | None
    starred: bool
    archived: bool
    created_at: datetime
    last_activity_at: datetime
    # Search results only: where the query matched, with «» around the matched words.
    snippet: str = ""


@dataclass(frozen=True)
class MessageView:
    id: uuid.UUID
    conversation_id: uuid.UUID
    owner_id: uuid.UUID
    role: str
    content: str
    status: str
    model: str | None
    error: str | None
    details: dict[str, Any] = field(default_factory=dict)
    created_at: datetime | None = None
    updated_at: datetime | None = None


_CONVERSATION_COLUMNS = (
    "id, title, model, starred, archived_at is not null as archived, created_at, last_activity_at"
)
_MESSAGE_COLUMNS = (
    "id, conversation_id, owner_id, role, content, status, model, error, details,"
    " created_at, updated_at"
)
_USER_MESSAGE_COLUMNS = ", ".join("u." + column.strip() for column in _MESSAGE_COLUMNS.split(","))


def _conversation(row: Any, snippet: str = "") -> ConversationView:
    return ConversationView(
        id=row.id,
        title=row.title,
        model=row.model,
        starred=row.starred,
        archived=row.archived,
        created_at=row.created_at,
        last_activity_at=row.last_activity_at,
        snippet=snippet,
    )


def _message(values: Sequence[Any]) -> MessageView:
    """A message from its `_MESSAGE_COLUMNS` values, in that order (a row of a
    statement that selects or returns them, or a tuple from the driver)."""
    (
        id_,
        conversation_id,
        owner_id,
        role,
        content,
        status,
        model,
        error,
        details,
        created_at,
        updated_at,
    ) = values
    return MessageView(
        id=id_,
        conversation_id=conversation_id,
        owner_id=owner_id,
        role=role,
        content=content,
        status=status,
        model=model,
        error=error,
        details=dict(details or {}),
        created_at=created_at,
        updated_at=updated_at,
    )


def clean_title(title: str) -> str:
    cleaned = " ".join(title.split())
    if not cleaned:
        raise MessageRefused("A conversation needs a title with some words in it.")
    if len(cleaned) > MAX_TITLE_CHARS:
        raise MessageRefused(f"Titles can be at most {MAX_TITLE_CHARS} characters.")
    return cleaned


def checked_message(content: str) -> str:
    # NUL cannot be stored in PostgreSQL text; other control characters are harmless.
    content = content.replace("\x00", "")
    if len(content) > MAX_MESSAGE_CHARS:
        raise MessageRefused(
            f"That message is {len(content):,} characters; the limit is "
            f"{MAX_MESSAGE_CHARS:,}. Attach long text as a file instead."
        )
    return content


async def _owned(session: AsyncSession, owner_id: uuid.UUID, conversation_id: uuid.UUID) -> Any:
    row = (
        await session.execute(
            text(
                f"select {_CONVERSATION_COLUMNS} from conversations"
                " where id = :id and owner_id = :owner"
            ),
            {"id": conversation_id, "owner": owner_id},
        )
    ).first()
    if row is None:
        raise ConversationNotFound()
    return row


async def create_conversation(
    *,
    session: AsyncSession,
    owner_id: uuid.UUID,
    title: str | None = None,
    model: str | None = None,
) -> ConversationView:
    row = (
        await session.execute(
            text(
                "insert into conversations (owner_id, title, title_edited, model)"
                " values (:owner, :title, :edited, :model)"
                f" returning {_CONVERSATION_COLUMNS}"
            ),
            {
                "owner": owner_id,
                "title": clean_title(title) if title else DEFAULT_TITLE,
                "edited": bool(title),
                "model": model,
            },
        )
    ).one()
    return _conversation(row)


async def get_conversation(
    *, session: AsyncSession, owner_id: uuid.UUID, conversation_id: uuid.UUID
) -> ConversationView:
    return _conversation(await _owned(session, owner_id, conversation_id))


async def list_conversations(
    *,
    session: AsyncSession,
    owner_id: uuid.UUID,
    archived: bool = False,
    limit: int = 200,
) -> list[ConversationView]:
    """Most recent activity first; archived ones only when asked for."""
    rows = (
        await session.execute(
            text(
                f"select {_CONVERSATION_COLUMNS} from conversations"
                " where owner_id = :owner and (archived_at is not null) = :archived"
                " order by last_activity_at desc limit :limit"
            ),
            {"owner": owner_id, "archived": archived, "limit": max(1, min(limit, 1000))},
        )
    ).all()
    return [_conversation(row) for row in rows]


_SEARCH_SQL = text(
    """
    with q as (select websearch_to_tsquery('english', :query) as tsq),
    title_hits as (
        select c.id, ts_rank_cd(c.search_vector, q.tsq) * 2 as rank, null::uuid as message_id
          from conversations c, q
         where c.owner_id = :owner and c.search_vector @@ q.tsq
    ),
    message_hits as (
        select distinct on (m.conversation_id)
               m.conversation_id as id, ts_rank_cd(m.search_vector, q.tsq) as rank,
               m.id as message_id
          from messages m, q
         where m.owner_id = :owner and m.search_vector @@ q.tsq
         order by m.conversation_id, ts_rank_cd(m.search_vector, q.tsq) desc
    ),
    best as (
        select distinct on (id) id, rank, message_id
          from (select * from title_hits union all select * from message_hits) hits
         order by id, rank desc
    )
    select c.id, c.title, c.model, c.starred, c.archived_at is not null as archived,
           c.created_at, c.last_activity_at,
           case when b.message_id is null then ''
                else ts_headline('english', m.content, q.tsq,
                     'StartSel=«, StopSel=», MaxWords=18, MinWords=6, MaxFragments=1')
           end as snippet
      from best b
      join conversations c on c.id = b.id
      left join messages m on m.id = b.message_id
      cross join q
     order by b.rank desc, c.last_activity_at desc
     limit :limit
    """
)


async def search_conversations(
    *, session: AsyncSession, owner_id: uuid.UUID, query: str, limit: int = 30
) -> list[ConversationView]:
    """Conversations whose title or messages match, best first; archived ones included."""
    cleaned = clean_query(query)
    if not cleaned:
        return []
    rows = (
        await session.execute(
            _SEARCH_SQL, {"owner": owner_id, "query": cleaned, "limit": max(1, min(limit, 100))}
        )
    ).all()
    return [_conversation(row, snippet=row.snippet or "") for row in rows]


async def rename_conversation(
    *, session: AsyncSession, owner_id: uuid.UUID, conversation_id: uuid.UUID, title: str
) -> ConversationView:
    await _owned(session, owner_id, conversation_id)
    row = (
        await session.execute(
            text(
                "update conversations set title = :title, title_edited = true, updated_at = now()"
                f" where id = :id and owner_id = :owner returning {_CONVERSATION_COLUMNS}"
            ),
            {"title": clean_title(title), "id": conversation_id, "owner": owner_id},
        )
    ).one()
    return _conversation(row)


async def title_if_untitled(
    *, session: AsyncSession, owner_id: uuid.UUID, conversation_id: uuid.UUID, title: str
) -> bool:
    """Give a conversation its first title unless the person has named it already."""
    try:
        cleaned = clean_title(title[:MAX_TITLE_CHARS])
    except MessageRefused:
        return False
    result = await session.execute(
        text(
            "update conversations set title = :title, updated_at = now()"
            " where id = :id and owner_id = :owner and not title_edited and title = :default"
        ),
        {"title": cleaned, "id": conversation_id, "owner": owner_id, "default": DEFAULT_TITLE},
    )
    return result.rowcount == 1


async def set_model(
    *,
    session: AsyncSession,
    owner_id: uuid.UUID,
    conversation_id: uuid.UUID,
    model: str | None,
) -> None:
    await _owned(session, owner_id, conversation_id)
    await session.execute(
        text("update conversations set model = :model where id = :id and owner_id = :owner"),
        {"model": model, "id": conversation_id, "owner": owner_id},
    )


async def set_starred(
    *, session: AsyncSession, owner_id: uuid.UUID, conversation_id: uuid.UUID, starred: bool
) -> None:
    await _owned(session, owner_id, conversation_id)
    await session.execute(
        text("update conversations set starred = :starred where id = :id and owner_id = :owner"),
        {"starred": starred, "id": conversation_id, "owner": owner_id},
    )


async def set_archived(
    *, session: AsyncSession, owner_id: uuid.UUID, conversation_id: uuid.UUID, archived: bool
) -> None:
    await _owned(session, owner_id, conversation_id)
    await session.execute(
        text(
            "update conversations set archived_at = case when :archived then now() end"
            " where id = :id and owner_id = :owner"
        ),
        {"archived": archived, "id": conversation_id, "owner": owner_id},
    )


async def delete_conversation(
    *, session: AsyncSession, owner_id: uuid.UUID, conversation_id: uuid.UUID
) -> None:
    result = await session.execute(
        text("delete from conversations where id = :id and owner_id = :owner"),
        {"id": conversation_id, "owner": owner_id},
    )
    if result.rowcount != 1:
        raise ConversationNotFound()


async def list_messages(
    *, session: AsyncSession, owner_id: uuid.UUID, conversation_id: uuid.UUID
) -> list[MessageView]:
    _, messages = await get_thread(
        session=session, owner_id=owner_id, conversation_id=conversation_id
    )
    return messages


async def get_thread(
    *, session: AsyncSession, owner_id: uuid.UUID, conversation_id: uuid.UUID
) -> tuple[ConversationView, list[MessageView]]:
    """The conversation and its messages in order (its owner's only)."""
    # One statement: the conversation's columns repeat on each message's row, and come
    # alone (message columns NULL) when it has none. Straight through the driver, rows
    # unpacked by position: SQLAlchemy's result layer cost a third of the read.
    connection = await db.driver_connection(session)
    cursor = await connection.execute(
        THREAD_SQL, {"conversation": conversation_id, "owner": owner_id}
    )
    return _thread(await cursor.fetchall())


def _thread(rows: Sequence[Sequence[Any]]) -> tuple[ConversationView, list[MessageView]]:
    """The conversation and its messages from rows of the conversation's seven columns
    then a message's (NULL when it has none), in the rows' order."""
    if not rows:
        raise ConversationNotFound()
    c_id, c_title, c_model, c_starred, c_archived, c_created_at, c_last_activity_at = rows[0][:7]
    conversation = ConversationView(
        id=c_id,
        title=c_title,
        model=c_model,
        starred=c_starred,
        archived=c_archived,
        created_at=c_created_at,
        last_activity_at=c_last_activity_at,
    )
    return conversation, [_message(row[7:]) for row in rows if row[7] is not None]


THREAD_SQL = db.driver_sql(
    "select c.id, c.title, c.model, c.starred, c.archived_at is not null, c.created_at,"
    " c.last_activity_at, "
    + ", ".join("m." + column.strip() for column in _MESSAGE_COLUMNS.split(","))
    + " from conversations c"
    " left join messages m on m.conversation_id = c.id and m.owner_id = c.owner_id"
    " where c.id = :conversation and c.owner_id = :owner"
    " order by m.created_at, m.id"
)


# The newest messages a reply's plan reads: its history is cut to a token budget far
# below this many, so a long conversation costs no more to answer than a short one.
REPLY_HISTORY_MESSAGES = 400


async def get_reply_thread(
    *, session: AsyncSession, owner_id: uuid.UUID, conversation_id: uuid.UUID
) -> tuple[ConversationView, list[MessageView]]:
    """The conversation and its newest messages (REPLY_HISTORY_MESSAGES), in order, as a
    reply's plan reads them: of each message's details only the attachments (their
    ids and names). Its owner's only."""
    # As `get_thread` reads, on the way to every reply's first word.
    connection = await db.driver_connection(session)
    cursor = await connection.execute(
        REPLY_THREAD_SQL,
        {"conversation": conversation_id, "owner": owner_id, "limit": REPLY_HISTORY_MESSAGES},
    )
    # Read newest first (to stop at the limit), returned oldest first.
    return _thread(list(reversed(await cursor.fetchall())))


REPLY_THREAD_SQL = db.driver_sql(
    "select c.id, c.title, c.model, c.starred, c.archived_at is not null, c.created_at,"
    " c.last_activity_at, m.*"
    " from conversations c"
    " left join lateral (select id, conversation_id, owner_id, role, content, status, model,"
    "   error,"
    # The details of an assistant's reply (its sources, tool calls) can be long, and the
    # plan reads none of them.
    "   jsonb_strip_nulls(jsonb_build_object('attachments', details->'attachments',"
    "     'attachment_names', details->'attachment_names')),"
    "   created_at, updated_at"
    "   from messages where conversation_id = c.id and owner_id = c.owner_id"
    "   order by created_at desc, id desc limit :limit) m on true"
    " where c.id = :conversation and c.owner_id = :owner"
    " order by m.created_at desc, m.id desc"
)


async def get_message(
    *, session: AsyncSession, owner_id: uuid.UUID, message_id: uuid.UUID
) -> MessageView | None:
    row = (
        await session.execute(
            text(f"select {_MESSAGE_COLUMNS} from messages where id = :id and owner_id = :owner"),
            {"id": message_id, "owner": owner_id},
        )
    ).first()
    return _message(row) if row is not None else None


async def previous_user_message(
    *, session: AsyncSession, owner_id: uuid.UUID, message_id: uuid.UUID
) -> MessageView | None:
    """The person's message a reply answers: the last user message before it."""
    row = (
        await session.execute(
            text(
                f"select {_USER_MESSAGE_COLUMNS}"
                " from messages r join messages u on u.conversation_id = r.conversation_id"
                " where r.id = :id and r.owner_id = :owner and u.role = 'user'"
                " and (u.created_at, u.id) < (r.created_at, r.id)"
                " order by u.created_at desc, u.id desc limit 1"
            ),
            {"id": message_id, "owner": owner_id},
        )
    ).first()
    return _message(row) if row is not None else None


async def _touch(session: AsyncSession, conversation_id: uuid.UUID) -> None:
    await session.execute(
        # The clock, not the transaction's start: several messages in one transaction
        # still order the conversations by the last of them.
        text("update conversations set last_activity_at = clock_timestamp() where id = :id"),
        {"id": conversation_id},
    )


async def _refuse_if_streaming(session: AsyncSession, conversation_id: uuid.UUID) -> None:
    # The conversation row is locked first, so two sends cannot both pass this check.
    await session.execute(
        text("select 1 from conversations where id = :id for update"), {"id": conversation_id}
    )
    streaming = (
        await session.execute(
            text(
                "select 1 from messages where conversation_id = :id and status = 'streaming'"
                " limit 1"
            ),
            {"id": conversation_id},
        )
    ).first()
    if streaming is not None:
        raise ReplyInProgress()


async def _owned_file_ids(
    session: AsyncSession, owner_id: uuid.UUID, file_ids: list[uuid.UUID]
) -> list[str]:
    if not file_ids:
        return []
    if len(file_ids) > MAX_ATTACHMENTS:
        raise MessageRefused(f"A message can carry at most {MAX_ATTACHMENTS} files.")
    rows = (
        await session.execute(
            text("select id from files where owner_id = :owner and id = any(:ids)"),
            {"owner": owner_id, "ids": list(file_ids)},
        )
    ).all()
    found = {row.id for row in rows}
    if any(file_id not in found for file_id in file_ids):
        raise MessageRefused("One of the attached files no longer exists.")
    # Keep the order the person attached them in, without repeats.
    return [str(file_id) for file_id in dict.fromkeys(file_ids)]


async def add_user_message(
    *,
    session: AsyncSession,
    owner_id: uuid.UUID,
    conversation_id: uuid.UUID,
    content: str,
    attachment_ids: list[uuid.UUID] | None = None,
) -> MessageView:
    await _owned(session, owner_id, conversation_id)
    content = checked_message(content)
    attachments = await _owned_file_ids(session, owner_id, list(attachment_ids or []))
    if not content.strip() and not attachments:
        raise MessageRefused("Write a message or attach a file first.")
    await _refuse_if_streaming(session, conversation_id)
    details: dict[str, Any] = {"attachments": attachments} if attachments else {}
    row = (
        await session.execute(
            text(
                "insert into messages (conversation_id, owner_id, role, content, status, details,"
                " created_at) values (:conversation, :owner, 'user', :content, 'complete',"
                " cast(:details as jsonb), clock_timestamp())"
                f" returning {_MESSAGE_COLUMNS}"
            ),
            {
                "conversation": conversation_id,
                "owner": owner_id,
                "content": content,
                "details": _json(details),
            },
        )
    ).one()
    await _touch(session, conversation_id)
    return _message(row)


async def add_exchange(
    *,
    session: AsyncSession,
    owner_id: uuid.UUID,
    conversation_id: uuid.UUID,
    content: str,
    attachment_ids: list[uuid.UUID] | None = None,
    message_id: uuid.UUID | None = None,
    reply_id: uuid.UUID | None = None,
) -> tuple[MessageView, MessageView]:
    """The person's message and the empty reply that will answer it, stored together.

    The same checks as `add_user_message` then `start_reply`, in one statement that
    needs no transaction around it: sending is on the way to the first token. A reply
    already streaming (the unique index on streaming replies) or a conversation that is
    not the owner's stores nothing. The caller may choose the two ids (to read the
    conversation alongside, leaving these rows out).
    """
    content = checked_message(content)
    attachments = await _owned_file_ids(session, owner_id, list(attachment_ids or []))
    if not content.strip() and not attachments:
        raise MessageRefused("Write a message or attach a file first.")
    # The reply goes in first, and the message only if it did: both or neither. Two
    # sends at once meet at the index, the second waiting for the first to commit.
    # Straight through the driver, rows unpacked by position: on the way to every
    # reply's first word.
    connection = await db.driver_connection(session)
    cursor = await connection.execute(
        ADD_EXCHANGE_SQL,
        {
            "conversation": conversation_id,
            "owner": owner_id,
            "content": content,
            "details": _json({"attachments": attachments} if attachments else {}),
            "message_id": message_id or uuid.uuid4(),
            "reply_id": reply_id or uuid.uuid4(),
        },
    )
    rows = await cursor.fetchall()
    if not rows:
        await _owned(session, owner_id, conversation_id)
        raise ReplyInProgress()
    asked, answering = rows
    return _message(asked), _message(answering)


ADD_EXCHANGE_SQL = db.driver_sql(
    "with stamp as (select clock_timestamp() as at from conversations"
    "   where id = :conversation and owner_id = :owner),"
    " answering as (insert into messages (id, conversation_id, owner_id, role,"
    "   content, status, details, created_at)"
    "   select :reply_id, :conversation, :owner, 'assistant', '', 'streaming',"
    "   '{}'::jsonb, at + interval '1 microsecond' from stamp"
    "   on conflict (conversation_id) where status = 'streaming' do nothing"
    f"   returning {_MESSAGE_COLUMNS}),"
    " asked as (insert into messages (id, conversation_id, owner_id, role, content,"
    "   status, details, created_at)"
    "   select :message_id, :conversation, :owner, 'user', :content, 'complete',"
    "   cast(:details as jsonb), created_at - interval '1 microsecond'"
    "   from answering"
    f"   returning {_MESSAGE_COLUMNS}),"
    " touched as (update conversations set last_activity_at = answering.created_at"
    "   from answering where conversations.id = :conversation)"
    " select * from asked union all select * from answering order by created_at"
)


async def start_reply(
    *,
    session: AsyncSession,
    owner_id: uuid.UUID,
    conversation_id: uuid.UUID,
    model: str | None,
    details: dict[str, Any] | None = None,
) -> MessageView:
    """The row a reply is written into while it streams."""
    await _owned(session, owner_id, conversation_id)
    await _refuse_if_streaming(session, conversation_id)
    # The check above holds against other checked writers; a send (one statement, no
    # lock) racing this one meets the unique index instead.
    with _one_reply_at_a_time():
        row = (
            await session.execute(
                text(
                    "insert into messages (conversation_id, owner_id, role, content, status, model,"
                    " details, created_at) values (:conversation, :owner, 'assistant', '',"
                    " 'streaming', :model, cast(:details as jsonb), clock_timestamp())"
                    f" returning {_MESSAGE_COLUMNS}"
                ),
                {
                    "conversation": conversation_id,
                    "owner": owner_id,
                    "model": model,
                    "details": _json(details or {}),
                },
            )
        ).one()
    await _touch(session, conversation_id)
    return _message(row)


async def save_reply_progress(
    *,
    session: AsyncSession,
    owner_id: uuid.UUID,
    message_id: uuid.UUID,
    content: str,
    details: dict[str, Any] | None = None,
) -> bool:
    """Store what has arrived so far; False once the reply is no longer streaming."""
    result = await session.execute(
        text(
            "update messages set content = :content, updated_at = now(),"
            " details = coalesce(cast(:details as jsonb), details)"
            " where id = :id and owner_id = :owner and status = 'streaming'"
        ),
        {
            "content": _checked_reply(content),
            "details": _json(details) if details is not None else None,
            "id": message_id,
            "owner": owner_id,
        },
    )
    return result.rowcount == 1


async def finish_reply(
    *,
    session: AsyncSession,
    owner_id: uuid.UUID,
    message_id: uuid.UUID,
    content: str,
    status: MessageStatus,
    error: str | None = None,
    details: dict[str, Any] | None = None,
    input_tokens: int | None = None,
    output_tokens: int | None = None,
) -> bool:
    """Record the reply's final text and status; False if it had already ended."""
    if status not in FINAL_STATUSES:
        raise ValueError(f"{status} is not a final status")
    result = await session.execute(
        text(
            "update messages set content = :content, status = :status, error = :error,"
            " details = coalesce(cast(:details as jsonb), details),"
            " input_tokens = :input_tokens, output_tokens = :output_tokens, updated_at = now()"
            " where id = :id and owner_id = :owner and status in ('streaming', 'waiting')"
        ),
        {
            "content": _checked_reply(content),
            "status": status.value,
            "error": error,
            "details": _json(details) if details is not None else None,
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "id": message_id,
            "owner": owner_id,
        },
    )
    return result.rowcount == 1


async def reopen_waiting_reply(
    *, session: AsyncSession, owner_id: uuid.UUID, message_id: uuid.UUID
) -> MessageView | None:
    """A reply that waited for the person's answer streams again.

    Refused while another reply of the conversation streams (the person sent a new
    message meanwhile): one reply at a time.
    """
    with _one_reply_at_a_time():
        row = (
            await session.execute(
                text(
                    "update messages set status = 'streaming', updated_at = now()"
                    " where id = :id and owner_id = :owner and status = 'waiting'"
                    f" returning {_MESSAGE_COLUMNS}"
                ),
                {"id": message_id, "owner": owner_id},
            )
        ).first()
    return _message(row) if row is not None else None


async def mark_stale_replies_interrupted(
    *, session: AsyncSession, idle_for: timedelta = timedelta(seconds=30)
) -> int:
    """Replies left `streaming` by a server that stopped become `interrupted`.

    A live stream saves at least once a second, so one idle this long has no writer.
    """
    result = await session.execute(
        text(
            "update messages set status = 'interrupted', updated_at = now(),"
            " error = 'The reply was cut off when the server stopped.'"
            " where status = 'streaming' and updated_at < now() - :idle"
            # Research replies belong to their durable job, which a restart resumes.
            " and not (details ? 'research')"
        ),
        {"idle": idle_for},
    )
    return result.rowcount


async def mark_replies_interrupted(*, session: AsyncSession, message_ids: list[uuid.UUID]) -> int:
    """This server is stopping: its own streams are recorded as interrupted now."""
    if not message_ids:
        return 0
    result = await session.execute(
        text(
            "update messages set status = 'interrupted', updated_at = now(),"
            " error = 'The reply was cut off when the server stopped.'"
            " where status = 'streaming' and id = any(:ids)"
        ),
        {"ids": list(message_ids)},
    )
    return result.rowcount


async def prepare_regenerate(
    *, session: AsyncSession, owner_id: uuid.UUID, conversation_id: uuid.UUID
) -> MessageView:
    """Remove the last reply so a new one can take its place; returns the user message."""
    messages = await list_messages(
        session=session, owner_id=owner_id, conversation_id=conversation_id
    )
    await _refuse_if_streaming(session, conversation_id)
    last_user = next((m for m in reversed(messages) if m.role == MessageRole.user), None)
    if last_user is None:
        raise MessageRefused("There is no message to answer yet.")
    await _delete_after(session, conversation_id, last_user)
    return last_user


async def edit_last_user_message(
    *,
    session: AsyncSession,
    owner_id: uuid.UUID,
    conversation_id: uuid.UUID,
    message_id: uuid.UUID,
    content: str,
) -> MessageView:
    """Change the last message the person sent; the replies to it are removed."""
    messages = await list_messages(
        session=session, owner_id=owner_id, conversation_id=conversation_id
    )
    await _refuse_if_streaming(session, conversation_id)
    last_user = next((m for m in reversed(messages) if m.role == MessageRole.user), None)
    if last_user is None or last_user.id != message_id:
        raise MessageRefused("Only your last message can be edited.")
    content = checked_message(content)
    if not content.strip() and not last_user.details.get("attachments"):
        raise MessageRefused("Write a message or attach a file first.")
    await _delete_after(session, conversation_id, last_user)
    row = (
        await session.execute(
            text(
                "update messages set content = :content, updated_at = now()"
                f" where id = :id and owner_id = :owner returning {_MESSAGE_COLUMNS}"
            ),
            {"content": content, "id": message_id, "owner": owner_id},
        )
    ).one()
    await _touch(session, conversation_id)
    return _message(row)


async def _delete_after(
    session: AsyncSession, conversation_id: uuid.UUID, message: MessageView
) -> None:
    await session.execute(
        text(
            "delete from messages where conversation_id = :conversation"
            " and (created_at, id) > (:created_at, :id)"
        ),
        {"conversation": conversation_id, "created_at": message.created_at, "id": message.id},
    )


def _checked_reply(content: str) -> str:
    return content.replace("\x00", "")


def _json(value: dict[str, Any]) -> str:
    return json.dumps(value, default=str)
