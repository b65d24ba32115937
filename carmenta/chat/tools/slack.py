"""Slack, with the person's own user token: search, list channels, read one, post.

Slack's Web API answers almost everything with HTTP 200 and {"ok": false, "error":
"..."}; only rate limits come as HTTP 429 with Retry-After. Channels are named by
people ("#general") and by id ("C0123ABCD") by the API, so names are looked up
with conversations.list first.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from carmenta.chat.tools.base import (
    ServiceTool,
    ToolContext,
    ToolFailure,
    ToolOutcome,
    json_body,
    numbered,
    one_line,
    plural,
    raise_for_status,
    reconnect_message,
    send,
    short_time,
    truncate,
)

PROVIDER_ID = "slack"
_CHANNEL_ID = re.compile(r"^[CGD][A-Z0-9]{6,}$")
_CHANNEL = {
    "type": "string",
    "minLength": 1,
    "maxLength": 90,
    "description": "The channel's name, such as #general, or its id",
}
# Channel listing stops after this many pages (of up to 200 each).
_MAX_LIST_PAGES = 25
# Author names are looked up for at most this many people per read.
_MAX_NAME_LOOKUPS = 25
_REAUTH_ERRORS = {
    "invalid_auth",
    "not_authed",
    "token_revoked",
    "token_expired",
    "account_inactive",
    "no_permission",
}
_ERROR_CODE = re.compile(r"^[a-z0-9_]{1,60}$")


def _channel_name(raw: str) -> str:
    return raw.strip().lstrip("#").strip()


def _failure(ctx: ToolContext, payload: Mapping[str, Any], *, channel: str | None = None) -> None:
    """Slack's {"ok": false} answers, in words."""
    error = str(payload.get("error") or "unknown_error")
    if not _ERROR_CODE.match(error):
        error = "unknown_error"
    where = f"#{channel}" if channel else "that channel"
    if error in _REAUTH_ERRORS:
        raise ToolFailure(reconnect_message(ctx))
    if error == "channel_not_found":
        raise ToolFailure(f"Slack says the channel {where} does not exist.")
    if error == "not_in_channel":
        raise ToolFailure(f"Slack says you are not a member of {where}; join it first.")
    if error == "is_archived":
        raise ToolFailure(f"Slack says {where} is archived.")
    if error == "missing_scope":
        needed = str(payload.get("needed") or "").strip()
        raise ToolFailure(
            "Your Slack connection lacks a permission this needs"
            + (f" ({one_line(needed, 80)})" if needed else "")
            + "; reconnect Slack to grant it."
        )
    if error == "msg_too_long":
        raise ToolFailure("Slack says the message is too long.")
    if error in ("ratelimited", "rate_limited"):
        raise ToolFailure("Slack rate limit reached, try again in 1 minute.")
    raise ToolFailure(f"Slack refused the request ({error}).")


async def _call(
    ctx: ToolContext,
    method: str,
    *,
    params: Mapping[str, Any] | None = None,
    json: Mapping[str, Any] | None = None,
    channel: str | None = None,
) -> dict[str, Any]:
    url = f"{ctx.api_base}/{method}"
    if json is not None:
        response = await send(ctx, "POST", url, headers=ctx.bearer(), json=dict(json))
    else:
        response = await send(ctx, "GET", url, headers=ctx.bearer(), params=dict(params or {}))
    raise_for_status(ctx, response)
    payload = json_body(ctx, response)
    if payload.get("ok") is not True:
        _failure(ctx, payload, channel=channel)
    return payload


def _when(ts: Any) -> datetime | None:
    try:
        return datetime.fromtimestamp(float(ts), UTC)
    except (TypeError, ValueError, OverflowError):
        return None


async def _channels(ctx: ToolContext, *, include_private: bool) -> list[dict[str, Any]]:
    types = "public_channel,private_channel" if include_private else "public_channel"
    found: list[dict[str, Any]] = []
    cursor = ""
    for _ in range(_MAX_LIST_PAGES):
        params = {"types": types, "exclude_archived": "true", "limit": "200"}
        if cursor:
            params["cursor"] = cursor
        payload = await _call(ctx, "conversations.list", params=params)
        found.extend(item for item in payload.get("channels") or [] if isinstance(item, dict))
        cursor = str((payload.get("response_metadata") or {}).get("next_cursor") or "")
        if not cursor:
            break
    return found


