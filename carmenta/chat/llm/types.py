"""The model layer's own vocabulary, the same whichever provider answers.

A conversation goes in as `ChatTurn`s and tools as `ToolSpec`s; a reply comes out as
a stream of `TextDelta`, `ToolCallRequested` and one final `StreamFinished`.
Provider modules translate to and from their wire formats; nothing outside them
sees an Anthropic or OpenAI shape.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from carmenta.errors import CarmentaError

Provider = Literal["anthropic", "openai"]
OptionSource = Literal["environment", "connection"]
Role = Literal["user", "assistant"]


@dataclass(frozen=True)
class ModelOption:
    """A model a person can pick, and what it can do."""

    # Stable: "anthropic:<model>", "openai:<model>" (configured by the operator) or
    # "conn:<connection uuid>:<model>" (the person's own key).
    id: str
    label: str
    provider: Provider
    # The name sent to the API.
    model: str
    vision: bool
    tools: bool
    context_tokens: int
    source: OptionSource


@dataclass(frozen=True)
class ModelCredentials:
    """Where and with what key to call a model; server-side only, never in UI state."""

    api_key: str = field(repr=False)
    # None: the provider's public API.
    base_url: str | None = None


@dataclass(frozen=True)
class ImageInput:
    media_type: str
    data: bytes = field(repr=False)


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class ToolResult:
    call_id: str
    content: str
    is_error: bool = False


@dataclass(frozen=True)
class ChatTurn:
    """One message of the conversation so far.

    A user turn may carry the results of the tools the previous assistant turn asked
    for; an assistant turn may carry the tool calls it made.
    """

    role: Role
    text: str = ""
    images: list[ImageInput] = field(default_factory=list)
    tool_calls: list[ToolCall] = field(default_factory=list)
    tool_results: list[ToolResult] = field(default_factory=list)


@dataclass(frozen=True)
class ToolSpec:
    name: str
    description: str
    # A JSON schema of the arguments (an object schema).
    parameters: dict[str, Any]


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class ToolCallRequested:
    id: str
    name: str
    arguments: dict[str, Any]


# Stop reasons in one vocabulary (Anthropic's): "end_turn", "tool_use", "max_tokens",
# "stop_sequence", "refusal", "pause_turn"; anything else is passed through as sent.
@dataclass(frozen=True)
class StreamFinished:
    stop_reason: str
    input_tokens: int | None
    output_tokens: int | None


StreamEvent = TextDelta | ToolCallRequested | StreamFinished


class ModelError(CarmentaError):
    """A model call failed; the message says why in plain words and never holds a key.

    `kind` is one of: "auth", "permission", "not_found", "rate_limited", "overloaded",
    "context_length", "too_large", "bad_request", "server", "timeout", "connection",
    "unavailable" (not offered to this person), "billing".
    """

    def __init__(self, message: str, *, kind: str, status: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status

    @property
    def retryable(self) -> bool:
        return self.kind in ("rate_limited", "overloaded", "server", "timeout", "connection")
