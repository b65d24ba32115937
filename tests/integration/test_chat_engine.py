"""Replies written by the chat engine, against PostgreSQL and the local model APIs.

The offline assistant answers from a real knowledge base with the real local
embedding model; model replies stream through the official clients from the local
stand-ins of the Anthropic and OpenAI APIs.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import text

from carmenta.chat.engine import ChatEngine, ServerStoppingError, ToolOffer, ToolRun
from carmenta.chat.llm.types import ToolSpec
from carmenta.chat.service import CatalogModels
from carmenta.conversations import service as conversations
from carmenta.db import session_scope
from carmenta.knowledge import service as knowledge
from carmenta.knowledge.embeddings import get_local_embedder
from carmenta.knowledge.semantic import embed_pending_chunks
from carmenta.settings import get_settings
from tests.model_servers import ModelServer, ScriptedReply, ScriptedToolCall

pytestmark = pytest.mark.usefixtures("database_url")


@pytest.fixture(scope="module")
def model_server():
    server = ModelServer().start()
    yield server
    server.stop()


async def _new_user() -> uuid.UUID:
    user_id = uuid.uuid4()
    async with session_scope() as session:
        await session.execute(
            text(
                "insert into users (id, external_auth_id, auth_provider, display_name)"
                " values (:id, :external, 'builtin', 'Ada')"
            ),
            {"id": user_id, "external": f"engine-{user_id}"},
        )
        await session.commit()
    return user_id


async def _conversation(owner: uuid.UUID) -> uuid.UUID:
    async with session_scope() as session:
        conversation = await conversations.create_conversation(session=session, owner_id=owner)
        await session.commit()
    return conversation.id


async def _messages(owner: uuid.UUID, conversation_id: uuid.UUID):
    async with session_scope() as session:
        return await conversations.list_messages(
            session=session, owner_id=owner, conversation_id=conversation_id
        )


def _offline_engine(**overrides: Any) -> ChatEngine:
    settings = get_settings().model_copy(update={"offline_words_per_second": 2000.0, **overrides})
    return ChatEngine(
        models=CatalogModels(settings), tools=None, settings=settings, embedder=get_local_embedder()
    )


def _model_engine(
    model_server: ModelServer, tools=None, provider: str = "anthropic", embedder=None
) -> ChatEngine:
    if provider == "anthropic":
        update = {
            "anthropic_api_key": SecretStr("sk-ant-local-test"),
            "anthropic_base_url": model_server.anthropic_base_url,
            "anthropic_models": "claude-sonnet-4-6",
            "default_model": "anthropic:claude-sonnet-4-6",
        }
    else:
        update = {
            "openai_api_key": SecretStr("sk-local-test"),
            "openai_base_url": model_server.openai_base_url,
            "openai_models": "gpt-4.1-mini",
            "default_model": "openai:gpt-4.1-mini",
        }
    settings = get_settings().model_copy(update=update)
    return ChatEngine(
        models=CatalogModels(settings),
        tools=tools,
        settings=settings,
        embedder=embedder or get_local_embedder(),
    )


async def _wait(engine: ChatEngine, owner, message_id) -> list:
    snapshots = [snap async for snap in engine.follow(owner_id=owner, message_id=message_id)]
    await engine.wait_for_background()
    return snapshots


async def test_offline_assistant_answers_from_the_knowledge_base_and_says_it_is_offline():
    owner = await _new_user()
    embedder = get_local_embedder()
    async with session_scope() as session:
        await knowledge.create_document(
            session=session,
            owner_id=owner,
            parent_path="knowledge",
            title="Sarah O'Neil",
            content=(
                "Sarah is my sister-in-law. Her birthday is on the 12th of March. "
                "She loves orchids and hates loud restaurants."
            ),
        )
        await knowledge.create_document(
            session=session,
            owner_id=owner,
            parent_path="knowledge",
            title="Car",
            content="The car needs new tyres before winter. Service is due in May.",
        )
        await session.commit()
    async with session_scope() as session:
        # This person's only: other tests may leave a backlog of their own.
        await embed_pending_chunks(session=session, embedder=embedder, limit=1000, owner_id=owner)
        await session.commit()
    conversation_id = await _conversation(owner)
    engine = _offline_engine()

    _, reply = await engine.send(
        owner_id=owner, conversation_id=conversation_id, content="When is Sarah's birthday?"
    )
    snapshots = await _wait(engine, owner, reply.id)
    assert len(snapshots) > 3, "the reply should arrive in pieces"

    messages = await _messages(owner, conversation_id)
    answer = messages[-1]
    assert answer.status == "complete"
    assert answer.content.startswith("**Offline assistant**")
    assert "12th of March" in answer.content
    assert "Sarah O'Neil" in answer.content and "/knowledge?doc=" in answer.content
    assert "tyres" not in answer.content
    context = answer.details["context"]
    assert context["summary"].get("document", 0) >= 1
    assert any(source["title"] == "Sarah O'Neil" for source in context["sources"])
    async with session_scope() as session:
        conversation = await conversations.get_conversation(
            session=session, owner_id=owner, conversation_id=conversation_id
        )
    assert conversation.title == "When is Sarah's birthday"


async def test_offline_assistant_says_plainly_when_it_finds_nothing():
    owner = await _new_user()
    conversation_id = await _conversation(owner)
    engine = _offline_engine()
    _, reply = await engine.send(
        owner_id=owner, conversation_id=conversation_id, content="What is the capital of Peru?"
    )
    await _wait(engine, owner, reply.id)
    answer = (await _messages(owner, conversation_id))[-1]
    assert "found nothing" in answer.content and "capital of Peru" in answer.content


async def _notes(owner: uuid.UUID, notes: dict[str, str], *, embedded: bool) -> None:
    async with session_scope() as session:
        for title, content in notes.items():
            await knowledge.create_document(
                session=session,
                owner_id=owner,
                parent_path="knowledge",
                title=title,
                content=content,
            )
        await session.commit()
    if embedded:
        async with session_scope() as session:
            await embed_pending_chunks(
                session=session, embedder=get_local_embedder(), limit=1000, owner_id=owner
            )
            await session.commit()


async def _offline_answer(owner: uuid.UUID, question: str) -> str:
    engine = _offline_engine()
    conversation_id = await _conversation(owner)
    _, reply = await engine.send(owner_id=owner, conversation_id=conversation_id, content=question)
    await _wait(engine, owner, reply.id)
    return (await _messages(owner, conversation_id))[-1].content


GARDEN_NOTES = {"Garden notes": "Tomatoes need full sun. Plant garlic in October."}


async def test_offline_assistant_opens_a_note_the_question_names_by_its_title():
    """Asked about "gardens", no sentence of "Garden notes" says "garden": the note is
    still the answer, quoted from its beginning; a note named by nothing asked is not."""
    owner = await _new_user()
    notes = {**GARDEN_NOTES, "Car": "The car needs new tyres before winter."}
    await _notes(owner, notes, embedded=True)
    for question in ("What do I know about gardens?", "What's in my garden notes?"):
        answer = await _offline_answer(owner, question)
        assert "Garden notes" in answer, answer
        assert "> Tomatoes need full sun. Plant garlic in October." in answer
        assert "tyres" not in answer


async def test_a_question_finds_a_note_by_its_words_before_the_note_is_embedded():
    """Just written, a note has no vectors yet: the full-text search alone must find
    it, without requiring the question's asking words ("know") of it."""
    owner = await _new_user()
    await _notes(owner, GARDEN_NOTES, embedded=False)
    answer = await _offline_answer(owner, "What do I know about gardens?")
    assert "Garden notes" in answer and "Plant garlic in October." in answer, answer


