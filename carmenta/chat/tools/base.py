"""What a chat tool is, what running one gives back, and the HTTP and text helpers
every provider's tools share.

A tool is declared once (name, JSON schema, whether it writes) with an async
implementation that receives a `ToolContext`: the user's access token for one
account, the provider's endpoints and the shared HTTP client. Implementations raise
`ToolFailure` with a sentence for the person and the model; the registry turns it
into `ToolOutcome(ok=False)`.
"""

from __future__ import annotations

import asyncio
import math
import weakref
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from carmenta.connections.providers.base import ProviderSpec

# Connect fast or say so; a search on a large workspace may take a while to answer.
HTTP_TIMEOUT = httpx.Timeout(20.0, connect=5.0)
USER_AGENT = "Carmenta"


@dataclass(frozen=True)
class ToolOutcome:
    ok: bool
    # Compact text for the model, within the configured character budget.
    content: str
    # One short line for the person, shown in the conversation.
    summary: str
    # Structured result for the interface (links, ids); never a credential.
    data: dict[str, Any] | None = None


class ToolFailure(Exception):
    """The call could not be done; the message says why, in words for a person."""

    def __init__(self, message: str, *, data: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.data = data


@dataclass(frozen=True)
class ToolContext:
    """One call's credentials and surroundings. Never log or print it."""

    provider: ProviderSpec
    token: str = field(repr=False)
    account_id: str
    account_label: str
    http: httpx.AsyncClient = field(repr=False)
    # Character budget of ToolOutcome.content.
    budget: int = 8000
    # What the provider said about the grant (Slack team, Notion workspace...).
    extra: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @property
    def service(self) -> str:
        return self.provider.name

    @property
    def api_base(self) -> str:
        return (self.provider.endpoints.api_base or "").rstrip("/")

    def bearer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}


Runner = Callable[[ToolContext, dict[str, Any]], Awaitable[ToolOutcome]]
Describer = Callable[[Mapping[str, Any]], str]


@dataclass(frozen=True)
class ServiceTool:
    """One thing the model may do with one of the user's services."""

    name: str
    provider_id: str
    title: str
    description: str
    # A JSON schema object: {"type": "object", "properties": ..., "required": [...]}.
    parameters: Mapping[str, Any]
    # Posts, drafts or creates something: the chat asks the person to confirm first.
    writes: bool
    describe: Describer = field(repr=False, compare=False)
    run: Runner = field(repr=False, compare=False)
    # Usable when the connection holds any one of these scopes (none listed: always).
    scopes: tuple[str, ...] = ()

    def describe_call(self, arguments: Mapping[str, Any]) -> str:
        """One line saying what this call would do, for the thread and the confirmation."""
        try:
            line = self.describe(arguments if isinstance(arguments, Mapping) else {})
        except (TypeError, ValueError, KeyError, AttributeError):
            line = ""
        return one_line(line or self.title, 200)


# HTTP -------------------------------------------------------------------------------

_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
    weakref.WeakKeyDictionary()
)


def shared_http_client() -> httpx.AsyncClient:
    """The process's client for provider APIs (one per event loop: a client's
    connections belong to the loop that opened them)."""
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None or client.is_closed:
        client = httpx.AsyncClient(
            timeout=HTTP_TIMEOUT,
            follow_redirects=False,
            headers={"User-Agent": USER_AGENT},
            limits=httpx.Limits(max_connections=50, max_keepalive_connections=10),
        )
        _clients[loop] = client
    return client


async def close_http_clients() -> None:
    """At shutdown: close the client of the running loop."""
    loop = asyncio.get_running_loop()
    client = _clients.pop(loop, None)
    if client is not None:
        await client.aclose()


async def send(
    ctx: ToolContext,
    method: str,
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    params: Any = None,
    json: Any = None,
    data: Any = None,
) -> httpx.Response:
    """One request to the provider; transport failures become ToolFailure (the
    exception's text is not used: it may hold a URL)."""
    try:
        return await ctx.http.request(
            method, url, headers=dict(headers or {}), params=params, json=json, data=data
        )
    except httpx.TimeoutException:
        raise ToolFailure(
            f"{ctx.service} took too long to answer; try again in a moment."
        ) from None
    except httpx.TransportError:
        raise ToolFailure(f"Couldn't reach {ctx.service}; try again in a moment.") from None


