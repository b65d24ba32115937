"""Anthropic's Messages API: requests in its shape, its SSE events as neutral events.

Tool results travel in a user turn as `tool_result` blocks, images as base64 `image`
blocks; tool calls arrive as a `tool_use` content block whose input is streamed as
`input_json_delta` fragments, assembled here and emitted once the block stops.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from carmenta.chat.llm.types import (
    ChatTurn,
    StreamEvent,
    StreamFinished,
    TextDelta,
    ToolCallRequested,
    ToolSpec,
)

logger = logging.getLogger(__name__)


def _user_blocks(turn: ChatTurn) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = [
        {
            "type": "tool_result",
            "tool_use_id": result.call_id,
            "content": result.content,
            **({"is_error": True} if result.is_error else {}),
        }
        for result in turn.tool_results
    ]
    blocks += [
        {
            "type": "image",
            "source": {
                "type": "base64",
                "media_type": image.media_type,
                "data": base64.b64encode(image.data).decode("ascii"),
            },
        }
        for image in turn.images
    ]
    if turn.text.strip():
        blocks.append({"type": "text", "text": turn.text})
    return blocks


def _assistant_blocks(turn: ChatTurn) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if turn.text.strip():
        blocks.append({"type": "text", "text": turn.text})
    blocks += [
        {"type": "tool_use", "id": call.id, "name": call.name, "input": call.arguments}
        for call in turn.tool_calls
    ]
    return blocks


def messages(turns: list[ChatTurn]) -> list[dict[str, Any]]:
    """The conversation as Messages API `messages`; turns with nothing in them are left out."""
    result: list[dict[str, Any]] = []
    for turn in turns:
        blocks = _user_blocks(turn) if turn.role == "user" else _assistant_blocks(turn)
        if blocks:
            result.append({"role": turn.role, "content": blocks})
    return result


def request(
    *, model: str, system: str, turns: list[ChatTurn], tools: list[ToolSpec], max_tokens: int
) -> dict[str, Any]:
    params: dict[str, Any] = {
        "model": model,
        "max_tokens": max_tokens,
        "messages": messages(turns),
    }
    if system.strip():
        params["system"] = system
    if tools:
        params["tools"] = [
            {"name": tool.name, "description": tool.description, "input_schema": tool.parameters}
            for tool in tools
        ]
    return params


def _arguments(fragments: list[str], name: str) -> dict[str, Any]:
    text = "".join(fragments).strip()
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        logger.warning("the model sent arguments for tool %s that are not JSON", name)
        return {}
    return value if isinstance(value, dict) else {}


async def events(stream: Any) -> AsyncIterator[StreamEvent]:
    """Neutral events from the raw stream events (JSON objects, as sent), in order."""
    tool_blocks: dict[int, tuple[str, str, list[str]]] = {}
    input_tokens: int | None = None
    output_tokens: int | None = None
    stop_reason = "end_turn"
    async for event in stream:
        if not isinstance(event, dict):
            continue
        kind = event.get("type")
        if kind == "message_start":
            usage = (event.get("message") or {}).get("usage") or {}
            input_tokens = usage.get("input_tokens")
            output_tokens = usage.get("output_tokens")
        elif kind == "content_block_start":
            block = event.get("content_block") or {}
            if block.get("type") == "tool_use":
                tool_blocks[event.get("index", 0)] = (
                    block.get("id", ""),
                    block.get("name", ""),
                    [],
                )
            elif block.get("type") == "text" and block.get("text"):
                yield TextDelta(block["text"])
        elif kind == "content_block_delta":
            delta = event.get("delta") or {}
            if delta.get("type") == "text_delta":
                if delta.get("text"):
                    yield TextDelta(delta["text"])
            elif delta.get("type") == "input_json_delta" and event.get("index", 0) in tool_blocks:
                tool_blocks[event.get("index", 0)][2].append(delta.get("partial_json") or "")
        elif kind == "content_block_stop":
            if event.get("index", 0) in tool_blocks:
                call_id, name, fragments = tool_blocks.pop(event.get("index", 0))
                yield ToolCallRequested(call_id, name, _arguments(fragments, name))
        elif kind == "message_delta":
            if (event.get("delta") or {}).get("stop_reason"):
                stop_reason = event["delta"]["stop_reason"]
            usage = event.get("usage") or {}
            if usage.get("output_tokens") is not None:
                output_tokens = usage["output_tokens"]
            if usage.get("input_tokens") is not None:
                input_tokens = usage["input_tokens"]
    yield StreamFinished(stop_reason, input_tokens, output_tokens)