async def _resolve(ctx: ToolContext, raw: str) -> tuple[str, str]:
    """(channel id, name) for '#name', 'name' or an id."""
    name = _channel_name(raw)
    if _CHANNEL_ID.match(name):
        return name, name
    wanted = name.lower()
    for channel in await _channels(ctx, include_private=True):
        if str(channel.get("name") or "").lower() == wanted and channel.get("id"):
            return str(channel["id"]), str(channel["name"])
    raise ToolFailure(f"Slack says the channel #{name} does not exist.")


# -- search ---------------------------------------------------------------------------


async def _search(ctx: ToolContext, arguments: dict[str, Any]) -> ToolOutcome:
    query = arguments["query"]
    payload = await _call(
        ctx,
        "search.messages",
        params={"query": query, "count": arguments["limit"], "sort": "timestamp"},
    )
    messages = payload.get("messages") or {}
    matches = [item for item in messages.get("matches") or [] if isinstance(item, dict)]
    total = messages.get("total") if isinstance(messages.get("total"), int) else len(matches)
    lines, items = [], []
    for match in matches:
        channel = match.get("channel") or {}
        channel_name = str(channel.get("name") or channel.get("id") or "?")
        author = str(match.get("username") or match.get("user") or "someone")
        when = _when(match.get("ts"))
        permalink = str(match.get("permalink") or "")
        lines.append(
            f"#{channel_name} · {author} · {short_time(when)}: "
            f'"{one_line(match.get("text"), 300)}"' + (f" {permalink}" if permalink else "")
        )
        items.append({"channel": channel_name, "author": author, "permalink": permalink})
    header = f'Slack messages matching "{query}": {len(matches)} shown of {total}.'
    summary = f'Found {plural(total, "Slack message")} for "{one_line(query, 60)}"'
    return ToolOutcome(
        ok=True,
        content=numbered(header, lines, ctx.budget),
        summary=summary,
        data={"total": total, "messages": items},
    )


# -- channels -------------------------------------------------------------------------


async def _list_channels(ctx: ToolContext, arguments: dict[str, Any]) -> ToolOutcome:
    channels = await _channels(ctx, include_private=arguments["include_private"])
    channels.sort(key=lambda channel: str(channel.get("name") or ""))
    lines = []
    for channel in channels[: arguments["limit"]]:
        traits = []
        if channel.get("is_private"):
            traits.append("private")
        if channel.get("is_member"):
            traits.append("member")
        if isinstance(channel.get("num_members"), int):
            traits.append(plural(channel["num_members"], "member"))
        purpose = one_line(
            (
                (channel.get("purpose") or {}).get("value")
                or (channel.get("topic") or {}).get("value")
            ),
            120,
        )
        lines.append(
            f"#{channel.get('name')} ({channel.get('id')})"
            + (f" [{', '.join(traits)}]" if traits else "")
            + (f" — {purpose}" if purpose else "")
        )
    header = f"Slack channels: {len(lines)} shown of {len(channels)}."
    return ToolOutcome(
        ok=True,
        content=numbered(header, lines, ctx.budget),
        summary=f"Listed {plural(len(lines), 'Slack channel')}",
        data={"channels": [{"id": c.get("id"), "name": c.get("name")} for c in channels[:200]]},
    )


# -- read a channel -------------------------------------------------------------------


async def _names(ctx: ToolContext, user_ids: list[str]) -> dict[str, str]:
    async def lookup(user_id: str) -> tuple[str, str | None]:
        try:
            payload = await _call(ctx, "users.info", params={"user": user_id})
        except ToolFailure:
            return user_id, None
        user = payload.get("user") or {}
        profile = user.get("profile") or {}
        name = profile.get("display_name") or user.get("real_name") or user.get("name")
        return user_id, str(name) if name else None

    found = await asyncio.gather(*(lookup(user_id) for user_id in user_ids[:_MAX_NAME_LOOKUPS]))
    return {user_id: name for user_id, name in found if name}


async def _read_channel(ctx: ToolContext, arguments: dict[str, Any]) -> ToolOutcome:
    channel_id, name = await _resolve(ctx, arguments["channel"])
    payload = await _call(
        ctx,
        "conversations.history",
        params={"channel": channel_id, "limit": arguments["limit"]},
        channel=name,
    )
    messages = [item for item in payload.get("messages") or [] if isinstance(item, dict)]
    authors = list(dict.fromkeys(str(m["user"]) for m in messages if m.get("user")))
    names = await _names(ctx, authors)
    # Slack gives newest first; a conversation reads oldest first.
    lines = []
    for message in reversed(messages):
        user = str(message.get("user") or "")
        author = names.get(user) or message.get("username") or user or "someone"
        replies = message.get("reply_count")
        lines.append(
            f"{short_time(_when(message.get('ts')))} {author}: {one_line(message.get('text'), 500)}"
            + (f" [{plural(replies, 'reply', 'replies')}]" if isinstance(replies, int) else "")
        )
    header = f"Latest {plural(len(lines), 'message')} in #{name}, oldest first:"
    if not lines:
        header = f"#{name} has no messages."
    content = truncate("\n".join([header, *lines]), ctx.budget)
    return ToolOutcome(
        ok=True,
        content=content,
        summary=f"Read {plural(len(lines), 'message')} in #{name}",
        data={"channel_id": channel_id, "channel": name, "count": len(lines)},
    )