async def test_stop_keeps_what_arrived_and_regenerate_replaces_the_reply():
    owner = await _new_user()
    conversation_id = await _conversation(owner)
    engine = _offline_engine(offline_words_per_second=20.0)
    _, reply = await engine.send(owner_id=owner, conversation_id=conversation_id, content="help")
    async for snapshot in engine.follow(owner_id=owner, message_id=reply.id):
        if len(snapshot.content) > 60:
            break
    assert await engine.stop(owner_id=owner, message_id=reply.id)
    stopped = (await _messages(owner, conversation_id))[-1]
    assert stopped.status == "stopped"
    assert len(stopped.content) > 60 and "Connections page" not in stopped.content

    fast = _offline_engine()
    new_reply = await fast.regenerate(owner_id=owner, conversation_id=conversation_id)
    await _wait(fast, owner, new_reply.id)
    messages = await _messages(owner, conversation_id)
    assert [m.role for m in messages] == ["user", "assistant"]
    assert messages[-1].id == new_reply.id and messages[-1].status == "complete"
    assert "Connections page" in messages[-1].content


async def test_a_stopping_server_refuses_new_replies_in_words_and_writes_nothing():
    owner = await _new_user()
    conversation_id = await _conversation(owner)
    engine = _offline_engine()
    engine.stop_accepting()
    with pytest.raises(ServerStoppingError, match="restarting.*send it again in a moment"):
        await engine.send(owner_id=owner, conversation_id=conversation_id, content="hello")
    with pytest.raises(ServerStoppingError):
        await engine.regenerate(owner_id=owner, conversation_id=conversation_id)
    assert await _messages(owner, conversation_id) == []


async def test_shutdown_saves_a_streaming_reply_as_interrupted_with_its_text():
    owner = await _new_user()
    conversation_id = await _conversation(owner)
    engine = _offline_engine(offline_words_per_second=20.0)
    _, reply = await engine.send(owner_id=owner, conversation_id=conversation_id, content="help")
    async for snapshot in engine.follow(owner_id=owner, message_id=reply.id):
        if len(snapshot.content) > 40:
            break
    assert await engine.shutdown() == 1
    assert not engine.accepting and engine.live_ids() == []
    saved = (await _messages(owner, conversation_id))[-1]
    assert saved.status == "interrupted"
    assert len(saved.content) > 40


