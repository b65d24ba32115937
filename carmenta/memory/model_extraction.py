"""Memories found by a model in one exchange (a person's message and the reply).

The model is asked for a JSON list; whatever it sends back is read leniently: code
fences and text around the list are ignored, entries of the wrong shape are
skipped, and the result is capped. Nothing here raises on the model's output; a
model that cannot be called raises ModelError for the caller to fall back on.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from carmenta.chat.llm import ChatTurn, ModelCredentials, ModelOption, complete
from carmenta.memory.extraction import MAX_MEMORY_CHARS, ProposedMemory
from carmenta.memory.models import MemoryKind

MAX_PROPOSALS = 5
# Below this the model is guessing; a wrong memory costs more than a missed one.
MIN_CONFIDENCE = 0.6
DEFAULT_CONFIDENCE = 0.8
# Of each side of the exchange, sent to the model.
MAX_EXCHANGE_CHARS = 6000
MAX_REPLY_TOKENS = 800
# Slots hold one memory at a time: a new one replaces the old (see memory.service).
SLOTS = frozenset(
    {"name", "home", "work", "employer", "birthday", "partner", "timezone", "language", "pronouns"}
)
_KINDS = frozenset(kind.value for kind in MemoryKind)
_FENCE = re.compile(r"```[a-zA-Z]*")

SYSTEM_PROMPT = f"""\
You pick out what is worth remembering about the user from one exchange between the \
user and their assistant. Keep only durable facts about the user, their stated \
preferences, and standing instructions for the assistant. Ignore small talk, \
questions, one-off requests and anything the assistant said that the user did not \
confirm.

Answer with a JSON array only, no other text. Each element:
{{"content": "<one short sentence in the third person, e.g. The user's name is Ada>",
  "kind": "fact" | "preference" | "instruction",
  "slot": one of {sorted(SLOTS)} when the memory is that single-valued attribute, else null,
  "confidence": <0 to 1, how sure you are this is true and lasting>}}
At most {MAX_PROPOSALS} elements. Answer [] when nothing is worth remembering."""


@dataclass(frozen=True)
class ExtractedMemory:
    proposal: ProposedMemory
    confidence: float


def _clip(text: str) -> str:
    text = text.strip()
    return text if len(text) <= MAX_EXCHANGE_CHARS else text[:MAX_EXCHANGE_CHARS] + " […]"


def extraction_turns(user_message: str, assistant_reply: str) -> list[ChatTurn]:
    exchange = (
        f"<user_message>\n{_clip(user_message)}\n</user_message>\n"
        f"<assistant_reply>\n{_clip(assistant_reply)}\n</assistant_reply>"
    )
    return [ChatTurn("user", exchange)]


def _json_list(text: str) -> list[Any]:
    text = _FENCE.sub("", text or "")
    start, end = text.find("["), text.rfind("]")
    candidates = [text.strip()]
    if start != -1 and end > start:
        candidates.append(text[start : end + 1])
    for candidate in candidates:
        try:
            value = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(value, dict):
            value = value.get("memories")
        if isinstance(value, list):
            return value
    return []


def _confidence(value: Any) -> float | None:
    if value is None:
        return DEFAULT_CONFIDENCE
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip().rstrip("%")) / (100 if value.strip().endswith("%") else 1)
        except ValueError:
            return None
    if not isinstance(value, int | float) or value != value:  # NaN
        return None
    return max(0.0, min(1.0, float(value)))


def _entry(item: Any) -> ExtractedMemory | None:
    if not isinstance(item, dict):
        return None
    content = item.get("content")
    if not isinstance(content, str):
        return None
    content = " ".join(content.split())
    if not content or len(content) > MAX_MEMORY_CHARS:
        return None
    kind = item.get("kind")
    kind = kind.strip().lower() if isinstance(kind, str) else "fact"
    if kind not in _KINDS:
        kind = "fact"
    slot = item.get("slot")
    slot = slot.strip().lower() if isinstance(slot, str) else None
    if slot not in SLOTS:
        slot = None
    confidence = _confidence(item.get("confidence"))
    if confidence is None or confidence < MIN_CONFIDENCE:
        return None
    return ExtractedMemory(ProposedMemory(content, kind, slot), confidence)


def parse_extraction(text: str) -> list[ExtractedMemory]:
    """The memories in a model's answer; [] for anything unreadable. Never raises."""
    found: list[ExtractedMemory] = []
    seen: set[str] = set()
    for item in _json_list(text):
        entry = _entry(item)
        if entry is None or entry.proposal.content.lower() in seen:
            continue
        seen.add(entry.proposal.content.lower())
        found.append(entry)
        if len(found) >= MAX_PROPOSALS:
            break
    return found


async def extract_with_model(
    *,
    option: ModelOption,
    credentials: ModelCredentials,
    user_message: str,
    assistant_reply: str,
) -> list[ExtractedMemory]:
    """Ask the model what to remember from this exchange. Raises ModelError."""
    answer = await complete(
        option=option,
        credentials=credentials,
        system=SYSTEM_PROMPT,
        turns=extraction_turns(user_message, assistant_reply),
        max_tokens=MAX_REPLY_TOKENS,
    )
    return parse_extraction(answer)