# -- post -----------------------------------------------------------------------------


async def _post(ctx: ToolContext, arguments: dict[str, Any]) -> ToolOutcome:
    channel_id, name = await _resolve(ctx, arguments["channel"])
    payload = await _call(
        ctx,
        "chat.postMessage",
        json={"channel": channel_id, "text": arguments["text"]},
        channel=name,
    )
    ts = str(payload.get("ts") or "")
    permalink = ""
    if ts:
        try:
            link = await _call(
                ctx, "chat.getPermalink", params={"channel": channel_id, "message_ts": ts}
            )
            permalink = str(link.get("permalink") or "")
        except ToolFailure:
            permalink = ""  # the message is posted; the link is a nicety
    return ToolOutcome(
        ok=True,
        content=f"Posted to #{name} (message ts {ts})." + (f" {permalink}" if permalink else ""),
        summary=f"Posted to #{name}",
        data={"channel_id": channel_id, "channel": name, "ts": ts, "permalink": permalink or None},
    )


def _quoted(text: Any, limit: int = 80) -> str:
    return f'"{one_line(text, limit)}"'


TOOLS = (
    ServiceTool(
        name="slack_search_messages",
        provider_id=PROVIDER_ID,
        title="Search Slack messages",
        description=(
            "Search the messages the user can see in their Slack workspace. Supports Slack "
            "search syntax (in:#channel, from:@person, before:/after:YYYY-MM-DD). Returns "
            "newest matches first with channel, author, time and permalink."
        ),
        parameters={
            "type": "object",
            "properties": {
                "query": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": 500,
                    "description": "What to search for",
                },
                "limit": {"type": "integer", "minimum": 1, "maximum": 50, "default": 20},
            },
            "required": ["query"],
            "additionalProperties": False,
        },
        writes=False,
        describe=lambda a: f"Search Slack for {_quoted(a.get('query'))}",
        run=_search,
        scopes=("search:read",),
    ),
    ServiceTool(
        name="slack_list_channels",
        provider_id=PROVIDER_ID,
        title="List Slack channels",
        description="List the channels of the user's Slack workspace, with ids and purposes.",
        parameters={
            "type": "object",
            "properties": {
                "include_private": {
                    "type": "boolean",
                    "default": False,
                    "description": "Also list private channels the user is in",
                },
                "limit": {"type": "integer", "minimum": 1, "maximum": 500, "default": 100},
            },
            "required": [],
            "additionalProperties": False,
        },
        writes=False,
        describe=lambda a: "List Slack channels",
        run=_list_channels,
        scopes=("channels:read",),
    ),
    ServiceTool(
        name="slack_read_channel",
        provider_id=PROVIDER_ID,
        title="Read a Slack channel",
        description="Read the latest messages of a Slack channel, oldest first.",
        parameters={
            "type": "object",
            "properties": {
                "channel": _CHANNEL,
                "limit": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20},
            },
            "required": ["channel"],
            "additionalProperties": False,
        },
        writes=False,
        describe=lambda a: f"Read #{_channel_name(str(a.get('channel') or ''))}",
        run=_read_channel,
        scopes=("channels:history", "groups:history"),
    ),
    ServiceTool(
        name="slack_post_message",
        provider_id=PROVIDER_ID,
        title="Post a Slack message",
        description=(
            "Post a message as the user in a Slack channel. Only when the user asked for it."
        ),
        parameters={
            "type": "object",
            "properties": {
                "channel": _CHANNEL,
                "text": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": 4000,
                    "description": "The message, in Slack mrkdwn",
                },
            },
            "required": ["channel", "text"],
            "additionalProperties": False,
        },
        writes=True,
        describe=lambda a: (
            f"Post to #{_channel_name(str(a.get('channel') or ''))}: {_quoted(a.get('text'))}"
        ),
        run=_post,
        scopes=("chat:write",),
    ),
)