async def test_a_reply_goes_on_and_is_saved_when_nobody_follows_it(model_server):
    owner = await _new_user()
    conversation_id = await _conversation(owner)
    model_server.state.script(
        ScriptedReply(text_chunks=["One ", "two ", "three ", "four."], delay=0.05)
    )
    engine = _model_engine(model_server)
    _, reply = await engine.send(owner_id=owner, conversation_id=conversation_id, content="Count")
    # The browser goes away at once: nobody follows the reply.
    live = engine.live(reply.id)
    assert live is not None and live.task is not None
    await live.task
    await engine.wait_for_background()
    answer = (await _messages(owner, conversation_id))[-1]
    assert (answer.status, answer.content) == ("complete", "One two three four.")
    assert answer.details["usage"]["output_tokens"] > 0


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
async def test_a_burst_of_words_reaches_the_followers_from_its_first_piece(model_server, provider):
    """All of a reply at once (a fast model, a slow reader): its first words still go
    out alone, before the rest of the burst is read."""
    owner = await _new_user()
    conversation_id = await _conversation(owner)
    words = [f"word{number} " for number in range(300)]
    model_server.state.script(ScriptedReply(text_chunks=words, delay=0.0))
    engine = _model_engine(model_server, provider=provider)
    _, reply = await engine.send(owner_id=owner, conversation_id=conversation_id, content="Go")
    seen = [
        snapshot.content async for snapshot in engine.follow(owner_id=owner, message_id=reply.id)
    ]
    await engine.wait_for_background()
    first_words = next(content for content in seen if content)
    assert first_words == "word0 "
    assert seen[-1] == "".join(words)


async def test_the_reply_is_saved_while_it_streams(model_server):
    owner = await _new_user()
    conversation_id = await _conversation(owner)
    release = threading.Event()
    model_server.state.script(
        ScriptedReply(text_chunks=["Saved before the end. ", "The rest."], wait_for=release)
    )
    engine = _model_engine(model_server)
    _, reply = await engine.send(owner_id=owner, conversation_id=conversation_id, content="Go")
    stored = None
    for _ in range(100):
        await asyncio.sleep(0.05)
        stored = (await _messages(owner, conversation_id))[-1]
        if stored.content:
            break
    assert stored is not None
    assert (stored.status, stored.content) == ("streaming", "Saved before the end. ")
    release.set()
    await _wait(engine, owner, reply.id)
    final = (await _messages(owner, conversation_id))[-1]
    assert (final.status, final.content) == ("complete", "Saved before the end. The rest.")


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
async def test_a_model_failure_is_recorded_in_words(model_server, provider):
    owner = await _new_user()
    conversation_id = await _conversation(owner)
    model_server.state.script(ScriptedReply(status=401, error_message="invalid x-api-key"))
    engine = _model_engine(model_server, provider=provider)
    _, reply = await engine.send(owner_id=owner, conversation_id=conversation_id, content="Hi")
    await _wait(engine, owner, reply.id)
    answer = (await _messages(owner, conversation_id))[-1]
    assert answer.status == "failed"
    assert answer.error and "key" in answer.error.lower()
    assert "sk-local-test" not in answer.error and "sk-ant-local-test" not in answer.error


class _Arithmetic:
    """A tool box of two local tools: one that reads, one that writes."""

    def __init__(self) -> None:
        self.runs: list[tuple[str, dict]] = []

    async def offers(self, *, session, owner_id):
        number = {"type": "object", "properties": {"a": {"type": "number"}}, "required": ["a"]}
        return [
            ToolOffer(ToolSpec("double", "Double a number", number), "Double", writes=False),
            ToolOffer(ToolSpec("publish", "Publish a number", number), "Publish", writes=True),
        ]

    def describe(self, *, name, arguments):
        return f"{name} {arguments.get('a')}"

    async def run(self, *, session, owner_id, name, arguments):
        self.runs.append((name, arguments))
        if name == "double":
            return ToolRun(ok=True, content=str(arguments["a"] * 2), summary="Doubled")
        return ToolRun(ok=True, content="published", summary="Published")


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
async def test_tool_calls_round_trip_and_writes_wait_for_confirmation(model_server, provider):
    owner = await _new_user()
    conversation_id = await _conversation(owner)
    tools = _Arithmetic()
    model_server.state.script(
        ScriptedReply(
            text_chunks=["Let me double it. "],
            tool_calls=[ScriptedToolCall(name="double", arguments={"a": 21})],
        ),
        ScriptedReply(
            text_chunks=["It is 42. Publishing."],
            tool_calls=[ScriptedToolCall(name="publish", arguments={"a": 42})],
        ),
        ScriptedReply(text_chunks=["Done: published 42."]),
    )
    engine = _model_engine(model_server, tools=tools, provider=provider)
    before = len(model_server.state.requests)
    _, reply = await engine.send(owner_id=owner, conversation_id=conversation_id, content="21?")
    await _wait(engine, owner, reply.id)

    waiting = (await _messages(owner, conversation_id))[-1]
    assert waiting.status == "waiting"
    assert tools.runs == [("double", {"a": 21})]
    steps = waiting.details["steps"]
    assert [(s["name"], s["status"]) for s in steps] == [("double", "done"), ("publish", "waiting")]
    assert steps[1]["call"] == "publish 42"

    assert await engine.answer_confirmation(owner_id=owner, message_id=reply.id, approve=True)
    await _wait(engine, owner, reply.id)
    final = (await _messages(owner, conversation_id))[-1]
    assert final.status == "complete"
    assert tools.runs == [("double", {"a": 21}), ("publish", {"a": 42})]
    assert "It is 42." in final.content and final.content.endswith("Done: published 42.")
    assert [s["status"] for s in final.details["steps"]] == ["done", "done"]

    # The tool's result went back to the model in the provider's own shape.
    sent = model_server.state.requests[before:]
    second_body = sent[1].body
    if provider == "anthropic":
        results = [
            block
            for message in second_body["messages"]
            if message["role"] == "user" and isinstance(message["content"], list)
            for block in message["content"]
            if block.get("type") == "tool_result"
        ]
        assert results and results[0]["content"] in ("42", [{"type": "text", "text": "42"}])
    else:
        tool_messages = [m for m in second_body["messages"] if m["role"] == "tool"]
        assert tool_messages and tool_messages[0]["content"] == "42"


