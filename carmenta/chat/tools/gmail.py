"""Gmail: search, read one message, write a draft (never send).

Bodies travel base64url-encoded (RFC 4648 section 5), in the part's own charset;
drafts are RFC 2822 messages, base64url-encoded into `raw`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import html
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import getaddresses, parsedate_to_datetime
from typing import Any

from carmenta.chat.tools import google_api
from carmenta.chat.tools.base import (
    ServiceTool,
    ToolContext,
    ToolFailure,
    ToolOutcome,
    numbered,
    one_line,
    plural,
    short_time,
    truncate,
)

PROVIDER_ID = "google"
_READ_SCOPES = (
    "https://www.googleapis.com/auth/gmail.modify",
    "https://www.googleapis.com/auth/gmail.readonly",
    "https://mail.google.com/",
)
_COMPOSE_SCOPES = (
    "https://www.googleapis.com/auth/gmail.modify",
    "https://www.googleapis.com/auth/gmail.compose",
    "https://mail.google.com/",
)
_METADATA_CONCURRENCY = 5
_CHARSET = re.compile(r"charset\s*=\s*\"?([A-Za-z0-9._:-]+)\"?", re.IGNORECASE)
_TAG = re.compile(r"<[^>]+>")
_HIDDEN = re.compile(r"<(script|style|head)\b.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_BREAK = re.compile(r"<\s*(br|/p|/div|/tr|/li|/h[1-6])\b[^>]*>", re.IGNORECASE)


# -- bodies ---------------------------------------------------------------------------


def decode_base64url(data: str) -> bytes:
    """Gmail's body data: base64url, with or without padding. Raises ValueError."""
    cleaned = "".join(data.split())
    try:
        return base64.urlsafe_b64decode(cleaned + "=" * (-len(cleaned) % 4))
    except (binascii.Error, ValueError):
        raise ValueError("the body is not valid base64url") from None


def _headers(part: Mapping[str, Any]) -> dict[str, str]:
    return {
        str(header.get("name", "")).lower(): str(header.get("value", ""))
        for header in part.get("headers") or []
        if isinstance(header, dict)
    }


def _decode_part(part: Mapping[str, Any]) -> str:
    data = (part.get("body") or {}).get("data")
    if not isinstance(data, str) or not data:
        return ""
    raw = decode_base64url(data)
    match = _CHARSET.search(_headers(part).get("content-type", ""))
    charset = match.group(1) if match else "utf-8"
    try:
        return raw.decode(charset, errors="replace")
    except LookupError:
        return raw.decode("utf-8", errors="replace")


