"""Calling a model: `stream_reply` for the chat, `complete` for short background tasks.

Both go through the official async clients (one shared client per provider, base
URL and key). The HTTP stream belongs to the iterator: closing it early (the
person pressed Stop) or cancelling the task consuming it closes the response at
once, so the provider stops generating. Consume it under `contextlib.aclosing`
so that happens at once rather than whenever the generator is collected.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import anthropic
import openai
from openai.types.chat import ChatCompletion

from carmenta.chat.llm import anthropic_api, openai_api
from carmenta.chat.llm.clients import base_url_for, client_for
from carmenta.chat.llm.errors import model_error
from carmenta.chat.llm.types import (
    ChatTurn,
    ModelCredentials,
    ModelError,
    ModelOption,
    StreamEvent,
    TextDelta,
    ToolSpec,
)

_SDK_ERRORS = (anthropic.APIError, openai.APIError)


def service_name(option: ModelOption, credentials: ModelCredentials) -> str:
    """How a person knows the service behind a model: "Anthropic", "OpenAI" or a host."""
    base_url = base_url_for(option.provider, credentials)
    host = urlsplit(base_url).netloc.lower()
    if option.provider == "anthropic":
        return "Anthropic" if host in ("", "api.anthropic.com") else f"Anthropic ({host})"
    return "OpenAI" if host == "api.openai.com" else host or "the model service"


async def stream_reply(
    *,
    option: ModelOption,
    credentials: ModelCredentials,
    system: str,
    turns: list[ChatTurn],
    tools: list[ToolSpec],
    max_tokens: int,
) -> AsyncIterator[StreamEvent]:
    """The model's reply as it is written: text deltas, whole tool calls, then one
    StreamFinished. Raises ModelError (before or during the stream)."""
    if max_tokens < 1:
        raise ValueError("max_tokens must be at least 1")
    if not option.tools:
        tools = []
    client = client_for(option.provider, credentials)
    service = service_name(option, credentials)
    stream = None
    try:
        if option.provider == "anthropic":
            params = anthropic_api.request(
                model=option.model, system=system, turns=turns, tools=tools, max_tokens=max_tokens
            )
            # As for OpenAI below: the client's own POST, without the type transformer.
            stream = await client.post(
                "/v1/messages",
                body={**params, "stream": True},
                cast_to=anthropic.types.Message,
                stream=True,
                # Events as sent (JSON objects): building the SDK's models for each
                # of them cost more than the rest of a token's way to the page.
                stream_cls=anthropic.AsyncStream[object],
            )
            translated = anthropic_api.events(stream)
        else:
            params = openai_api.request(
                model=option.model,
                system=system,
                turns=turns,
                tools=tools,
                max_tokens=max_tokens,
                base_url=base_url_for(option.provider, credentials),
            )
            # The client's own POST with the body as built: `completions.create` would
            # first walk every message through the SDK's type transformer, which costs
            # milliseconds on the way to the first token and leaves these plain JSON
            # values as they are.
            stream = await client.post(
                "/chat/completions",
                body=params,
                cast_to=ChatCompletion,
                stream=True,
                stream_cls=openai.AsyncStream[object],  # chunks as sent, as above
            )
            translated = openai_api.events(stream)
        async for event in translated:
            yield event
    except _SDK_ERRORS as error:
        raise model_error(
            error, service=service, model=option.model, api_key=credentials.api_key
        ) from None
    finally:
        if stream is not None:
            # Closes the HTTP response: the provider sees the disconnect and stops.
            await stream.close()


async def complete(
    *,
    option: ModelOption,
    credentials: ModelCredentials,
    system: str,
    turns: list[ChatTurn],
    max_tokens: int = 1024,
) -> str:
    """The whole text of a reply without tools (titles, memory extraction)."""
    parts: list[str] = []
    reply = stream_reply(
        option=option,
        credentials=credentials,
        system=system,
        turns=turns,
        tools=[],
        max_tokens=max_tokens,
    )
    try:
        async for event in reply:
            if isinstance(event, TextDelta):
                parts.append(event.text)
    finally:
        await reply.aclose()
    return "".join(parts)


__all__ = ["ModelError", "complete", "service_name", "stream_reply"]