async def test_a_declined_action_is_not_carried_out(model_server):
    owner = await _new_user()
    conversation_id = await _conversation(owner)
    tools = _Arithmetic()
    model_server.state.script(
        ScriptedReply(tool_calls=[ScriptedToolCall(name="publish", arguments={"a": 1})]),
        ScriptedReply(text_chunks=["Understood, nothing was published."]),
    )
    engine = _model_engine(model_server, tools=tools)
    _, reply = await engine.send(owner_id=owner, conversation_id=conversation_id, content="Go")
    await _wait(engine, owner, reply.id)
    assert await engine.answer_confirmation(owner_id=owner, message_id=reply.id, approve=False)
    await _wait(engine, owner, reply.id)
    final = (await _messages(owner, conversation_id))[-1]
    assert tools.runs == []
    assert final.details["steps"][0]["status"] == "declined"
    assert final.content.endswith("nothing was published.")
    # A second answer to the same question does nothing.
    assert not await engine.answer_confirmation(owner_id=owner, message_id=reply.id, approve=True)


async def test_another_person_cannot_follow_stop_or_confirm_a_reply(model_server):
    owner = await _new_user()
    stranger = await _new_user()
    conversation_id = await _conversation(owner)
    release = threading.Event()
    model_server.state.script(ScriptedReply(text_chunks=["a ", "b"], wait_for=release))
    engine = _model_engine(model_server)
    _, reply = await engine.send(owner_id=owner, conversation_id=conversation_id, content="Go")
    assert [s async for s in engine.follow(owner_id=stranger, message_id=reply.id)] == []
    assert not await engine.stop(owner_id=stranger, message_id=reply.id)
    assert not await engine.answer_confirmation(
        owner_id=stranger, message_id=reply.id, approve=True
    )
    with pytest.raises(conversations.ConversationNotFound):
        await engine.send(owner_id=stranger, conversation_id=conversation_id, content="Hijack")
    release.set()
    await _wait(engine, owner, reply.id)
    assert (await _messages(owner, conversation_id))[-1].status == "complete"


async def test_a_killed_server_loses_at_most_the_last_second_and_the_reply_is_interrupted(
    model_server, database_url
):
    import os
    import signal
    import subprocess
    import sys

    from carmenta.settings import PROJECT_ROOT

    owner = await _new_user()
    conversation_id = await _conversation(owner)
    words = [f"w{number} " for number in range(400)]
    model_server.state.script(ScriptedReply(text_chunks=words, delay=0.02))
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.integration.chat_writer_process",
            str(owner),
            str(conversation_id),
            model_server.openai_base_url,
        ],
        cwd=PROJECT_ROOT,
        env={**os.environ, "DATABASE_URL": database_url},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        reply_id = uuid.UUID(process.stdout.readline().strip())
        # Wait until the stream is well under way, then kill the writer outright.
        stream = None
        for _ in range(1200):
            await asyncio.sleep(0.05)
            streams = [s for s in model_server.state.streams if s.api == "openai"]
            if streams and streams[-1].chunks_sent > 150:
                stream = streams[-1]
                break
        assert stream is not None, f"the stream never got going: {model_server.state.streams}"
        sent_before_kill = stream.chunks_sent
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    async with session_scope() as session:
        saved = await conversations.get_message(
            session=session, owner_id=owner, message_id=reply_id
        )
    assert saved is not None and saved.status == "streaming"
    saved_words = saved.content.split()
    # Saved at least every half second: at 50 words a second, at most ~25 missing plus
    # what was in flight; comfortably within one second's worth (50) of words.
    assert len(saved_words) >= sent_before_kill - 60
    assert saved_words == [word.strip() for word in words[: len(saved_words)]]

    async with session_scope() as session:
        await session.execute(
            text("update messages set updated_at = now() - interval '1 minute' where id = :id"),
            {"id": reply_id},
        )
        assert await conversations.mark_stale_replies_interrupted(session=session) >= 1
        await session.commit()
    async with session_scope() as session:
        interrupted = await conversations.get_message(
            session=session, owner_id=owner, message_id=reply_id
        )
    assert interrupted is not None and interrupted.status == "interrupted"
    assert interrupted.content == saved.content

    # An interrupted reply can be regenerated.
    model_server.state.script(ScriptedReply(text_chunks=["Complete this time."]))
    engine = _model_engine(model_server, provider="openai")
    again = await engine.regenerate(owner_id=owner, conversation_id=conversation_id)
    await _wait(engine, owner, again.id)
    final = (await _messages(owner, conversation_id))[-1]
    assert (final.status, final.content) == ("complete", "Complete this time.")


