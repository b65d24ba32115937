"""Memories a person asked for explicitly, recognised without a model.

Offline, Carmenta only keeps what it was plainly told: "remember that ...",
"my name is ...", "I prefer ..."; it reports nothing else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_MEMORY_CHARS = 500


@dataclass(frozen=True)
class ProposedMemory:
    content: str
    kind: str
    slot: str | None = None


# A sentence ends at . ! ? or a line break, but not at the dot of a title or a common
# abbreviation ("Dr. Silva", "e.g. tea").
_END = (
    r"(?<!\bDr)(?<!\bMr)(?<!\bMrs)(?<!\bMs)(?<!\bSt)(?<!\bProf)(?<!\be\.g)(?<!\bi\.e)"
    r"(?=[.!?](?:\s|$)|\n|$)"
)
_PATTERNS: tuple[tuple[re.Pattern[str], str, str | None, str], ...] = (
    (
        re.compile(r"\bremember(?: that)?\s+(?P<value>[^\n]+?)" + _END, re.I),
        "fact",
        None,
        "{value}",
    ),
    (
        re.compile(r"\b(?:my name is|call me)\s+(?P<value>[^\n,.;!?]{1,80})", re.I),
        "fact",
        "name",
        "The user's name is {value}",
    ),
    (
        re.compile(r"\bi (?:prefer|would rather)\s+(?P<value>[^\n]+?)" + _END, re.I),
        "preference",
        None,
        "The user prefers {value}",
    ),
    (
        re.compile(r"\bi live in\s+(?P<value>[^\n,.;!?]{1,80})", re.I),
        "fact",
        "home",
        "The user lives in {value}",
    ),
)


def _tidy(value: str) -> str:
    return " ".join(value.split()).strip(" ,;:")


def extract_explicit(text: str) -> list[ProposedMemory]:
    """The memories a message asks for in so many words; [] when it asks for none."""
    proposals: list[ProposedMemory] = []
    for pattern, kind, slot, template in _PATTERNS:
        for match in pattern.finditer(text or ""):
            value = _tidy(match.group("value"))
            if not value:
                continue
            content = template.format(value=value)
            content = content[0].upper() + content[1:]
            proposals.append(ProposedMemory(content[:MAX_MEMORY_CHARS], kind, slot))
    return proposals
