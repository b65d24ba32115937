"""One official client per (event loop, provider, base URL, key), reused by every call.

A client holds a connection pool; making one per request would open a new TLS
connection every time. Pools belong to the event loop they were opened on, so the
loop is part of the key. The key itself is never part of a dictionary key: a
digest of it is.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import OrderedDict
from typing import Any

import anthropic
import openai

from carmenta.chat.llm.types import ModelCredentials, Provider

ANTHROPIC_API_BASE = "https://api.anthropic.com"
OPENAI_API_BASE = "https://api.openai.com/v1"

# A reply streams for minutes; `read` bounds the silence between two chunks.
TIMEOUT = anthropic.Timeout(connect=10.0, read=120.0, write=30.0, pool=10.0)
# One quick retry of a connection error, a 429 or a 5xx before the first byte;
# beyond that the person is better served by the error and a retry button.
MAX_RETRIES = 1
MAX_CLIENTS = 64

_clients: OrderedDict[tuple[int, str, str, str], Any] = OrderedDict()


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def base_url_for(provider: Provider, credentials: ModelCredentials) -> str:
    if credentials.base_url:
        return credentials.base_url.rstrip("/")
    return ANTHROPIC_API_BASE if provider == "anthropic" else OPENAI_API_BASE


def _make(provider: Provider, base_url: str, api_key: str) -> Any:
    if provider == "anthropic":
        return anthropic.AsyncAnthropic(
            api_key=api_key, base_url=base_url, timeout=TIMEOUT, max_retries=MAX_RETRIES
        )
    return openai.AsyncOpenAI(
        api_key=api_key, base_url=base_url, timeout=TIMEOUT, max_retries=MAX_RETRIES
    )


def client_for(provider: Provider, credentials: ModelCredentials) -> Any:
    """The shared `AsyncAnthropic` or `AsyncOpenAI` for these credentials."""
    base_url = base_url_for(provider, credentials)
    key = (id(asyncio.get_running_loop()), provider, base_url, _digest(credentials.api_key))
    client = _clients.get(key)
    if client is not None:
        _clients.move_to_end(key)
        return client
    client = _make(provider, base_url, credentials.api_key)
    _clients[key] = client
    while len(_clients) > MAX_CLIENTS:
        # The least recently used goes; a call still holding it keeps it alive.
        _clients.popitem(last=False)
    return client


def cached_client_count() -> int:
    return len(_clients)