async def _stored_image(owner: uuid.UUID, tmp_path) -> uuid.UUID:
    from carmenta.files import service as files_service
    from tests import file_samples

    file_id = uuid.uuid4()
    source = tmp_path / "photo.png"
    source.write_bytes(file_samples.png(size=(2400, 1600)))
    key = files_service.key_of(owner, file_id)
    await files_service.storage_for(get_settings()).put_file(
        key=key, path=source, content_type="image/png"
    )
    async with session_scope() as session:
        await session.execute(
            text(
                "insert into files (id, owner_id, storage_key, original_name, content_type,"
                " kind, size_bytes, sha256, status) values (:id, :owner, :key, 'photo.png',"
                " 'image/png', 'image', :size, 'x', 'ready')"
            ),
            {"id": file_id, "owner": owner, "key": key, "size": source.stat().st_size},
        )
        await session.commit()
    return file_id


async def test_an_attached_image_goes_to_a_vision_model_scaled_down(model_server, tmp_path):
    import base64
    import io

    from PIL import Image

    owner = await _new_user()
    conversation_id = await _conversation(owner)
    image_id = await _stored_image(owner, tmp_path)
    model_server.state.script(ScriptedReply(text_chunks=["A red square."]))
    engine = _model_engine(model_server, provider="openai")
    before = len(model_server.state.requests)
    _, reply = await engine.send(
        owner_id=owner,
        conversation_id=conversation_id,
        content="What is in this picture?",
        attachment_ids=[image_id],
    )
    await _wait(engine, owner, reply.id)
    request = model_server.state.requests[before]
    user_turn = [m for m in request.body["messages"] if m["role"] == "user"][-1]
    images = [part for part in user_turn["content"] if part.get("type") == "image_url"]
    assert len(images) == 1
    data_url = images[0]["image_url"]["url"]
    assert data_url.startswith("data:image/jpeg;base64,")
    sent = Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1])))
    assert max(sent.size) <= 1568 and sent.size[0] > sent.size[1]
    answer = (await _messages(owner, conversation_id))[-1]
    assert answer.status == "complete"
    assert answer.details["context"]["notices"] == []


async def _document(owner: uuid.UUID, title: str, content: str) -> None:
    async with session_scope() as session:
        await knowledge.create_document(
            session=session, owner_id=owner, parent_path=None, title=title, content=content
        )
        await session.commit()


def _openai_request_for(model_server: ModelServer, marker: str) -> dict:
    """The reply's request carrying `marker` (not the title's or memory's after it)."""
    for request in reversed(model_server.state.requests):
        messages = request.body.get("messages", [])
        users = [m for m in messages if m.get("role") == "user"]
        if (
            messages
            and str(messages[0].get("content")).startswith("You are Carmenta")
            and any(marker in str(m.get("content")) for m in users)
        ):
            return request.body
    raise AssertionError(f"no reply request carried {marker!r}")


def _title_requests(model_server: ModelServer) -> list[str]:
    """The messages the stand-in was asked to title."""
    return [
        str(request.body["messages"][-1]["content"])
        for request in model_server.state.requests
        if str(request.body.get("messages", [{}])[0].get("content", "")).startswith("Write a title")
    ]


async def test_only_a_conversation_without_a_title_asks_the_model_for_one(model_server):
    owner = await _new_user()
    conversation_id = await _conversation(owner)
    engine = _model_engine(model_server, provider="openai")
    marker = uuid.uuid4().hex[:8]
    first, second = f"Plan a picnic {marker}", f"And the drinks {marker}?"
    for message in (first, second):
        _, reply = await engine.send(
            owner_id=owner, conversation_id=conversation_id, content=message
        )
        await _wait(engine, owner, reply.id)
        await engine.title_ready(conversation_id)
    asked = [text_ for text_ in _title_requests(model_server) if marker in text_]
    assert asked == [first]
    async with session_scope() as session:
        conversation = await conversations.get_conversation(
            session=session, owner_id=owner, conversation_id=conversation_id
        )
    assert conversation.title != conversations.DEFAULT_TITLE