def html_to_text(markup: str) -> str:
    text = _HIDDEN.sub("", markup)
    text = _BREAK.sub("\n", text)
    text = html.unescape(_TAG.sub("", text))
    lines = [" ".join(line.split()) for line in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _walk(part: Mapping[str, Any]):
    yield part
    for child in part.get("parts") or []:
        if isinstance(child, dict):
            yield from _walk(child)


def message_text(payload: Mapping[str, Any]) -> tuple[str, list[str]]:
    """The readable body of a format=full message (its text/plain part, else its HTML
    as text) and the names of its attachments."""
    plain, markup, attachments = [], [], []
    for part in _walk(payload):
        mime = str(part.get("mimeType") or "").lower()
        if part.get("filename"):
            attachments.append(str(part["filename"]))
            continue
        if mime == "text/plain":
            plain.append(_decode_part(part))
        elif mime == "text/html":
            markup.append(_decode_part(part))
    if any(text.strip() for text in plain):
        return "\n\n".join(text.strip() for text in plain if text.strip()), attachments
    return "\n\n".join(html_to_text(text) for text in markup if text.strip()), attachments


# -- drafts ---------------------------------------------------------------------------


def parse_addresses(value: str, *, field_name: str) -> list[Address]:
    """'Ada <ada@example.com>, bob@example.com' as addresses; ToolFailure when one is
    not an email address (nothing is written then)."""
    if "\r" in value or "\n" in value:
        raise ToolFailure(f"The {field_name} addresses must be on one line.")
    found = []
    for name, address in getaddresses([value]):
        local, at, domain = address.partition("@")
        if not at or not local or "." not in domain or any(c.isspace() for c in address):
            pieces = [piece for piece in value.split(",") if piece.strip()]
            # getaddresses keeps only part of a malformed address; show what was written.
            shown = one_line(pieces[0] if len(pieces) == 1 else (address or name or value), 60)
            raise ToolFailure(f"'{shown}' in {field_name} is not an email address.")
        found.append(Address(display_name=name, addr_spec=address))
    if not found:
        raise ToolFailure(f"Give at least one email address in {field_name}.")
    return found


def build_draft(*, to: str, subject: str, body: str, cc: str | None = None) -> bytes:
    """An RFC 2822 message (CRLF line ends, non-ASCII headers encoded) for a draft;
    Gmail fills in From with the account's address."""
    if "\r" in subject or "\n" in subject:
        raise ToolFailure("The subject must be one line.")
    message = EmailMessage(policy=SMTP)
    message["To"] = parse_addresses(to, field_name="to")
    if cc:
        message["Cc"] = parse_addresses(cc, field_name="cc")
    message["Subject"] = subject
    # Quoted-printable keeps a non-ASCII body 7-bit clean, as RFC 2822 wants.
    message.set_content(body, cte=None if body.isascii() else "quoted-printable")
    return message.as_bytes()


def encode_base64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii")


# -- tools ----------------------------------------------------------------------------


def _messages_url(ctx: ToolContext) -> str:
    return f"{google_api.api_root(ctx)}/gmail/v1/users/me/messages"


def _date(headers: Mapping[str, str], internal_date: Any) -> str:
    try:
        return short_time(parsedate_to_datetime(headers["date"]))
    except (KeyError, TypeError, ValueError):
        pass
    try:
        return short_time(datetime.fromtimestamp(int(internal_date) / 1000, UTC))
    except (TypeError, ValueError, OverflowError):
        return "?"


async def _search(ctx: ToolContext, arguments: dict[str, Any]) -> ToolOutcome:
    query = arguments["query"]
    listing = await google_api.call(
        ctx, "GET", _messages_url(ctx), params={"q": query, "maxResults": arguments["limit"]}
    )
    ids = [
        str(item["id"])
        for item in listing.get("messages") or []
        if isinstance(item, dict) and item.get("id")
    ]
    gate = asyncio.Semaphore(_METADATA_CONCURRENCY)

    async def metadata(message_id: str) -> dict[str, Any] | None:
        async with gate:
            try:
                return await google_api.call(
                    ctx,
                    "GET",
                    f"{_messages_url(ctx)}/{message_id}",
                    params=[
                        ("format", "metadata"),
                        ("metadataHeaders", "From"),
                        ("metadataHeaders", "Subject"),
                        ("metadataHeaders", "Date"),
                    ],
                )
            except ToolFailure as failure:
                # A message deleted between the list and the read is just left out.
                if "does not exist" in failure.message:
                    return None
                raise

    found = [item for item in await asyncio.gather(*map(metadata, ids)) if item]
    lines, items = [], []
    for message in found:
        headers = _headers(message.get("payload") or {})
        sender = one_line(headers.get("from"), 80) or "?"
        subject = one_line(headers.get("subject"), 120) or "(no subject)"
        snippet = one_line(html.unescape(message.get("snippet") or ""), 160)
        lines.append(
            f"[id {message.get('id')}] {_date(headers, message.get('internalDate'))} · "
            f"from {sender} · {subject} — {snippet}"
        )
        items.append({"id": message.get("id"), "from": sender, "subject": subject})
    estimate = listing.get("resultSizeEstimate")
    header = f'Gmail messages matching "{query}": {len(lines)} shown' + (
        f" (about {estimate} in all)." if isinstance(estimate, int) else "."
    )
    return ToolOutcome(
        ok=True,
        content=numbered(header, lines, ctx.budget),
        summary=f'Found {plural(len(lines), "email")} for "{one_line(query, 60)}"',
        data={"messages": items},
    )


async def _read(ctx: ToolContext, arguments: dict[str, Any]) -> ToolOutcome:
    message_id = arguments["message_id"]
    message = await google_api.call(
        ctx,
        "GET",
        f"{_messages_url(ctx)}/{message_id}",
        params={"format": "full"},
        not_found=f"Gmail says there is no message with id {message_id}.",
    )
    payload = message.get("payload") or {}
    headers = _headers(payload)
    try:
        body, attachments = message_text(payload)
    except ValueError:
        raise ToolFailure("Gmail sent a message body Carmenta could not decode.") from None
    subject = one_line(headers.get("subject"), 200) or "(no subject)"
    head = [
        f"Subject: {subject}",
        f"From: {one_line(headers.get('from'), 200)}",
        f"To: {one_line(headers.get('to'), 300)}",
    ]
    if headers.get("cc"):
        head.append(f"Cc: {one_line(headers['cc'], 300)}")
    head.append(f"Date: {_date(headers, message.get('internalDate'))}")
    if attachments:
        head.append(f"Attachments: {one_line(', '.join(attachments), 300)}")
    content = truncate("\n".join(head) + "\n\n" + (body or "(no text body)"), ctx.budget)
    return ToolOutcome(
        ok=True,
        content=content,
        summary=f"Read the email “{one_line(subject, 60)}”",
        data={"id": message.get("id"), "thread_id": message.get("threadId"), "subject": subject},
    )


async def _draft(ctx: ToolContext, arguments: dict[str, Any]) -> ToolOutcome:
    raw = build_draft(
        to=arguments["to"],
        subject=arguments["subject"],
        body=arguments["body"],
        cc=arguments.get("cc"),
    )
    draft = await google_api.call(
        ctx,
        "POST",
        f"{google_api.api_root(ctx)}/gmail/v1/users/me/drafts",
        json={"message": {"raw": encode_base64url(raw)}},
    )
    message = draft.get("message") or {}
    subject = one_line(arguments["subject"], 80)
    return ToolOutcome(
        ok=True,
        content=(
            f"Draft saved in Gmail (draft id {draft.get('id')}) to {arguments['to']} "
            f"with subject “{subject}”. It is not sent; the user can review and send it."
        ),
        summary=f"Saved a Gmail draft to {one_line(arguments['to'], 60)}",
        data={"draft_id": draft.get("id"), "message_id": message.get("id")},
    )


TOOLS = (
    ServiceTool(
        name="gmail_search",
        provider_id=PROVIDER_ID,
        title="Search Gmail",
        description=(
            "Search the user's Gmail with Gmail search syntax (from:, to:, subject:, "
            "newer_than:7d, is:unread, has:attachment). Returns message ids, senders, "
            "subjects and snippets; read one with gmail_read_message."
        ),
        parameters={
            "type": "object",
            "properties": {
                "query": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": 500,
                    "description": "A Gmail search query",
                },
                "limit": {"type": "integer", "minimum": 1, "maximum": 25, "default": 10},
            },
            "required": ["query"],
            "additionalProperties": False,
        },
        writes=False,
        describe=lambda a: f'Search Gmail for "{one_line(a.get("query"), 80)}"',
        run=_search,
        scopes=_READ_SCOPES,
    ),
    ServiceTool(
        name="gmail_read_message",
        provider_id=PROVIDER_ID,
        title="Read an email",
        description="Read one Gmail message (headers and text) by the id gmail_search gave.",
        parameters={
            "type": "object",
            "properties": {
                "message_id": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": 64,
                    "pattern": "^[A-Za-z0-9_-]+$",
                    "description": "The message id from gmail_search",
                    "examples": ["18c2f1a9b3e4d5f6"],
                },
            },
            "required": ["message_id"],
            "additionalProperties": False,
        },
        writes=False,
        describe=lambda a: f"Read email {one_line(a.get('message_id'), 40)}",
        run=_read,
        scopes=_READ_SCOPES,
    ),
    ServiceTool(
        name="gmail_create_draft",
        provider_id=PROVIDER_ID,
        title="Write a Gmail draft",
        description=(
            "Save an email as a draft in the user's Gmail (it is not sent). "
            "Only when the user asked for it."
        ),
        parameters={
            "type": "object",
            "properties": {
                "to": {
                    "type": "string",
                    "minLength": 3,
                    "maxLength": 2000,
                    "description": "Recipients, comma-separated: ada@example.com, Bob <b@x.org>",
                },
                "subject": {"type": "string", "maxLength": 500, "description": "One line"},
                "body": {"type": "string", "maxLength": 50000, "description": "Plain text"},
                "cc": {"type": "string", "maxLength": 2000, "description": "Cc, comma-separated"},
            },
            "required": ["to", "subject", "body"],
            "additionalProperties": False,
        },
        writes=True,
        describe=lambda a: (
            f'Draft an email to {one_line(a.get("to"), 60)}: "{one_line(a.get("subject"), 60)}"'
        ),
        run=_draft,
        scopes=_COMPOSE_SCOPES,
    ),
)
