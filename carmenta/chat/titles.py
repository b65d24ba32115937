"""A new conversation's title: asked of the model when there is one, else taken from
the first message."""

from __future__ import annotations

import re

from carmenta.chat.llm.streaming import complete
from carmenta.chat.llm.types import ChatTurn, ModelCredentials, ModelError, ModelOption

MAX_TITLE_WORDS = 7
MAX_TITLE_CHARS = 60
_LEADING_FILLER = re.compile(
    r"^(hi|hello|hey|please|can you|could you|would you|i want to|i'd like to|help me)\b[\s,]*",
    re.I,
)
_TITLE_PROMPT = (
    "Write a title of at most six words for a conversation that starts with the message "
    "below. Answer with the title only: no quotes, no full stop."
)


def title_from_message(message: str) -> str:
    """A readable title from the first message: its opening words, tidied."""
    first_line = next((line for line in message.splitlines() if line.strip()), "")
    cleaned = re.sub(r"[`*_#>\[\]]", "", first_line)
    cleaned = re.sub(r"https?://\S+", "", cleaned)
    previous = None
    while previous != cleaned:
        previous = cleaned
        cleaned = _LEADING_FILLER.sub("", cleaned.strip())
    words = cleaned.split()
    if not words:
        return ""
    title = " ".join(words[:MAX_TITLE_WORDS]).rstrip(" ?.!,;:")
    if len(words) > MAX_TITLE_WORDS:
        title += "…"
    title = title[:MAX_TITLE_CHARS]
    return title[0].upper() + title[1:]


def tidy_model_title(answer: str) -> str:
    line = next((line for line in answer.splitlines() if line.strip()), "")
    line = line.strip().strip("\"'“”‘’*#").removeprefix("Title:").strip()
    return line.rstrip(".")[:MAX_TITLE_CHARS]


async def title_for(
    *,
    message: str,
    option: ModelOption | None,
    credentials: ModelCredentials | None,
) -> str:
    if option is not None and credentials is not None:
        try:
            answer = await complete(
                option=option,
                credentials=credentials,
                system=_TITLE_PROMPT,
                turns=[ChatTurn(role="user", text=message[:4000])],
                max_tokens=30,
            )
        except ModelError:
            answer = ""
        title = tidy_model_title(answer)
        if title:
            return title
    return title_from_message(message)