async def test_a_prepared_reply_is_used_for_its_person_and_the_message_is_sent_once(
    model_server,
):
    owner = await _new_user()
    conversation_id = await _conversation(owner)
    # A word of its own, in the document and the question: the search finds the one by
    # the other, and the stand-in's requests are told apart by it.
    word = f"shed{uuid.uuid4().hex[:6]}"
    await _document(owner, "Garden shed", f"The {word} key hangs behind the blue door.")
    engine = _model_engine(model_server, provider="openai")
    question = f"Where is the {word} key?"
    prepared = engine.prepare(owner_id=owner, conversation_id=conversation_id, content=question)
    _, reply = await engine.send(
        owner_id=owner, conversation_id=conversation_id, content=question, prepared=prepared
    )
    assert prepared.claimed and not prepared.planning.cancelled()
    await _wait(engine, owner, reply.id)
    body = _openai_request_for(model_server, question)
    # The context read while the message was being stored reached the model ...
    assert "behind the blue door" in body["messages"][0]["content"]
    # ... and the message itself went once, last, whether or not that read saw its row.
    users = [m for m in body["messages"] if m["role"] == "user"]
    assert [m["content"] for m in users].count(question) == 1
    assert body["messages"][-1] == {"role": "user", "content": question}
    assert (await _messages(owner, conversation_id))[-1].status == "complete"


async def test_a_reply_prepared_for_one_person_is_never_used_for_another(model_server):
    first = await _new_user()
    second = await _new_user()
    word = f"vault{uuid.uuid4().hex[:6]}"
    await _document(first, "Vault", f"The {word} code is 4471, written on the first page.")
    first_conversation = await _conversation(first)
    second_conversation = await _conversation(second)
    engine = _model_engine(model_server, provider="openai")
    question = f"What is the {word} code?"
    # Prepared for the first person (say, the page's previous sign-in), sent by the second.
    prepared = engine.prepare(owner_id=first, conversation_id=first_conversation, content=question)
    _, reply = await engine.send(
        owner_id=second, conversation_id=second_conversation, content=question, prepared=prepared
    )
    await _wait(engine, second, reply.id)
    await asyncio.gather(prepared.planning, return_exceptions=True)
    assert prepared.planning.cancelled()
    body = _openai_request_for(model_server, question)
    assert "4471" not in str(body)
    # Nothing was stored in the first person's conversation either.
    assert await _messages(first, first_conversation) == []


async def test_many_replies_started_at_once_all_complete(model_server):
    # Each plan may read its sources on extra pooled connections while holding one:
    # with many at once they must not take the whole pool and wait on each other.
    people = [await _new_user() for _ in range(40)]
    conversations_ = [await _conversation(person) for person in people]
    for person in people[:10]:
        await _document(person, "Notes", "Plain notes about the weekly market.")
    engine = _model_engine(model_server, provider="openai")

    async def one(person: uuid.UUID, conversation_id: uuid.UUID) -> str:
        _, reply = await engine.send(
            owner_id=person, conversation_id=conversation_id, content="What about the market?"
        )
        await _wait(engine, person, reply.id)
        return (await _messages(person, conversation_id))[-1].status

    statuses = await asyncio.wait_for(
        asyncio.gather(*(one(p, c) for p, c in zip(people, conversations_, strict=True))),
        timeout=60,
    )
    assert statuses == ["complete"] * 40


class CountingEmbedder:
    """The local model, keeping the texts it was asked to embed."""

    def __init__(self, delay: float = 0.0) -> None:
        self._model = get_local_embedder()
        self._delay = delay
        self.dimensions = self._model.dimensions
        self.model_name = self._model.model_name
        self.texts: list[str] = []

    def embed(self, texts, *, batch_size: int = 32):
        self.texts.extend(texts)
        return self._model.embed(texts, batch_size=batch_size)

    async def embed_async(self, texts, *, batch_size: int = 32):
        self.texts.extend(texts)
        await asyncio.sleep(self._delay)
        return await self._model.embed_async(texts, batch_size=batch_size)


async def _person_with_an_embedded_document(
    model_server: ModelServer, embedder: CountingEmbedder, title: str, content: str
) -> tuple[uuid.UUID, uuid.UUID, ChatEngine]:
    """A person whose knowledge holds one embedded document and whose first message has
    been answered (so the engine knows they have something embedded)."""
    owner = await _new_user()
    await _document(owner, title, content)
    async with session_scope() as session:
        # This person's only: other tests may leave a backlog of their own.
        await embed_pending_chunks(
            session=session, embedder=get_local_embedder(), limit=1000, owner_id=owner
        )
        await session.commit()
    conversation_id = await _conversation(owner)
    engine = _model_engine(model_server, provider="openai", embedder=embedder)
    _, reply = await engine.send(owner_id=owner, conversation_id=conversation_id, content="Hi")
    await _wait(engine, owner, reply.id)
    embedder.texts.clear()
    return owner, conversation_id, engine