def reconnect_message(ctx: ToolContext) -> str:
    return (
        f"Your {ctx.service} connection ({ctx.account_label}) needs to be reconnected "
        "on the Connections page."
    )


def retry_after_seconds(response: httpx.Response, *, now: datetime | None = None) -> float | None:
    """Retry-After as seconds (a number or an HTTP date), if the response says."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def rate_limit_message(service: str, seconds: float | None) -> str:
    if seconds is None:
        return f"{service} rate limit reached, try again in a few minutes."
    minutes = max(1, math.ceil(seconds / 60))
    return f"{service} rate limit reached, try again in {plural(minutes, 'minute')}."


def raise_for_status(
    ctx: ToolContext,
    response: httpx.Response,
    *,
    not_found: str | None = None,
    detail: str | None = None,
) -> None:
    """The failures every provider shares, in words; returns on 2xx."""
    status = response.status_code
    if status < 300:
        return
    if status == 401:
        raise ToolFailure(reconnect_message(ctx))
    if status == 429:
        raise ToolFailure(rate_limit_message(ctx.service, retry_after_seconds(response)))
    if status >= 500:
        raise ToolFailure(
            f"{ctx.service} had a problem on its side (HTTP {status}); try again later."
        )
    if status == 404:
        raise ToolFailure(not_found or f"{ctx.service} says that does not exist.")
    if status == 403:
        raise ToolFailure(
            f"{ctx.service} refused: your account may not do this"
            + (f" ({detail})" if detail else "")
            + "."
        )
    raise ToolFailure(
        f"{ctx.service} rejected the request (HTTP {status})" + (f": {detail}" if detail else ".")
    )


def json_body(ctx: ToolContext, response: httpx.Response) -> dict[str, Any]:
    try:
        payload = response.json()
    except ValueError:
        payload = None
    if not isinstance(payload, dict):
        raise ToolFailure(f"{ctx.service} answered with something Carmenta could not read.")
    return payload


# Text -------------------------------------------------------------------------------


def plural(count: int, noun: str, plural_noun: str | None = None) -> str:
    return f"{count} {noun if count == 1 else (plural_noun or noun + 's')}"


def one_line(text: Any, limit: int = 200) -> str:
    """Whitespace folded to single spaces, cut to `limit` characters with an ellipsis."""
    folded = " ".join(str(text or "").split())
    if len(folded) <= limit:
        return folded
    return folded[: max(0, limit - 1)].rstrip() + "…"


def truncate(text: str, budget: int) -> str:
    """`text` within `budget` characters, cut at a line or word end, saying how much
    was left out."""
    if len(text) <= budget:
        return text
    note_room = 60
    keep = max(0, budget - note_room)
    cut = text.rfind("\n", 0, keep + 1)
    if cut < keep * 0.6:
        cut = text.rfind(" ", 0, keep + 1)
    if cut < keep * 0.6:
        cut = keep
    kept = text[:cut].rstrip()
    note = f"\n[… {len(text) - len(kept):,} more characters not shown]"
    return (kept + note)[:budget]


def numbered(header: str, items: Iterable[str], budget: int, *, footer: str = "") -> str:
    """A header and numbered lines, as many whole lines as fit in `budget`; says how
    many more there were."""
    lines = list(items)
    text = header
    room = budget - len(footer) - 50
    shown = 0
    for index, line in enumerate(lines, start=1):
        entry = f"\n{index}. {line}"
        if len(text) + len(entry) > room:
            break
        text += entry
        shown += 1
    if shown < len(lines):
        text += f"\n[{len(lines) - shown} more not shown]"
    if footer:
        text += "\n" + footer
    return truncate(text, budget)


def short_time(moment: datetime | None) -> str:
    if moment is None:
        return "?"
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def iso_time(value: Any) -> datetime | None:
    """An ISO 8601 / RFC 3339 timestamp as the providers write them, or None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
