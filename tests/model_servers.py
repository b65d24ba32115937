"""Local stand-ins for the model APIs, speaking their documented streaming formats.

One Starlette app serves both, on 127.0.0.1 (granian, embedded, in a thread), so the
official clients talk HTTP to it unchanged:

- Anthropic Messages API: `POST /v1/messages` streams SSE events (message_start,
  content_block_start / content_block_delta with text_delta or input_json_delta /
  content_block_stop, ping, message_delta with stop_reason and usage, message_stop;
  an `error` event mid-stream), or answers a non-streaming request with one message;
  errors as {"type": "error", "error": {"type", "message"}} with Anthropic's statuses.
  Point the app here with ANTHROPIC_BASE_URL=<url> (the client adds /v1).
- OpenAI Chat Completions: `POST /v1/chat/completions` streams `data:` chunks
  (choices[0].delta content or tool_calls fragments by index, finish_reason, a final
  usage chunk when stream_options.include_usage, then `data: [DONE]`); errors as
  {"error": {"message", "type", "param", "code"}}. OPENAI_BASE_URL=<url>/v1.
- `GET /v1/models` in the shape of whichever API the headers announce.

Each request takes the next scripted reply from `state.replies` (text chunks, tool
calls, a delay between chunks, an event to wait on, an error status); with none
scripted it echoes the last user message word by word. Every request's headers and
JSON body are recorded, and every stream records whether it ran to its end or the
client went away.

Standalone, for pointing a running app at it: `python -m tests.model_servers --port N`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.local_server import BackgroundServer

ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
OPENAI_ERROR_TYPES = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
    500: ("server_error", None),
    503: ("server_error", None),
}
DEFAULT_MODELS = {
    "anthropic": ["claude-sonnet-4-5", "claude-haiku-4-5"],
    "openai": ["gpt-4.1-mini", "gpt-4.1"],
}


@dataclass
class ScriptedToolCall:
    name: str
    arguments: dict[str, Any]
    id: str = field(default_factory=lambda: f"call_{secrets.token_hex(6)}")
    # The arguments' JSON is sent in this many fragments.
    fragments: int = 3


@dataclass
class ScriptedReply:
    text_chunks: list[str] = field(default_factory=list)
    tool_calls: list[ScriptedToolCall] = field(default_factory=list)
    # Seconds between two chunks.
    delay: float = 0.0
    # After the first text chunk, wait for this to be set before sending the rest.
    wait_for: threading.Event | None = None
    # An error status instead of a stream, in the API's own error shape.
    status: int | None = None
    error_type: str | None = None
    error_code: str | None = None
    error_message: str = "Scripted error"
    headers: dict[str, str] = field(default_factory=dict)
    # Send an error event after the text chunks instead of finishing normally.
    error_mid_stream: bool = False
    # Answer this many requests with it (a retried error is asked for again).
    times: int = 1
    stop_reason: str | None = None
    input_tokens: int = 21
    # None: one per word of text and ten per tool call.
    output_tokens: int | None = None


@dataclass
class RecordedRequest:
    api: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    # Epoch seconds (time.time(), comparable with other processes on this machine):
    # when the request arrived, and when the first byte of its streamed answer went out.
    received_at: float = 0.0
    first_byte_at: float | None = None


@dataclass
class StreamRecord:
    api: str
    chunks_sent: int = 0
    finished: bool = False
    disconnected: bool = False


@dataclass
class ModelServerState:
    # None: any key is accepted.
    anthropic_key: str | None = None
    openai_key: str | None = None
    replies: deque[ScriptedReply] = field(default_factory=deque)
    requests: list[RecordedRequest] = field(default_factory=list)
    streams: list[StreamRecord] = field(default_factory=list)
    # Seconds between the words of an echo.
    echo_delay: float = 0.0
    # Seconds before a stream's first byte: a hosted model's time to its first token.
    first_byte_delay: float = 0.0
    # Seconds before answering a request that does not stream (titles, extraction).
    answer_delay: float = 0.0
    models: dict[str, list[str]] = field(default_factory=lambda: dict(DEFAULT_MODELS))
    # Status answered by GET /v1/models (None: the list).
    models_status: int | None = None
    models_requests: int = 0

    def script(self, *replies: ScriptedReply) -> None:
        self.replies.extend(replies)

    def next_reply(self) -> ScriptedReply | None:
        if not self.replies:
            return None
        reply = self.replies[0]
        reply.times -= 1
        if reply.times <= 0:
            self.replies.popleft()
        return reply

    def requests_to(self, api: str) -> list[RecordedRequest]:
        return [request for request in self.requests if request.api == api]


def anthropic_key_of(headers: Any) -> str | None:
    """The key an Anthropic request carries: `x-api-key`, or a bearer token (which the
    current official client sends)."""
    key = headers.get("x-api-key")
    if key:
        return key
    authorization = headers.get("authorization") or ""
    return authorization[7:] if authorization.lower().startswith("bearer ") else None


def _sse(event: str | None, data: Any) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {payload}\n\n".encode()


def _split(text: str, parts: int) -> list[str]:
    parts = max(1, min(parts, len(text)))
    size = -(-len(text) // parts)
    return [text[index : index + size] for index in range(0, len(text), size)]


def _last_user_text_anthropic(body: dict[str, Any]) -> str:
    for message in reversed(body.get("messages") or []):
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            return content
        texts = [block.get("text", "") for block in content or [] if block.get("type") == "text"]
        return " ".join(texts)
    return ""


def _last_user_text_openai(body: dict[str, Any]) -> str:
    for message in reversed(body.get("messages") or []):
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            return content
        return " ".join(
            part.get("text", "") for part in content or [] if part.get("type") == "text"
        )
    return ""


def echo_words(text: str) -> list[str]:
    """The echo reply, as the chunks it is sent in: "Echo: <words>" word by word."""
    words = ("Echo: " + (" ".join(text.split()) or "(nothing)")).split(" ")
    return [word + " " for word in words[:-1]] + [words[-1]]


def build_app(state: ModelServerState) -> Starlette:
    async def record(request: Request, api: str) -> RecordedRequest:
        received_at = time.time()
        try:
            body = await request.json()
        except ValueError:
            body = {}
        recorded = RecordedRequest(
            api, request.url.path, dict(request.headers), body, received_at=received_at
        )
        state.requests.append(recorded)
        return recorded

    async def pace(reply: ScriptedReply | None, delay: float, stream: StreamRecord) -> None:
        stream.chunks_sent += 1
        if delay:
            await asyncio.sleep(delay)
        if reply is not None and reply.wait_for is not None and stream.chunks_sent == 1:
            deadline = time.monotonic() + 30
            while not reply.wait_for.is_set() and time.monotonic() < deadline:
                await asyncio.sleep(0.01)

    def tracked(
        recorded: RecordedRequest, chunks: Callable[[StreamRecord], AsyncIterator[bytes]]
    ) -> StreamingResponse:
        async def body() -> AsyncIterator[bytes]:
            record = StreamRecord(recorded.api)
            state.streams.append(record)
            if state.first_byte_delay:
                await asyncio.sleep(state.first_byte_delay)
            try:
                async for chunk in chunks(record):
                    if recorded.first_byte_at is None:
                        recorded.first_byte_at = time.time()
                    yield chunk
                record.finished = True
            finally:
                if not record.finished:
                    record.disconnected = True

        return StreamingResponse(
            body(), media_type="text/event-stream", headers={"cache-control": "no-cache"}
        )

    # -- Anthropic ---------------------------------------------------------------------

    def anthropic_error(status: int, kind: str | None, message: str, headers=None) -> Response:
        return JSONResponse(
            {
                "type": "error",
                "error": {
                    "type": kind or ANTHROPIC_ERROR_TYPES.get(status, "api_error"),
                    "message": message,
                },
                "request_id": f"req_{secrets.token_hex(8)}",
            },
            status_code=status,
            headers=headers,
        )

    async def anthropic_messages(request: Request) -> Response:
        recorded = await record(request, "anthropic")
        body = recorded.body
        if (
            state.anthropic_key is not None
            and anthropic_key_of(request.headers) != state.anthropic_key
        ):
            return anthropic_error(401, None, "invalid x-api-key")
        if not request.headers.get("anthropic-version"):
            return anthropic_error(400, None, "anthropic-version header is required")
        for name in ("model", "max_tokens", "messages"):
            if name not in body:
                return anthropic_error(400, None, f"{name}: Field required")
        reply = state.next_reply()
        if reply is not None and reply.status is not None:
            headers = {"retry-after-ms": "10", **reply.headers}
            return anthropic_error(reply.status, reply.error_type, reply.error_message, headers)
        if reply is None:
            text_chunks = echo_words(_last_user_text_anthropic(body))
            tool_calls: list[ScriptedToolCall] = []
            delay = state.echo_delay
        else:
            text_chunks, tool_calls, delay = reply.text_chunks, reply.tool_calls, reply.delay
        model = body["model"]
        stop_reason = (reply.stop_reason if reply else None) or (
            "tool_use" if tool_calls else "end_turn"
        )
        input_tokens = reply.input_tokens if reply else len(json.dumps(body)) // 4
        output_tokens = (reply.output_tokens if reply else None) or (
            sum(len(chunk.split()) for chunk in text_chunks) + 10 * len(tool_calls)
        )

        if not body.get("stream"):
            if state.answer_delay:
                await asyncio.sleep(state.answer_delay)
            content: list[dict[str, Any]] = []
            if text_chunks:
                content.append({"type": "text", "text": "".join(text_chunks)})
            content += [
                {"type": "tool_use", "id": call.id, "name": call.name, "input": call.arguments}
                for call in tool_calls
            ]
            return JSONResponse(
                {
                    "id": f"msg_{secrets.token_hex(8)}",
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": content,
                    "stop_reason": stop_reason,
                    "stop_sequence": None,
                    "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
                }
            )

        async def chunks(stream: StreamRecord) -> AsyncIterator[bytes]:
            yield _sse(
                "message_start",
                {
                    "type": "message_start",
                    "message": {
                        "id": f"msg_{secrets.token_hex(8)}",
                        "type": "message",
                        "role": "assistant",
                        "model": model,
                        "content": [],
                        "stop_reason": None,
                        "stop_sequence": None,
                        "usage": {"input_tokens": input_tokens, "output_tokens": 1},
                    },
                },
            )
            index = 0
            if text_chunks:
                yield _sse(
                    "content_block_start",
                    {
                        "type": "content_block_start",
                        "index": index,
                        "content_block": {"type": "text", "text": ""},
                    },
                )
                yield _sse("ping", {"type": "ping"})
                for text in text_chunks:
                    yield _sse(
                        "content_block_delta",
                        {
                            "type": "content_block_delta",
                            "index": index,
                            "delta": {"type": "text_delta", "text": text},
                        },
                    )
                    await pace(reply, delay, stream)
                if reply is not None and reply.error_mid_stream:
                    yield _sse(
                        "error",
                        {
                            "type": "error",
                            "error": {
                                "type": reply.error_type or "overloaded_error",
                                "message": reply.error_message,
                            },
                        },
                    )
                    return
                yield _sse("content_block_stop", {"type": "content_block_stop", "index": index})
                index += 1
            for call in tool_calls:
                yield _sse(
                    "content_block_start",
                    {
                        "type": "content_block_start",
                        "index": index,
                        "content_block": {
                            "type": "tool_use",
                            "id": call.id,
                            "name": call.name,
                            "input": {},
                        },
                    },
                )
                for fragment in _split(json.dumps(call.arguments), call.fragments):
                    yield _sse(
                        "content_block_delta",
                        {
                            "type": "content_block_delta",
                            "index": index,
                            "delta": {"type": "input_json_delta", "partial_json": fragment},
                        },
                    )
                    await pace(reply, delay, stream)
                yield _sse("content_block_stop", {"type": "content_block_stop", "index": index})
                index += 1
            yield _sse(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                    "usage": {"output_tokens": output_tokens},
                },
            )
            yield _sse("message_stop", {"type": "message_stop"})

        return tracked(recorded, chunks)

    # -- OpenAI ------------------------------------------------------------------------

    def openai_error(
        status: int, kind: str | None, code: str | None, message: str, headers=None
    ) -> Response:
        default_kind, default_code = OPENAI_ERROR_TYPES.get(status, ("server_error", None))
        return JSONResponse(
            {
                "error": {
                    "message": message,
                    "type": kind or default_kind,
                    "param": None,
                    "code": code if code is not None else default_code,
                }
            },
            status_code=status,
            headers=headers,
        )

    async def openai_chat(request: Request) -> Response:
        recorded = await record(request, "openai")
        body = recorded.body
        if (
            state.openai_key is not None
            and request.headers.get("authorization") != f"Bearer {state.openai_key}"
        ):
            return openai_error(401, None, None, "Incorrect API key provided.")
        for name in ("model", "messages"):
            if name not in body:
                return openai_error(400, None, None, f"Missing required parameter: '{name}'.")
        reply = state.next_reply()
        if reply is not None and reply.status is not None:
            headers = {"retry-after-ms": "10", **reply.headers}
            return openai_error(
                reply.status, reply.error_type, reply.error_code, reply.error_message, headers
            )
        if reply is None:
            text_chunks = echo_words(_last_user_text_openai(body))
            tool_calls: list[ScriptedToolCall] = []
            delay = state.echo_delay
        else:
            text_chunks, tool_calls, delay = reply.text_chunks, reply.tool_calls, reply.delay
        model = body["model"]
        finish_reason = (reply.stop_reason if reply else None) or (
            "tool_calls" if tool_calls else "stop"
        )
        prompt_tokens = reply.input_tokens if reply else len(json.dumps(body)) // 4
        completion_tokens = (reply.output_tokens if reply else None) or (
            sum(len(chunk.split()) for chunk in text_chunks) + 10 * len(tool_calls)
        )
        completion_id = f"chatcmpl-{secrets.token_hex(8)}"
        created = int(time.time())

        if not body.get("stream"):
            if state.answer_delay:
                await asyncio.sleep(state.answer_delay)
            message: dict[str, Any] = {"role": "assistant", "content": "".join(text_chunks) or None}
            if tool_calls:
                message["tool_calls"] = [
                    {
                        "id": call.id,
                        "type": "function",
                        "function": {"name": call.name, "arguments": json.dumps(call.arguments)},
                    }
                    for call in tool_calls
                ]
            return JSONResponse(
                {
                    "id": completion_id,
                    "object": "chat.completion",
                    "created": created,
                    "model": model,
                    "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
                    "usage": {
                        "prompt_tokens": prompt_tokens,
                        "completion_tokens": completion_tokens,
                        "total_tokens": prompt_tokens + completion_tokens,
                    },
                }
            )

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            return _sse(
                None,
                {
                    "id": completion_id,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": model,
                    "system_fingerprint": None,
                    "choices": [
                        {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
                    ],
                },
            )

        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

        async def chunks(stream: StreamRecord) -> AsyncIterator[bytes]:
            yield chunk({"role": "assistant", "content": ""})
            for text in text_chunks:
                yield chunk({"content": text})
                await pace(reply, delay, stream)
            if reply is not None and reply.error_mid_stream:
                yield _sse(
                    None,
                    {
                        "error": {
                            "message": reply.error_message,
                            "type": reply.error_type or "server_error",
                            "param": None,
                            "code": reply.error_code,
                        }
                    },
                )
                return
            for index, call in enumerate(tool_calls):
                yield chunk(
                    {
                        "tool_calls": [
                            {
                                "index": index,
                                "id": call.id,
                                "type": "function",
                                "function": {"name": call.name, "arguments": ""},
                            }
                        ]
                    }
                )
                for fragment in _split(json.dumps(call.arguments), call.fragments):
                    yield chunk(
                        {"tool_calls": [{"index": index, "function": {"arguments": fragment}}]}
                    )
                    await pace(reply, delay, stream)
            yield chunk({}, finish_reason)
            if include_usage:
                yield _sse(
                    None,
                    {
                        "id": completion_id,
                        "object": "chat.completion.chunk",
                        "created": created,
                        "model": model,
                        "choices": [],
                        "usage": {
                            "prompt_tokens": prompt_tokens,
                            "completion_tokens": completion_tokens,
                            "total_tokens": prompt_tokens + completion_tokens,
                        },
                    },
                )
            yield b"data: [DONE]\n\n"

        return tracked(recorded, chunks)

    # -- Model lists -------------------------------------------------------------------

    async def list_models(request: Request) -> Response:
        state.models_requests += 1
        is_anthropic = "anthropic-version" in request.headers or "x-api-key" in request.headers
        if state.models_status is not None:
            if is_anthropic:
                return anthropic_error(state.models_status, None, "Scripted error")
            return openai_error(state.models_status, None, None, "Scripted error")
        if is_anthropic:
            if state.anthropic_key is not None and (
                anthropic_key_of(request.headers) != state.anthropic_key
            ):
                return anthropic_error(401, None, "invalid x-api-key")
            names = state.models["anthropic"]
            return JSONResponse(
                {
                    "data": [
                        {
                            "type": "model",
                            "id": name,
                            "display_name": name,
                            "created_at": "2025-01-01T00:00:00Z",
                        }
                        for name in names
                    ],
                    "has_more": False,
                    "first_id": names[0] if names else None,
                    "last_id": names[-1] if names else None,
                }
            )
        if state.openai_key is not None and (
            request.headers.get("authorization") != f"Bearer {state.openai_key}"
        ):
            return openai_error(401, None, None, "Incorrect API key provided.")
        return JSONResponse(
            {
                "object": "list",
                "data": [
                    {"id": name, "object": "model", "created": 1700000000, "owned_by": "local"}
                    for name in state.models["openai"]
                ],
            }
        )

    async def health(request: Request) -> Response:
        return JSONResponse({"ok": True})

    return Starlette(
        routes=[
            Route("/v1/messages", anthropic_messages, methods=["POST"]),
            Route("/v1/chat/completions", openai_chat, methods=["POST"]),
            Route("/v1/models", list_models),
            Route("/health", health),
        ]
    )


class ModelServer:
    """The stand-in, listening on 127.0.0.1 in a background thread."""

    def __init__(self, state: ModelServerState | None = None) -> None:
        self.state = state or ModelServerState()
        self._server = BackgroundServer(
            build_app(self.state), name="model-server", probe_path="/health"
        )
        self.port = self._server.port
        self.url = self._server.url

    @property
    def anthropic_base_url(self) -> str:
        return self.url

    @property
    def openai_base_url(self) -> str:
        return f"{self.url}/v1"

    def start(self) -> ModelServer:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve the local model APIs (echo replies).")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--delay", type=float, default=0.05, help="seconds between echo words")
    options = parser.parse_args()

    from granian.constants import Interfaces
    from granian.server.embed import Server

    state = ModelServerState(echo_delay=options.delay)
    server = Server(
        build_app(state),
        address=options.host,
        port=options.port,
        interface=Interfaces.ASGINL,
        log_enabled=False,
    )
    print(
        f"ANTHROPIC_BASE_URL=http://{options.host}:{options.port}\n"
        f"OPENAI_BASE_URL=http://{options.host}:{options.port}/v1",
        flush=True,
    )
    asyncio.run(server.serve())


if __name__ == "__main__":
    main()