async def _until_asked_to_embed(embedder: CountingEmbedder, text_: str) -> None:
    for _ in range(100):
        if text_ in embedder.texts:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{text_!r} was never embedded")


async def test_a_resting_draft_is_embedded_once_and_sending_it_embeds_nothing_more(
    model_server,
):
    word = f"mooring{uuid.uuid4().hex[:6]}"
    embedder = CountingEmbedder()
    owner, conversation_id, engine = await _person_with_an_embedded_document(
        model_server, embedder, "Boat", f"The {word} is at pier nine, past the fuel dock."
    )

    # Drafts from a page, one after the other: each replaces the one before, so only
    # the last is embedded.
    question = f"Where is the {word}?"
    page = "page-1"
    for end in range(5, len(question), 5):
        engine.draft_changed(page=page, owner_id=owner, text=question[:end])
    engine.draft_changed(page=page, owner_id=owner, text=question)
    await _until_asked_to_embed(embedder, question)
    assert not any(text_ != question and question.startswith(text_) for text_ in embedder.texts)
    embedded_while_typing = list(embedder.texts)

    _, reply = await engine.send(owner_id=owner, conversation_id=conversation_id, content=question)
    await _wait(engine, owner, reply.id)
    # Sending found the vectors: the question was not embedded again, and the search
    # they served found the document.
    assert embedder.texts == embedded_while_typing
    assert "pier nine" in _openai_request_for(model_server, question)["messages"][0]["content"]


async def test_a_message_sent_while_its_draft_is_embedded_waits_for_that_embedding(
    model_server,
):
    word = f"lantern{uuid.uuid4().hex[:6]}"
    embedder = CountingEmbedder(delay=0.5)
    owner, conversation_id, engine = await _person_with_an_embedded_document(
        model_server, embedder, "Attic", f"The {word} is in the attic, left of the chimney."
    )

    question = f"Where is the {word}?"
    engine.draft_changed(page="page-3", owner_id=owner, text=question)
    await _until_asked_to_embed(embedder, question)
    # The draft's embedding has started and takes a while: the message is sent meanwhile.
    _, reply = await engine.send(owner_id=owner, conversation_id=conversation_id, content=question)
    await _wait(engine, owner, reply.id)
    assert embedder.texts.count(question) == 1
    assert (
        "left of the chimney"
        in _openai_request_for(model_server, question)["messages"][0]["content"]
    )


async def _draft_read(engine: ChatEngine, page: str, owner: uuid.UUID, text_: str) -> None:
    """The composer's draft, told to the engine, and its sources read through."""
    engine.draft_changed(page=page, owner_id=owner, text=text_)
    await engine._drafts[page].found  # the engine's own record of that page's draft


async def test_a_draft_sent_at_once_is_answered_from_the_sources_read_for_it(model_server):
    word = f"buoy{uuid.uuid4().hex[:6]}"
    embedder = CountingEmbedder()
    owner, conversation_id, engine = await _person_with_an_embedded_document(
        model_server, embedder, "Harbour", f"The {word} is red and sits off pier nine."
    )
    question = f"Where is the {word}?"
    await _draft_read(engine, "page-4", owner, question)
    reads = engine._drafts["page-4"]
    engine.draft_changed(page="page-4", owner_id=owner, text=question)  # told again
    assert engine._drafts["page-4"] is reads  # not read a second time
    # Written after the draft was read and before it is sent: sent at once, the message
    # is answered from what was read for the draft, so this is not read.
    await _document(owner, "Moved", f"The {word} was towed to the boatyard.")

    _, reply = await engine.send(owner_id=owner, conversation_id=conversation_id, content=question)
    await _wait(engine, owner, reply.id)
    system = _openai_request_for(model_server, question)["messages"][0]["content"]
    assert "off pier nine" in system
    assert "boatyard" not in system
    assert embedder.texts.count(question) == 1


async def test_sources_read_for_an_older_draft_or_another_text_are_read_again(
    model_server, monkeypatch
):
    word = f"kayak{uuid.uuid4().hex[:6]}"
    embedder = CountingEmbedder()
    owner, conversation_id, engine = await _person_with_an_embedded_document(
        model_server, embedder, "Shed", f"The {word} hangs in the shed."
    )
    monkeypatch.setattr("carmenta.chat.engine.DRAFT_SOURCES_FRESH_SECONDS", 0.3)
    first = f"Where is the {word}?"
    await _draft_read(engine, "page-5", owner, first)
    await _document(owner, "Garage", f"The {word} went to the garage for the winter.")
    await asyncio.sleep(0.4)  # the draft's reads are now too old to answer from
    _, reply = await engine.send(owner_id=owner, conversation_id=conversation_id, content=first)
    await _wait(engine, owner, reply.id)
    assert "for the winter" in _openai_request_for(model_server, first)["messages"][0]["content"]
    assert "page-5" not in engine._drafts  # too old: dropped, not kept

    # A draft that changed before it was sent: the sent text is what is looked up.
    await _draft_read(engine, "page-5", owner, f"Is the {word} dry?")
    await _document(owner, "Paddle", f"The {word} paddle is under the stairs.")
    second = f"Where is the {word} paddle?"
    _, reply = await engine.send(owner_id=owner, conversation_id=conversation_id, content=second)
    await _wait(engine, owner, reply.id)
    assert "under the stairs" in _openai_request_for(model_server, second)["messages"][0]["content"]


