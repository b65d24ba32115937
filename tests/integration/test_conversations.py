"""Conversations against PostgreSQL: listing, search, renaming, isolation, bad input."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import text

from carmenta.conversations import service as conversations
from carmenta.conversations.models import MessageStatus


async def _user(session) -> uuid.UUID:
    user_id = uuid.uuid4()
    await session.execute(
        text(
            "insert into users (id, external_auth_id, auth_provider)"
            " values (:id, :external, 'builtin')"
        ),
        {"id": user_id, "external": f"chat-{user_id}"},
    )
    return user_id


async def _exchange(session, owner, conversation_id, question: str, answer: str) -> None:
    await conversations.add_user_message(
        session=session, owner_id=owner, conversation_id=conversation_id, content=question
    )
    reply = await conversations.start_reply(
        session=session, owner_id=owner, conversation_id=conversation_id, model=None
    )
    await conversations.finish_reply(
        session=session,
        owner_id=owner,
        message_id=reply.id,
        content=answer,
        status=MessageStatus.complete,
    )


async def test_conversations_are_listed_by_last_activity_and_archived_apart(session):
    owner = await _user(session)
    first = await conversations.create_conversation(session=session, owner_id=owner)
    second = await conversations.create_conversation(session=session, owner_id=owner)
    await _exchange(session, owner, first.id, "Plan the garden", "Start with tomatoes.")
    listed = await conversations.list_conversations(session=session, owner_id=owner)
    assert [item.id for item in listed] == [first.id, second.id]

    await conversations.set_archived(
        session=session, owner_id=owner, conversation_id=first.id, archived=True
    )
    assert [
        c.id for c in await conversations.list_conversations(session=session, owner_id=owner)
    ] == [second.id]
    archived = await conversations.list_conversations(
        session=session, owner_id=owner, archived=True
    )
    assert [item.id for item in archived] == [first.id] and archived[0].archived

    await conversations.set_starred(
        session=session, owner_id=owner, conversation_id=second.id, starred=True
    )
    renamed = await conversations.rename_conversation(
        session=session, owner_id=owner, conversation_id=second.id, title="  Trip   to Porto "
    )
    assert renamed.title == "Trip to Porto" and renamed.starred
    # A title the person chose is never replaced by an automatic one.
    assert not await conversations.title_if_untitled(
        session=session, owner_id=owner, conversation_id=second.id, title="Something else"
    )
    await conversations.delete_conversation(
        session=session, owner_id=owner, conversation_id=second.id
    )
    assert await conversations.list_conversations(session=session, owner_id=owner) == []


async def test_search_finds_titles_and_message_text_with_a_snippet(session):
    owner = await _user(session)
    garden = await conversations.create_conversation(
        session=session, owner_id=owner, title="Garden plans"
    )
    await _exchange(
        session, owner, garden.id, "When should I plant?", "Plant the tomatoes in late spring."
    )
    taxes = await conversations.create_conversation(session=session, owner_id=owner, title="Taxes")
    await _exchange(session, owner, taxes.id, "Deadline?", "The return is due in April.")

    by_text = await conversations.search_conversations(
        session=session, owner_id=owner, query="tomato"
    )
    assert [item.id for item in by_text] == [garden.id]
    assert "«tomatoes»" in by_text[0].snippet
    by_title = await conversations.search_conversations(
        session=session, owner_id=owner, query="taxes"
    )
    assert [item.id for item in by_title] == [taxes.id]
    assert await conversations.search_conversations(session=session, owner_id=owner, query="") == []
    # Operators and quotes never raise.
    for hostile in ['"unclosed', "a & | ! :*", "-", "'); drop table messages; --"]:
        await conversations.search_conversations(session=session, owner_id=owner, query=hostile)


async def test_another_person_cannot_read_rename_delete_or_append(session):
    owner = await _user(session)
    stranger = await _user(session)
    mine = await conversations.create_conversation(session=session, owner_id=owner, title="Mine")
    await _exchange(session, owner, mine.id, "My secret plan", "Noted.")

    with pytest.raises(conversations.ConversationNotFound):
        await conversations.list_messages(
            session=session, owner_id=stranger, conversation_id=mine.id
        )
    with pytest.raises(conversations.ConversationNotFound):
        await conversations.rename_conversation(
            session=session, owner_id=stranger, conversation_id=mine.id, title="Taken"
        )
    with pytest.raises(conversations.ConversationNotFound):
        await conversations.delete_conversation(
            session=session, owner_id=stranger, conversation_id=mine.id
        )
    with pytest.raises(conversations.ConversationNotFound):
        await conversations.add_user_message(
            session=session, owner_id=stranger, conversation_id=mine.id, content="Injected"
        )
    with pytest.raises(conversations.ConversationNotFound):
        await conversations.start_reply(
            session=session, owner_id=stranger, conversation_id=mine.id, model=None
        )
    assert (
        await conversations.search_conversations(session=session, owner_id=stranger, query="secret")
        == []
    )
    messages = await conversations.list_messages(
        session=session, owner_id=owner, conversation_id=mine.id
    )
    assert [m.content for m in messages] == ["My secret plan", "Noted."]
    # A guessed message id of someone else's reply cannot be written to.
    assert not await conversations.save_reply_progress(
        session=session, owner_id=stranger, message_id=messages[1].id, content="overwritten"
    )


async def test_bad_messages_are_refused_with_the_reason(session):
    owner = await _user(session)
    other = await _user(session)
    conversation = await conversations.create_conversation(session=session, owner_id=owner)
    with pytest.raises(conversations.MessageRefused, match="Write a message"):
        await conversations.add_user_message(
            session=session, owner_id=owner, conversation_id=conversation.id, content="   "
        )
    with pytest.raises(conversations.MessageRefused, match="200,000"):
        await conversations.add_user_message(
            session=session,
            owner_id=owner,
            conversation_id=conversation.id,
            content="x" * (conversations.MAX_MESSAGE_CHARS + 1),
        )
    other_file = uuid.uuid4()
    await session.execute(
        text(
            "insert into files (id, owner_id, storage_key, original_name, content_type, kind,"
            " size_bytes, sha256, status) values (:id, :owner, :key, 'a.txt', 'text/plain',"
            " 'text', 1, 'x', 'ready')"
        ),
        {"id": other_file, "owner": other, "key": f"{other}/{other_file}/original"},
    )
    with pytest.raises(conversations.MessageRefused, match="no longer exists"):
        await conversations.add_user_message(
            session=session,
            owner_id=owner,
            conversation_id=conversation.id,
            content="See attached",
            attachment_ids=[other_file],
        )
    with pytest.raises(conversations.MessageRefused, match="title"):
        await conversations.rename_conversation(
            session=session, owner_id=owner, conversation_id=conversation.id, title="   "
        )
    assert (
        await conversations.list_messages(
            session=session, owner_id=owner, conversation_id=conversation.id
        )
        == []
    )


async def test_a_second_reply_cannot_start_while_one_streams(session):
    owner = await _user(session)
    conversation = await conversations.create_conversation(session=session, owner_id=owner)
    await conversations.add_user_message(
        session=session, owner_id=owner, conversation_id=conversation.id, content="Hello"
    )
    reply = await conversations.start_reply(
        session=session, owner_id=owner, conversation_id=conversation.id, model=None
    )
    with pytest.raises(conversations.ReplyInProgress):
        await conversations.add_user_message(
            session=session, owner_id=owner, conversation_id=conversation.id, content="Again"
        )
    # A stopped reply keeps its text and can no longer be written to.
    assert await conversations.finish_reply(
        session=session,
        owner_id=owner,
        message_id=reply.id,
        content="Partial",
        status=MessageStatus.stopped,
    )
    assert not await conversations.save_reply_progress(
        session=session, owner_id=owner, message_id=reply.id, content="Later text"
    )
    stored = await conversations.get_message(session=session, owner_id=owner, message_id=reply.id)
    assert stored is not None and (stored.content, stored.status) == ("Partial", "stopped")


async def test_regenerate_and_edit_remove_the_replies_that_follow(session):
    owner = await _user(session)
    conversation = await conversations.create_conversation(session=session, owner_id=owner)
    await _exchange(session, owner, conversation.id, "First question", "First answer")
    await _exchange(session, owner, conversation.id, "Second question", "Second answer")
    last_user = await conversations.prepare_regenerate(
        session=session, owner_id=owner, conversation_id=conversation.id
    )
    assert last_user.content == "Second question"
    contents = [
        m.content
        for m in await conversations.list_messages(
            session=session, owner_id=owner, conversation_id=conversation.id
        )
    ]
    assert contents == ["First question", "First answer", "Second question"]

    messages = await conversations.list_messages(
        session=session, owner_id=owner, conversation_id=conversation.id
    )
    with pytest.raises(conversations.MessageRefused, match="last message"):
        await conversations.edit_last_user_message(
            session=session,
            owner_id=owner,
            conversation_id=conversation.id,
            message_id=messages[0].id,
            content="Changed history",
        )
    edited = await conversations.edit_last_user_message(
        session=session,
        owner_id=owner,
        conversation_id=conversation.id,
        message_id=last_user.id,
        content="Second question, better put",
    )
    assert edited.content == "Second question, better put"


async def test_replies_left_streaming_by_a_stopped_server_become_interrupted(session):
    owner = await _user(session)
    conversation = await conversations.create_conversation(session=session, owner_id=owner)
    await conversations.add_user_message(
        session=session, owner_id=owner, conversation_id=conversation.id, content="Hi"
    )
    reply = await conversations.start_reply(
        session=session, owner_id=owner, conversation_id=conversation.id, model=None
    )
    await conversations.save_reply_progress(
        session=session, owner_id=owner, message_id=reply.id, content="Half a rep"
    )
    await session.execute(
        text("update messages set updated_at = now() - interval '5 minutes' where id = :id"),
        {"id": reply.id},
    )
    assert await conversations.mark_stale_replies_interrupted(session=session) >= 1
    stored = await conversations.get_message(session=session, owner_id=owner, message_id=reply.id)
    assert stored is not None
    assert (stored.status, stored.content) == ("interrupted", "Half a rep")


async def test_an_exchange_stores_the_message_and_its_reply_in_order(session):
    owner = await _user(session)
    conversation = await conversations.create_conversation(session=session, owner_id=owner)
    before = conversation.last_activity_at
    message_id, reply_id = uuid.uuid4(), uuid.uuid4()
    asked, reply = await conversations.add_exchange(
        session=session,
        owner_id=owner,
        conversation_id=conversation.id,
        content="What is on\x00 today?",
        message_id=message_id,
        reply_id=reply_id,
    )
    assert (asked.id, asked.role, asked.status, asked.content) == (
        message_id,
        "user",
        "complete",
        "What is on today?",
    )
    assert (reply.id, reply.role, reply.status, reply.content) == (
        reply_id,
        "assistant",
        "streaming",
        "",
    )
    stored = await conversations.list_messages(
        session=session, owner_id=owner, conversation_id=conversation.id
    )
    assert [m.id for m in stored] == [message_id, reply_id]
    assert stored[0].created_at < stored[1].created_at
    after = await conversations.get_conversation(
        session=session, owner_id=owner, conversation_id=conversation.id
    )
    assert after.last_activity_at > before


async def test_an_exchange_is_refused_whole_while_a_reply_streams_or_for_a_stranger(session):
    owner = await _user(session)
    stranger = await _user(session)
    conversation = await conversations.create_conversation(session=session, owner_id=owner)
    await conversations.add_exchange(
        session=session, owner_id=owner, conversation_id=conversation.id, content="First"
    )
    with pytest.raises(conversations.ReplyInProgress):
        await conversations.add_exchange(
            session=session, owner_id=owner, conversation_id=conversation.id, content="Second"
        )
    with pytest.raises(conversations.ConversationNotFound):
        await conversations.add_exchange(
            session=session, owner_id=stranger, conversation_id=conversation.id, content="Mine?"
        )
    with pytest.raises(conversations.MessageRefused, match="Write a message"):
        await conversations.add_exchange(
            session=session, owner_id=owner, conversation_id=conversation.id, content="  "
        )
    stored = await conversations.list_messages(
        session=session, owner_id=owner, conversation_id=conversation.id
    )
    # Nothing of the refused ones: no message without its reply, no reply without one.
    assert [(m.role, m.content) for m in stored] == [("user", "First"), ("assistant", "")]


async def test_a_waiting_reply_is_not_reopened_while_a_newer_one_streams(session):
    owner = await _user(session)
    conversation = await conversations.create_conversation(session=session, owner_id=owner)
    _, waiting = await conversations.add_exchange(
        session=session, owner_id=owner, conversation_id=conversation.id, content="Post it"
    )
    assert await conversations.finish_reply(
        session=session,
        owner_id=owner,
        message_id=waiting.id,
        content="May I post?",
        status=MessageStatus.waiting,
    )
    # The person wrote again instead of answering: that reply streams now.
    _, newer = await conversations.add_exchange(
        session=session, owner_id=owner, conversation_id=conversation.id, content="Never mind"
    )
    assert newer.status == "streaming"
    with pytest.raises(conversations.ReplyInProgress):
        await conversations.reopen_waiting_reply(
            session=session, owner_id=owner, message_id=waiting.id
        )
    await session.rollback()


async def test_two_exchanges_sent_at_once_to_one_conversation_store_one(database_url):
    import asyncio

    from carmenta.db import session_scope

    async with session_scope() as session:
        owner = await _user(session)
        conversation = await conversations.create_conversation(session=session, owner_id=owner)
        await session.commit()

    async def send(text_: str) -> str:
        try:
            async with session_scope() as session:
                await conversations.add_exchange(
                    session=session, owner_id=owner, conversation_id=conversation.id, content=text_
                )
                # Held open a moment, so the other send waits at the unique index.
                await asyncio.sleep(0.2)
                await session.commit()
            return "stored"
        except conversations.ReplyInProgress:
            return "refused"

    outcomes = await asyncio.gather(send("One"), send("Two"))
    assert sorted(outcomes) == ["refused", "stored"]
    async with session_scope() as session:
        stored = await conversations.list_messages(
            session=session, owner_id=owner, conversation_id=conversation.id
        )
    assert len(stored) == 2 and [m.role for m in stored] == ["user", "assistant"]


async def test_a_replys_thread_is_the_newest_messages_in_order_with_their_attachments(
    session, monkeypatch
):
    owner = await _user(session)
    stranger = await _user(session)
    conversation = await conversations.create_conversation(session=session, owner_id=owner)
    for number in range(3):
        await _exchange(session, owner, conversation.id, f"Question {number}", f"Answer {number}")
    await session.execute(
        text(
            "update messages set details = cast(:details as jsonb)"
            " where conversation_id = :conversation and content = 'Answer 2'"
        ),
        {
            "conversation": conversation.id,
            "details": '{"sources": [{"title": "Long"}], "attachment_names": ["plan.pdf"]}',
        },
    )
    monkeypatch.setattr(conversations, "REPLY_HISTORY_MESSAGES", 4)

    read, messages = await conversations.get_reply_thread(
        session=session, owner_id=owner, conversation_id=conversation.id
    )
    assert read.id == conversation.id
    # The newest four, oldest first.
    assert [m.content for m in messages] == ["Question 1", "Answer 1", "Question 2", "Answer 2"]
    # Of the details, only what a reply's plan reads.
    assert messages[-1].details == {"attachment_names": ["plan.pdf"]}
    assert messages[0].details == {}

    empty = await conversations.create_conversation(session=session, owner_id=owner)
    read, messages = await conversations.get_reply_thread(
        session=session, owner_id=owner, conversation_id=empty.id
    )
    assert (read.id, messages) == (empty.id, [])
    with pytest.raises(conversations.ConversationNotFound):
        await conversations.get_reply_thread(
            session=session, owner_id=stranger, conversation_id=conversation.id
        )
