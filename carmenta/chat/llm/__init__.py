"""The model layer: one way to call Anthropic or any OpenAI-compatible API.

    from carmenta.chat.llm import catalog, stream_reply
    option, credentials = await catalog.credentials_for(session=..., settings=...,
                                                        owner_id=..., option_id=...)
    async with contextlib.aclosing(stream_reply(option=option, credentials=credentials,
                                                system=..., turns=..., tools=...,
                                                max_tokens=...)) as events:
        async for event in events: ...

No Reflex here; pages and states reach it through the chat services.
"""

from carmenta.chat.llm.streaming import complete, stream_reply
from carmenta.chat.llm.types import (
    ChatTurn,
    ImageInput,
    ModelCredentials,
    ModelError,
    ModelOption,
    StreamEvent,
    StreamFinished,
    TextDelta,
    ToolCall,
    ToolCallRequested,
    ToolResult,
    ToolSpec,
)

__all__ = [
    "ChatTurn",
    "ImageInput",
    "ModelCredentials",
    "ModelError",
    "ModelOption",
    "StreamEvent",
    "StreamFinished",
    "TextDelta",
    "ToolCall",
    "ToolCallRequested",
    "ToolResult",
    "ToolSpec",
    "complete",
    "stream_reply",
]