async def test_the_drafts_of_a_person_with_nothing_embedded_are_not_embedded(model_server):
    owner = await _new_user()
    conversation_id = await _conversation(owner)
    embedder = CountingEmbedder()
    engine = _model_engine(model_server, provider="openai", embedder=embedder)
    _, reply = await engine.send(owner_id=owner, conversation_id=conversation_id, content="Hi")
    await _wait(engine, owner, reply.id)
    engine.draft_changed(page="page-2", owner_id=owner, text="What did I write about boats?")
    await asyncio.sleep(0.5)
    assert embedder.texts == []


class _CountedOffers(_Arithmetic):
    """Two tools, and how many times they were read; the set can change."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0
        self.names = ["double"]

    async def offers(self, *, session, owner_id):
        self.reads += 1
        every = await super().offers(session=session, owner_id=owner_id)
        return [offer for offer in every if offer.spec.name in self.names]


def _offered_tools(model_server: ModelServer, marker: str) -> list[str]:
    request = _openai_request_for(model_server, marker)
    return [tool["function"]["name"] for tool in request.get("tools", [])]


async def test_the_models_and_tools_read_while_typing_serve_the_send(model_server):
    owner = await _new_user()
    conversation_id = await _conversation(owner)
    tools = _CountedOffers()
    engine = _model_engine(model_server, tools=tools, provider="openai")
    question = f"Double {uuid.uuid4().hex[:6]}, please"

    await _draft_read(engine, "page-6", owner, question)
    await engine._offers[owner].read
    assert tools.reads == 1
    # Another page of the same person, typing at once: read once for both.
    engine.draft_changed(page="page-7", owner_id=owner, text="Something else")
    assert tools.reads == 1
    tools.names = ["double", "publish"]  # connected after they were read

    _, reply = await engine.send(owner_id=owner, conversation_id=conversation_id, content=question)
    await _wait(engine, owner, reply.id)
    assert tools.reads == 1  # the send read no tools of its own
    assert _offered_tools(model_server, question) == ["double"]


async def test_models_and_tools_read_too_long_ago_or_not_read_are_read_by_the_send(
    model_server, monkeypatch
):
    owner = await _new_user()
    conversation_id = await _conversation(owner)
    tools = _CountedOffers()
    engine = _model_engine(model_server, tools=tools, provider="openai")
    monkeypatch.setattr("carmenta.chat.engine.DRAFT_SOURCES_FRESH_SECONDS", 0.3)
    first = f"Double {uuid.uuid4().hex[:6]}"
    await _draft_read(engine, "page-8", owner, first)
    await engine._offers[owner].read
    tools.names = ["double", "publish"]
    await asyncio.sleep(0.4)  # what was read is now too old to plan with

    _, reply = await engine.send(owner_id=owner, conversation_id=conversation_id, content=first)
    await _wait(engine, owner, reply.id)
    assert tools.reads == 2
    assert _offered_tools(model_server, first) == ["double", "publish"]
    assert owner not in engine._offers  # too old: dropped, not kept

    # Reads that failed are no head start: the send reads for itself.
    async def failing_options(**_):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(engine._models, "options", failing_options)
    engine.draft_changed(page="page-8", owner_id=owner, text="Anything")
    assert await engine._offers[owner].read is None
    monkeypatch.undo()
    second = f"Double {uuid.uuid4().hex[:6]} again"
    _, reply = await engine.send(owner_id=owner, conversation_id=conversation_id, content=second)
    await _wait(engine, owner, reply.id)
    assert tools.reads == 3
    assert _offered_tools(model_server, second) == ["double", "publish"]


async def test_a_plan_cancelled_while_it_waits_leaves_the_shared_reads_to_the_others(
    model_server,
):
    owner = await _new_user()
    conversation_id = await _conversation(owner)
    engine = _model_engine(model_server, tools=_CountedOffers(), provider="openai")
    release = asyncio.Event()
    options = engine._models.options

    async def slow_options(**arguments):
        await release.wait()
        return await options(**arguments)

    engine._models.options = slow_options  # type: ignore[method-assign]
    engine.draft_changed(page="page-9", owner_id=owner, text="Hello")
    first = engine.prepare(owner_id=owner, conversation_id=conversation_id, content="Hello")
    second = engine.prepare(owner_id=owner, conversation_id=conversation_id, content="Hello")
    await asyncio.sleep(0.2)  # both plans wait for the one read
    first.cancel()
    await asyncio.gather(first.planning, return_exceptions=True)
    release.set()
    planned = await second.planning
    assert planned is not None
    plan, offers = planned
    assert plan.option is not None and [offer.spec.name for offer in offers] == ["double"]
    assert not engine._offers[owner].read.cancelled()
