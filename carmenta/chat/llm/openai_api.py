"""OpenAI's Chat Completions API (and every server that speaks it), as neutral events.

Tool results become `tool` messages after the assistant message that asked for
them; images become data-URL `image_url` parts. A streamed tool call arrives as
fragments keyed by `index` (the id and name in the first, the arguments spread over
many) and is emitted whole when the choice finishes.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from carmenta.chat.llm.types import (
    ChatTurn,
    StreamEvent,
    StreamFinished,
    TextDelta,
    ToolCallRequested,
    ToolSpec,
)

logger = logging.getLogger(__name__)

# Finish reasons in the neutral vocabulary (Anthropic's).
_STOP_REASONS = {
    "stop": "end_turn",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "length": "max_tokens",
    "content_filter": "refusal",
}
ERROR_PREFIX = "Error: "


def _user_messages(turn: ChatTurn) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = [
        {
            "role": "tool",
            "tool_call_id": item.call_id,
            # The format has no error flag: the content says it.
            "content": f"{ERROR_PREFIX}{item.content}" if item.is_error else item.content,
        }
        for item in turn.tool_results
    ]
    if turn.images:
        parts: list[dict[str, Any]] = []
        if turn.text.strip():
            parts.append({"type": "text", "text": turn.text})
        parts += [
            {
                "type": "image_url",
                "image_url": {
                    "url": f"data:{image.media_type};base64,"
                    + base64.b64encode(image.data).decode("ascii")
                },
            }
            for image in turn.images
        ]
        result.append({"role": "user", "content": parts})
    elif turn.text.strip():
        result.append({"role": "user", "content": turn.text})
    return result


def _assistant_message(turn: ChatTurn) -> dict[str, Any] | None:
    if not turn.text.strip() and not turn.tool_calls:
        return None
    message: dict[str, Any] = {"role": "assistant", "content": turn.text or None}
    if turn.tool_calls:
        message["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": json.dumps(call.arguments)},
            }
            for call in turn.tool_calls
        ]
    return message


def messages(system: str, turns: list[ChatTurn]) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = []
    if system.strip():
        result.append({"role": "system", "content": system})
    for turn in turns:
        if turn.role == "user":
            result += _user_messages(turn)
        else:
            message = _assistant_message(turn)
            if message is not None:
                result.append(message)
    return result


def is_openai_itself(base_url: str) -> bool:
    return (urlsplit(base_url).hostname or "").lower() == "api.openai.com"


def request(
    *,
    model: str,
    system: str,
    turns: list[ChatTurn],
    tools: list[ToolSpec],
    max_tokens: int,
    base_url: str,
) -> dict[str, Any]:
    params: dict[str, Any] = {
        "model": model,
        "messages": messages(system, turns),
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    # OpenAI's newer models refuse `max_tokens`; most compatible servers (Ollama,
    # vLLM, older OpenRouter routes) only know it.
    params["max_completion_tokens" if is_openai_itself(base_url) else "max_tokens"] = max_tokens
    if tools:
        params["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": tool.name,
                    "description": tool.description,
                    "parameters": tool.parameters,
                },
            }
            for tool in tools
        ]
    return params


@dataclass
class _PartialCall:
    id: str = ""
    name: str = ""
    fragments: list[str] = field(default_factory=list)

    def complete(self) -> ToolCallRequested:
        text = "".join(self.fragments).strip()
        arguments: Any = {}
        if text:
            try:
                arguments = json.loads(text)
            except ValueError:
                logger.warning("the model sent arguments for tool %s that are not JSON", self.name)
        return ToolCallRequested(
            self.id, self.name, arguments if isinstance(arguments, dict) else {}
        )


async def events(stream: Any) -> AsyncIterator[StreamEvent]:
    calls: dict[int, _PartialCall] = {}
    finish_reason: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None

    def flush() -> list[ToolCallRequested]:
        done = [calls[index].complete() for index in sorted(calls)]
        calls.clear()
        return done

    async for chunk in stream:
        if not isinstance(chunk, dict):
            continue
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            input_tokens = usage.get("prompt_tokens", input_tokens)
            output_tokens = usage.get("completion_tokens", output_tokens)
        for choice in chunk.get("choices") or []:
            if not isinstance(choice, dict) or (choice.get("index") or 0) != 0:
                continue
            delta = choice.get("delta")
            if isinstance(delta, dict):
                if delta.get("content"):
                    yield TextDelta(delta["content"])
                for fragment in delta.get("tool_calls") or []:
                    partial = calls.setdefault(fragment.get("index") or 0, _PartialCall())
                    if fragment.get("id"):
                        partial.id = fragment["id"]
                    function = fragment.get("function")
                    if isinstance(function, dict):
                        if function.get("name"):
                            partial.name += function["name"]
                        if function.get("arguments"):
                            partial.fragments.append(function["arguments"])
            if choice.get("finish_reason"):
                finish_reason = choice["finish_reason"]
                for call in flush():
                    yield call
    for call in flush():
        yield call
    stop_reason = _STOP_REASONS.get(finish_reason or "stop", finish_reason or "end_turn")
    yield StreamFinished(stop_reason, input_tokens, output_tokens)
