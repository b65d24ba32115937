"""What a model can do (images, tools, context size) and what to call it.

Known families get defaults; MODEL_CAPABILITIES overrides them per model name or
glob. A model from an unknown family is assumed to read text only, without tools,
in a modest context: claiming more would fail the first request that used it.
"""

from __future__ import annotations

import fnmatch
import functools
import json
import re
from dataclasses import dataclass, replace

from carmenta.settings import Settings


@dataclass(frozen=True)
class Capabilities:
    vision: bool
    tools: bool
    context_tokens: int
    label: str | None = None


UNKNOWN = Capabilities(vision=False, tools=False, context_tokens=8_192)

# First match wins, on the bare model name (no "vendor/" prefix, no ":tag").
_FAMILIES: tuple[tuple[str, Capabilities], ...] = (
    ("claude-", Capabilities(vision=True, tools=True, context_tokens=200_000)),
    ("gpt-4.1", Capabilities(vision=True, tools=True, context_tokens=1_047_576)),
    ("gpt-5", Capabilities(vision=True, tools=True, context_tokens=400_000)),
    ("gpt-4o", Capabilities(vision=True, tools=True, context_tokens=128_000)),
    ("gpt-4-turbo", Capabilities(vision=True, tools=True, context_tokens=128_000)),
    ("gpt-4", Capabilities(vision=False, tools=True, context_tokens=8_192)),
    ("gpt-3.5-turbo", Capabilities(vision=False, tools=True, context_tokens=16_385)),
    ("o1", Capabilities(vision=True, tools=True, context_tokens=200_000)),
    ("o3", Capabilities(vision=True, tools=True, context_tokens=200_000)),
    ("o4", Capabilities(vision=True, tools=True, context_tokens=200_000)),
    ("gemini-", Capabilities(vision=True, tools=True, context_tokens=1_000_000)),
    ("llama3.2-vision", Capabilities(vision=True, tools=False, context_tokens=128_000)),
    ("llama-3.1", Capabilities(vision=False, tools=True, context_tokens=128_000)),
    ("llama3.1", Capabilities(vision=False, tools=True, context_tokens=128_000)),
    ("llama3.2", Capabilities(vision=False, tools=True, context_tokens=128_000)),
    ("llama3.3", Capabilities(vision=False, tools=True, context_tokens=128_000)),
    ("qwen2.5", Capabilities(vision=False, tools=True, context_tokens=32_768)),
    ("qwen3", Capabilities(vision=False, tools=True, context_tokens=40_960)),
    ("mistral", Capabilities(vision=False, tools=True, context_tokens=32_768)),
    ("gemma3", Capabilities(vision=True, tools=False, context_tokens=128_000)),
    ("llava", Capabilities(vision=True, tools=False, context_tokens=4_096)),
)
_CLAUDE_VERSION = re.compile(r"^(\d+)-(\d)$")
_DATE_SUFFIX = re.compile(r"-\d{8}$")


def bare_name(model: str) -> str:
    """ "openai/gpt-4o" -> "gpt-4o", "llama3.1:8b" -> "llama3.1"."""
    name = model.strip().lower().rsplit("/", 1)[-1]
    return name.split(":", 1)[0]


def family_defaults(model: str) -> Capabilities:
    name = bare_name(model)
    for prefix, capabilities in _FAMILIES:
        if name.startswith(prefix):
            return capabilities
    return UNKNOWN


@functools.lru_cache(maxsize=8)
def _overrides(raw: str | None) -> tuple[tuple[str, dict], ...]:
    if not raw:
        return ()
    # Settings validated the shape already.
    return tuple(json.loads(raw).items())


def capabilities_for(model: str, settings: Settings) -> Capabilities:
    """Family defaults, then MODEL_CAPABILITIES: the exact name first, else the first glob."""
    capabilities = family_defaults(model)
    overrides = _overrides(settings.model_capabilities)
    chosen = next((values for pattern, values in overrides if pattern == model), None)
    if chosen is None:
        chosen = next(
            (values for pattern, values in overrides if fnmatch.fnmatchcase(model, pattern)),
            None,
        )
    return replace(capabilities, **chosen) if chosen else capabilities


def default_label(model: str) -> str:
    """A readable name: "claude-sonnet-4-5" -> "Claude Sonnet 4.5",
    "gpt-4.1-mini" -> "GPT-4.1 mini"; anything else as it is."""
    name = model.strip()
    lowered = name.lower()
    if lowered.startswith("claude-"):
        words = _DATE_SUFFIX.sub("", lowered).split("-")[1:]
        parts: list[str] = []
        index = 0
        while index < len(words):
            pair = "-".join(words[index : index + 2])
            if _CLAUDE_VERSION.match(pair):
                parts.append(pair.replace("-", "."))
                index += 2
                continue
            parts.append(words[index].capitalize() if not words[index].isdigit() else words[index])
            index += 1
        return "Claude " + " ".join(parts)
    if lowered.startswith("gpt-"):
        version, _, rest = name[4:].partition("-")
        return f"GPT-{version}" + (f" {rest.replace('-', ' ')}" if rest else "")
    return name


def label_for(model: str, settings: Settings) -> str:
    return capabilities_for(model, settings).label or default_label(model)
