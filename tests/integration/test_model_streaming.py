"""Model replies through the official clients, against local servers speaking the
Anthropic Messages and OpenAI Chat Completions streaming formats."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import aclosing

import pytest

from carmenta.chat.llm import (
    ChatTurn,
    ImageInput,
    ModelCredentials,
    ModelError,
    ModelOption,
    StreamFinished,
    TextDelta,
    ToolCall,
    ToolCallRequested,
    ToolResult,
    ToolSpec,
    complete,
    stream_reply,
)
from carmenta.chat.llm.clients import client_for
from tests.local_server import free_port
from tests.model_servers import (
    ModelServer,
    ModelServerState,
    ScriptedReply,
    ScriptedToolCall,
    anthropic_key_of,
)

ANTHROPIC_KEY = "sk-ant-api03-" + secrets.token_urlsafe(24)
OPENAI_KEY = "sk-proj-" + secrets.token_urlsafe(24)
PROVIDERS = ["anthropic", "openai"]
WEATHER = ToolSpec(
    name="get_weather",
    description="The weather forecast for a city.",
    parameters={
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
        "required": ["city"],
    },
)
# A 1x1 PNG.
PIXEL = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


@pytest.fixture(scope="module")
def server() -> Iterator[ModelServer]:
    peer = ModelServer(ModelServerState(anthropic_key=ANTHROPIC_KEY, openai_key=OPENAI_KEY))
    peer.start()
    yield peer
    peer.stop()


@pytest.fixture(autouse=True)
def fresh(server: ModelServer) -> None:
    server.state.replies.clear()
    server.state.requests.clear()
    server.state.streams.clear()
    server.state.echo_delay = 0.0


def option(provider: str, *, tools: bool = True, model: str | None = None) -> ModelOption:
    model = model or ("claude-sonnet-5-5" if provider == "anthropic" else "gpt-4.1-mini")
    return ModelOption(
        id=f"{provider}:{model}",
        label=model,
        provider=provider,  # type: ignore[arg-type]
        model=model,
        vision=True,
        tools=tools,
        context_tokens=200_000,
        source="environment",
    )


def credentials(server: ModelServer, provider: str, key: str | None = None) -> ModelCredentials:
    if provider == "anthropic":
        return ModelCredentials(api_key=key or ANTHROPIC_KEY, base_url=server.anthropic_base_url)
    return ModelCredentials(api_key=key or OPENAI_KEY, base_url=server.openai_base_url)


async def collect(server: ModelServer, provider: str, turns: list[ChatTurn], **options) -> list:
    events = []
    reply = stream_reply(
        option=options.pop("model_option", None) or option(provider),
        credentials=options.pop("creds", None) or credentials(server, provider),
        system=options.pop("system", "You are Carmenta."),
        turns=turns,
        tools=options.pop("tools", []),
        max_tokens=options.pop("max_tokens", 512),
    )
    async with aclosing(reply) as stream:
        async for event in stream:
            events.append(event)
    return events


def text_of(events: list) -> str:
    return "".join(event.text for event in events if isinstance(event, TextDelta))


async def wait_for(condition, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_text_arrives_while_the_server_is_still_writing(server, provider):
    release = threading.Event()
    server.state.script(
        ScriptedReply(
            text_chunks=["Hello", ", Ada", ". Lovely day."],
            wait_for=release,
            input_tokens=17,
            output_tokens=9,
        )
    )
    reply = stream_reply(
        option=option(provider),
        credentials=credentials(server, provider),
        system="",
        turns=[ChatTurn("user", "Hi")],
        tools=[],
        max_tokens=100,
    )
    async with aclosing(reply) as stream:
        first = await anext(stream)
        # The server holds the rest until this point: the delta was not buffered.
        assert first == TextDelta("Hello")
        assert server.state.streams[-1].finished is False
        release.set()
        rest = [event async for event in stream]
    assert text_of([first, *rest]) == "Hello, Ada. Lovely day."
    assert rest[-1] == StreamFinished("end_turn", 17, 9)
    assert server.state.streams[-1].finished is True


async def test_anthropic_request_shape_and_tool_round_trip(server):
    server.state.script(
        ScriptedReply(
            text_chunks=["Let me look."],
            tool_calls=[ScriptedToolCall("get_weather", {"city": "Lisbon", "days": 3}, "toolu_1")],
            output_tokens=13,
        ),
        ScriptedReply(text_chunks=["Sunny ", "all week."]),
    )
    question = ChatTurn("user", "Weather in Lisbon?")
    first = await collect(server, "anthropic", [question], tools=[WEATHER])
    assert first[-2:] == [
        ToolCallRequested("toolu_1", "get_weather", {"city": "Lisbon", "days": 3}),
        StreamFinished("tool_use", 21, 13),
    ]
    turns = [
        question,
        ChatTurn(
            "assistant",
            "Let me look.",
            tool_calls=[ToolCall("toolu_1", "get_weather", {"city": "Lisbon", "days": 3})],
        ),
        ChatTurn("user", tool_results=[ToolResult("toolu_1", "sunny, 24°C")]),
    ]
    second = await collect(server, "anthropic", turns, tools=[WEATHER])
    assert text_of(second) == "Sunny all week."

    sent = server.state.requests_to("anthropic")
    assert anthropic_key_of(sent[0].headers) == ANTHROPIC_KEY
    assert sent[0].headers["anthropic-version"]
    body = sent[0].body
    assert body["system"] == "You are Carmenta."
    assert body["stream"] is True and body["max_tokens"] == 512
    assert body["tools"] == [
        {
            "name": "get_weather",
            "description": "The weather forecast for a city.",
            "input_schema": WEATHER.parameters,
        }
    ]
    assert sent[1].body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Weather in Lisbon?"}]},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me look."},
                {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": "get_weather",
                    "input": {"city": "Lisbon", "days": 3},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny, 24°C"}
            ],
        },
    ]


async def test_openai_request_shape_and_tool_round_trip(server):
    server.state.script(
        ScriptedReply(
            tool_calls=[
                ScriptedToolCall("get_weather", {"city": "Lisbon"}, "call_a", fragments=4),
                ScriptedToolCall("get_weather", {"city": "Porto", "days": 2}, "call_b"),
            ],
            output_tokens=20,
        ),
        ScriptedReply(text_chunks=["Both ", "sunny."]),
    )
    question = ChatTurn("user", "Lisbon and Porto?")
    first = await collect(server, "openai", [question], tools=[WEATHER])
    assert first == [
        ToolCallRequested("call_a", "get_weather", {"city": "Lisbon"}),
        ToolCallRequested("call_b", "get_weather", {"city": "Porto", "days": 2}),
        StreamFinished("tool_use", 21, 20),
    ]
    turns = [
        question,
        ChatTurn(
            "assistant",
            tool_calls=[
                ToolCall("call_a", "get_weather", {"city": "Lisbon"}),
                ToolCall("call_b", "get_weather", {"city": "Porto", "days": 2}),
            ],
        ),
        ChatTurn(
            "user",
            tool_results=[
                ToolResult("call_a", "sunny"),
                ToolResult("call_b", "the weather service timed out", is_error=True),
            ],
        ),
    ]
    second = await collect(server, "openai", turns, tools=[WEATHER])
    assert text_of(second) == "Both sunny."

    sent = server.state.requests_to("openai")
    assert sent[0].headers["authorization"] == f"Bearer {OPENAI_KEY}"
    body = sent[0].body
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    # Not OpenAI itself: the widely understood parameter.
    assert body["max_tokens"] == 512 and "max_completion_tokens" not in body
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "The weather forecast for a city.",
                "parameters": WEATHER.parameters,
            },
        }
    ]
    messages = sent[1].body["messages"]
    assert messages[0] == {"role": "system", "content": "You are Carmenta."}
    assert messages[1] == {"role": "user", "content": "Lisbon and Porto?"}
    assistant = messages[2]
    assert assistant["role"] == "assistant" and assistant["content"] is None
    assert [
        (
            call["id"],
            call["type"],
            call["function"]["name"],
            json.loads(call["function"]["arguments"]),
        )
        for call in assistant["tool_calls"]
    ] == [
        ("call_a", "function", "get_weather", {"city": "Lisbon"}),
        ("call_b", "function", "get_weather", {"city": "Porto", "days": 2}),
    ]
    assert messages[3:] == [
        {"role": "tool", "tool_call_id": "call_a", "content": "sunny"},
        {
            "role": "tool",
            "tool_call_id": "call_b",
            "content": "Error: the weather service timed out",
        },
    ]


async def test_images_go_as_base64_blocks_and_data_urls(server):
    turn = ChatTurn("user", "What is in this picture?", images=[ImageInput("image/png", PIXEL)])
    await collect(server, "anthropic", [turn])
    await collect(server, "openai", [turn])
    encoded = base64.b64encode(PIXEL).decode()
    [anthropic_request] = server.state.requests_to("anthropic")
    assert anthropic_request.body["messages"][0]["content"] == [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": encoded}},
        {"type": "text", "text": "What is in this picture?"},
    ]
    [openai_request] = server.state.requests_to("openai")
    assert openai_request.body["messages"][1]["content"] == [
        {"type": "text", "text": "What is in this picture?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{encoded}"}},
    ]


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_model_without_tools_is_sent_none(server, provider):
    events = await collect(
        server,
        provider,
        [ChatTurn("user", "hi")],
        tools=[WEATHER],
        model_option=option(provider, tools=False),
    )
    assert text_of(events) == "Echo: hi"
    [sent] = server.state.requests
    assert "tools" not in sent.body


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_closing_the_stream_early_disconnects_from_the_server(server, provider):
    server.state.echo_delay = 0.05
    long_message = " ".join(f"word{index}" for index in range(400))  # 20 s at that pace
    reply = stream_reply(
        option=option(provider),
        credentials=credentials(server, provider),
        system="",
        turns=[ChatTurn("user", long_message)],
        tools=[],
        max_tokens=1000,
    )
    async with aclosing(reply) as stream:
        assert await anext(stream) == TextDelta("Echo: ")
    await wait_for(lambda: server.state.streams[-1].disconnected, "the server to see the close")
    assert server.state.streams[-1].chunks_sent < 50


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_cancelling_the_consuming_task_disconnects_from_the_server(server, provider):
    server.state.echo_delay = 0.05
    seen: list = []

    async def consume_into_seen() -> None:
        reply = stream_reply(
            option=option(provider),
            credentials=credentials(server, provider),
            system="",
            turns=[ChatTurn("user", "many words " * 200)],
            tools=[],
            max_tokens=1000,
        )
        async with aclosing(reply) as stream:
            async for event in stream:
                seen.append(event)

    task = asyncio.create_task(consume_into_seen())
    await wait_for(lambda: len(seen) >= 2, "the first deltas")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await wait_for(lambda: server.state.streams[-1].disconnected, "the server to see the close")


@pytest.mark.parametrize(
    ("provider", "status", "kind", "message", "times"),
    [
        ("anthropic", 400, "bad_request", "refused the request: Scripted error", 1),
        ("anthropic", 403, "permission", "not allowed to use claude-sonnet-5-5", 1),
        ("anthropic", 404, "not_found", "has no model called claude-sonnet-5-5", 1),
        ("anthropic", 413, "too_large", "too large", 1),
        ("anthropic", 429, "rate_limited", "Try again in 20 seconds", 2),
        ("anthropic", 500, "server", "had a problem answering", 2),
        ("anthropic", 529, "overloaded", "overloaded right now", 2),
        ("openai", 400, "bad_request", "refused the request: Scripted error", 1),
        ("openai", 404, "not_found", "has no model called gpt-4.1-mini", 1),
        ("openai", 429, "rate_limited", "limiting requests", 2),
        ("openai", 503, "server", "had a problem answering", 2),
    ],
)
async def test_error_statuses_become_plain_model_errors(
    server, provider, status, kind, message, times
):
    server.state.script(ScriptedReply(status=status, headers={"retry-after": "20"}, times=times))
    with pytest.raises(ModelError) as raised:
        await collect(server, provider, [ChatTurn("user", "hi")])
    error = raised.value
    assert error.kind == kind and error.status == status
    assert message in str(error)
    assert ANTHROPIC_KEY not in str(error) and OPENAI_KEY not in str(error)
    # Retryable statuses were tried once more, the others not.
    assert len(server.state.requests) == times
    assert error.retryable == (times == 2)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_wrong_key_is_named_without_showing_it(server, provider):
    wrong = "sk-ant-api03-wrong-" + secrets.token_hex(8)
    with pytest.raises(ModelError) as raised:
        await collect(
            server, provider, [ChatTurn("user", "hi")], creds=credentials(server, provider, wrong)
        )
    assert raised.value.kind == "auth"
    assert "did not accept the API key" in str(raised.value)
    assert wrong not in str(raised.value) and wrong not in repr(raised.value.args)


async def test_a_provider_message_echoing_the_key_is_scrubbed(server):
    server.state.script(
        ScriptedReply(status=400, error_message=f"key {OPENAI_KEY} may not use this parameter")
    )
    with pytest.raises(ModelError) as raised:
        await collect(server, "openai", [ChatTurn("user", "hi")])
    assert OPENAI_KEY not in str(raised.value)
    assert "key [key] may not use this parameter" in str(raised.value)


@pytest.mark.parametrize(
    ("provider", "reply"),
    [
        (
            "anthropic",
            ScriptedReply(
                status=400, error_message="prompt is too long: 250000 tokens > 200000 maximum"
            ),
        ),
        (
            "openai",
            ScriptedReply(
                status=400,
                error_code="context_length_exceeded",
                error_message="This model's maximum context length is 128000 tokens.",
            ),
        ),
    ],
)
async def test_a_conversation_too_long_for_the_model_says_so(server, provider, reply):
    server.state.script(reply)
    with pytest.raises(ModelError) as raised:
        await collect(server, provider, [ChatTurn("user", "hi")])
    assert raised.value.kind == "context_length"
    assert "This conversation is too long for" in str(raised.value)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_an_error_in_the_middle_of_a_stream_ends_it_with_a_model_error(server, provider):
    server.state.script(
        ScriptedReply(
            text_chunks=["Partial "],
            error_mid_stream=True,
            error_type="overloaded_error" if provider == "anthropic" else "server_error",
            error_message="Overloaded",
        )
    )
    seen = []
    with pytest.raises(ModelError) as raised:
        reply = stream_reply(
            option=option(provider),
            credentials=credentials(server, provider),
            system="",
            turns=[ChatTurn("user", "hi")],
            tools=[],
            max_tokens=100,
        )
        async with aclosing(reply) as stream:
            async for event in stream:
                seen.append(event)
    assert seen == [TextDelta("Partial ")]
    assert raised.value.kind == ("overloaded" if provider == "anthropic" else "server")


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_an_unreachable_server_is_a_connection_error(provider):
    base = f"http://127.0.0.1:{free_port()}"
    creds = ModelCredentials(
        api_key="sk-x", base_url=base if provider == "anthropic" else base + "/v1"
    )
    with pytest.raises(ModelError) as raised:
        async with aclosing(
            stream_reply(
                option=option(provider),
                credentials=creds,
                system="",
                turns=[ChatTurn("user", "hi")],
                tools=[],
                max_tokens=10,
            )
        ) as stream:
            async for _ in stream:
                pass
    assert raised.value.kind == "connection"
    assert "Could not reach" in str(raised.value)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_complete_collects_the_whole_text(server, provider):
    server.state.script(ScriptedReply(text_chunks=["A short ", "title"]))
    text = await complete(
        option=option(provider),
        credentials=credentials(server, provider),
        system="Name this conversation.",
        turns=[ChatTurn("user", "We talked about tea.")],
        max_tokens=20,
    )
    assert text == "A short title"
    assert server.state.requests[-1].body.get("max_tokens") == 20


async def test_one_client_serves_every_call_with_the_same_key(server):
    first = client_for("anthropic", credentials(server, "anthropic"))
    again = client_for("anthropic", credentials(server, "anthropic"))
    other_key = client_for("anthropic", credentials(server, "anthropic", "sk-ant-other"))
    assert first is again and other_key is not first
    assert client_for("openai", credentials(server, "openai")) is client_for(
        "openai", credentials(server, "openai")
    )
