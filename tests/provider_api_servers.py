"""Local stand-ins for the provider APIs the chat tools call, in their documented shapes.

Mounted on the same app as tests/provider_servers.py (so the same api_base overrides
reach them) and answering only bearer tokens that app's OAuth flows issued for the
same provider:

- /slack/api: search.messages, conversations.list (at most 2 channels a page, so
  cursors are followed), conversations.history, users.info, chat.postMessage (JSON),
  chat.getPermalink. Errors as HTTP 200 {"ok": false, "error"}, rate limits as 429.
- /google/gmail/v1/users/me: messages (list with q; get with format metadata|full,
  bodies base64url), drafts (create from an RFC 2822 `raw`).
- /google/calendar/v3/calendars/primary (its time zone) and .../events (list needs
  an RFC 3339 timeMin with offset, and singleEvents with orderBy=startTime; insert).
- /notion/v1: search, pages/{id}, blocks/{id}/children (paginated); Notion-Version
  required.
- /github/api: repos/{owner}/{repo}/issues (pull requests included), search/issues;
  User-Agent and the GitHub media type required.

`ApiState.fail_next[provider] = kind` makes the provider's next API call fail with
"unauthorized", "not_found", "rate_limited", "server_error" or "forbidden", or
answer two seconds late ("slow").
"""

from __future__ import annotations

import asyncio
import base64
import email
import json
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.policy import default as default_policy
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

NOTION_PAGE_ID = "1a2b3c4d-5e6f-4a8b-9c0d-1e2f3a4b5c6d"
NOTION_LONG_PAGE_ID = "9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a"
CALENDAR_TIME_ZONE = "Europe/Paris"


def b64url(data: bytes) -> str:
    # Gmail sends base64url; unpadded here to prove the reader copes.
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _slack_ts(moment: datetime, sequence: int) -> str:
    return f"{int(moment.timestamp())}.{sequence:06d}"


def _seed_slack() -> tuple[list[dict], dict[str, list[dict]], dict[str, dict]]:
    channels = [
        {
            "id": "C0GENERAL1",
            "name": "general",
            "is_private": False,
            "is_member": True,
            "num_members": 42,
            "purpose": {"value": "Company-wide announcements"},
        },
        {
            "id": "C0RANDOM02",
            "name": "random",
            "is_private": False,
            "is_member": True,
            "num_members": 40,
            "purpose": {"value": "Anything goes"},
        },
        {
            "id": "C0DEPLOYS3",
            "name": "deploys",
            "is_private": False,
            "is_member": False,
            "num_members": 8,
            "purpose": {"value": "Release train"},
        },
        {
            "id": "G0SECRET04",
            "name": "secret-plans",
            "is_private": True,
            "is_member": True,
            "num_members": 3,
            "purpose": {"value": ""},
        },
        {
            "id": "C0OLDARCH5",
            "name": "old-stuff",
            "is_private": False,
            "is_member": False,
            "is_archived": True,
            "num_members": 2,
            "purpose": {"value": ""},
        },
    ]
    base = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
    messages = {
        "C0GENERAL1": [
            {
                "type": "message",
                "user": "U0GRACE2",
                "text": "The deploy is done, ship it",
                "ts": _slack_ts(base + timedelta(minutes=30), 1),
                "reply_count": 2,
            },
            {
                "type": "message",
                "user": "U0ADA01",
                "text": "Morning all! Deploy at 10",
                "ts": _slack_ts(base, 2),
            },
        ],
        "C0DEPLOYS3": [
            {
                "type": "message",
                "user": "U0GRACE2",
                "text": "deploy 42 rolled back",
                "ts": _slack_ts(base + timedelta(hours=1), 3),
            },
        ],
        "G0SECRET04": [],
    }
    users = {
        "U0ADA01": {
            "id": "U0ADA01",
            "name": "ada",
            "real_name": "Ada Lovelace",
            "profile": {"display_name": "ada", "real_name": "Ada Lovelace"},
        },
        "U0GRACE2": {
            "id": "U0GRACE2",
            "name": "grace",
            "real_name": "Grace Hopper",
            "profile": {"display_name": "Grace", "real_name": "Grace Hopper"},
        },
    }
    return channels, messages, users


def gmail_message(
    message_id: str,
    *,
    sender: str,
    to: str,
    subject: str,
    date: str,
    plain: bytes | None,
    html: bytes | None = None,
    charset: str = "UTF-8",
    attachment: str | None = None,
) -> dict[str, Any]:
    """A message resource as format=full gives it: multipart/alternative in mixed."""
    headers = [
        {"name": "From", "value": sender},
        {"name": "To", "value": to},
        {"name": "Subject", "value": subject},
        {"name": "Date", "value": date},
    ]
    alternatives = []
    if plain is not None:
        alternatives.append(
            {
                "partId": "0.0",
                "mimeType": "text/plain",
                "filename": "",
                "headers": [{"name": "Content-Type", "value": f'text/plain; charset="{charset}"'}],
                "body": {"size": len(plain), "data": b64url(plain)},
            }
        )
    if html is not None:
        alternatives.append(
            {
                "partId": "0.1",
                "mimeType": "text/html",
                "filename": "",
                "headers": [{"name": "Content-Type", "value": f"text/html; charset={charset}"}],
                "body": {"size": len(html), "data": b64url(html)},
            }
        )
    parts: list[dict[str, Any]] = [
        {
            "partId": "0",
            "mimeType": "multipart/alternative",
            "filename": "",
            "headers": [],
            "body": {"size": 0},
            "parts": alternatives,
        }
    ]
    if attachment:
        parts.append(
            {
                "partId": "1",
                "mimeType": "application/pdf",
                "filename": attachment,
                "headers": [],
                "body": {"size": 1000, "attachmentId": "ANGjdJ8"},
            }
        )
    snippet_source = (plain or b"").decode(charset, errors="replace")
    return {
        "id": message_id,
        "threadId": message_id,
        "labelIds": ["INBOX"],
        "snippet": " ".join(snippet_source.split())[:100],
        "internalDate": "1741000000000",
        "sizeEstimate": 2000,
        "payload": {
            "partId": "",
            "mimeType": "multipart/mixed",
            "filename": "",
            "headers": headers,
            "body": {"size": 0},
            "parts": parts,
        },
    }


def _seed_gmail() -> dict[str, dict]:
    messages = [
        gmail_message(
            "18c2f1a9b3e4d5f6",
            sender="Grace Hopper <grace@example.com>",
            to="ada@gmail.example",
            subject="Quarterly report",
            date="Mon, 03 Mar 2025 10:15:00 +0100",
            plain="The report is attached. Revenue is up 12 %.\r\nCafé at 3?\r\n".encode(),
            html=b"<p>The report is <b>attached</b>.</p>",
            attachment="report-q1.pdf",
        ),
        gmail_message(
            "18c2f1a9b3e4d5f7",
            sender="Newsletter <news@shop.example>",
            to="ada@gmail.example",
            subject="Only HTML here",
            date="Tue, 04 Mar 2025 08:00:00 +0000",
            plain=None,
            html=b"<html><head><style>p{}</style></head><body><p>Sale &amp; more</p>"
            b"<script>alert(1)</script><div>Ends Friday</div></body></html>",
        ),
        gmail_message(
            "18c2f1a9b3e4d5f8",
            sender="Bruno <bruno@example.fr>",
            to="ada@gmail.example",
            subject="Facture",
            date="Wed, 05 Mar 2025 12:00:00 +0100",
            plain="Voilà la facture, réglée à l'échéance.".encode("iso-8859-1"),
            charset="iso-8859-1",
        ),
    ]
    return {message["id"]: message for message in messages}


def _seed_calendar() -> list[dict]:
    def event(event_id: str, summary: str, start: str, end: str, **extra: Any) -> dict:
        key = "date" if len(start) == 10 else "dateTime"
        return {
            "kind": "calendar#event",
            "id": event_id,
            "status": "confirmed",
            "htmlLink": f"https://www.google.com/calendar/event?eid={event_id}",
            "summary": summary,
            "start": {key: start},
            "end": {key: end},
            **extra,
        }

    return [
        event(
            "evt1",
            "Standup",
            "2025-03-04T09:30:00+01:00",
            "2025-03-04T09:45:00+01:00",
            attendees=[{"email": "ada@gmail.example"}, {"email": "grace@example.com"}],
        ),
        event(
            "evt2",
            "Dentist",
            "2025-03-05T14:00:00+01:00",
            "2025-03-05T15:00:00+01:00",
            location="12 Rue de Rivoli",
        ),
        event("evt3", "Offsite", "2025-03-06", "2025-03-08"),
        event("evt9", "Next month", "2025-04-10T10:00:00+02:00", "2025-04-10T11:00:00+02:00"),
    ]


def _rich(text: str) -> list[dict]:
    return [
        {
            "type": "text",
            "text": {"content": text, "link": None},
            "plain_text": text,
            "annotations": {},
            "href": None,
        }
    ]


def _block(block_type: str, text: str = "", **extra: Any) -> dict:
    body: dict[str, Any] = {"rich_text": _rich(text), "color": "default", **extra}
    return {
        "object": "block",
        "id": f"blk-{abs(hash((block_type, text))) % 10**8}",
        "type": block_type,
        "has_children": block_type == "toggle",
        block_type: body,
    }


def _seed_notion() -> tuple[dict[str, dict], dict[str, list[dict]]]:
    def page(page_id: str, title: str) -> dict:
        return {
            "object": "page",
            "id": page_id,
            "created_time": "2025-02-01T10:00:00.000Z",
            "last_edited_time": "2025-03-01T10:00:00.000Z",
            "url": f"https://www.notion.so/{title.replace(' ', '-')}-{page_id.replace('-', '')}",
            "parent": {"type": "workspace", "workspace": True},
            "properties": {"Name": {"id": "title", "type": "title", "title": _rich(title)}},
        }

    pages = {
        NOTION_PAGE_ID: page(NOTION_PAGE_ID, "Launch plan"),
        NOTION_LONG_PAGE_ID: page(NOTION_LONG_PAGE_ID, "Meeting log"),
    }
    blocks = {
        NOTION_PAGE_ID: [
            _block("heading_1", "Goals"),
            _block("paragraph", "Ship the beta by April."),
            _block("bulleted_list_item", "Invite 50 testers"),
            _block("to_do", "Write the announcement", checked=True),
            _block("to_do", "Record the demo", checked=False),
            _block("code", "make release", language="shell"),
            {
                "object": "block",
                "id": "blk-div",
                "type": "divider",
                "has_children": False,
                "divider": {},
            },
            _block("toggle", "Risks"),
        ],
        NOTION_LONG_PAGE_ID: [
            _block("paragraph", f"Meeting note number {index:03d}") for index in range(250)
        ],
    }
    return pages, blocks


def _github_item(
    number: int,
    title: str,
    *,
    state: str = "open",
    pull: bool = False,
    labels: tuple[str, ...] = (),
    repository: str = "octo-org/rocket",
) -> dict:
    item: dict[str, Any] = {
        "url": f"https://api.github.com/repos/{repository}/issues/{number}",
        "repository_url": f"https://api.github.com/repos/{repository}",
        "html_url": f"https://github.com/{repository}/{'pull' if pull else 'issues'}/{number}",
        "id": 1000 + number,
        "number": number,
        "title": title,
        "state": state,
        "user": {"login": "octo-grace", "id": 2},
        "labels": [{"name": name} for name in labels],
        "comments": number % 3,
        "created_at": "2025-02-01T10:00:00Z",
        "updated_at": f"2025-03-{number:02d}T10:00:00Z",
        "body": "...",
    }
    if pull:
        item["pull_request"] = {
            "url": f"https://api.github.com/repos/{repository}/pulls/{number}",
            "html_url": f"https://github.com/{repository}/pull/{number}",
            "merged_at": None,
        }
    return item


def _seed_github() -> dict[str, list[dict]]:
    return {
        "octo-org/rocket": [
            _github_item(7, "Launch fails on cold start", labels=("bug", "p1")),
            _github_item(9, "Add telemetry", pull=True),
            _github_item(4, "Old crash", state="closed", labels=("bug",)),
            _github_item(11, "Docs: fuel table", pull=True, state="closed"),
        ]
    }


@dataclass
class ApiState:
    # Every API request: provider, method, path, query, body, the token's account, headers.
    requests: list[dict[str, Any]] = field(default_factory=list)
    # provider id -> failure kind for its next API call.
    fail_next: dict[str, str] = field(default_factory=dict)
    slack_channels: list[dict] = field(default_factory=list)
    slack_messages: dict[str, list[dict]] = field(default_factory=dict)
    slack_users: dict[str, dict] = field(default_factory=dict)
    gmail: dict[str, dict] = field(default_factory=_seed_gmail)
    drafts: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict] = field(default_factory=_seed_calendar)
    notion_pages: dict[str, dict] = field(default_factory=dict)
    notion_blocks: dict[str, list[dict]] = field(default_factory=dict)
    github_issues: dict[str, list[dict]] = field(default_factory=_seed_github)

    def __post_init__(self) -> None:
        self.slack_channels, self.slack_messages, self.slack_users = _seed_slack()
        self.notion_pages, self.notion_blocks = _seed_notion()

    def of(self, provider: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["provider"] == provider]


_RECORDED_HEADERS = (
    "accept",
    "user-agent",
    "notion-version",
    "x-github-api-version",
    "content-type",
)


def _failure(provider: str, kind: str) -> Response:
    if provider == "slack":
        if kind == "rate_limited":
            return JSONResponse(
                {"ok": False, "error": "ratelimited"},
                status_code=429,
                headers={"Retry-After": "90"},
            )
        if kind == "server_error":
            return JSONResponse({"ok": False, "error": "internal_error"}, status_code=500)
        error = {
            "unauthorized": "invalid_auth",
            "not_found": "channel_not_found",
            "forbidden": "missing_scope",
        }[kind]
        body: dict[str, Any] = {"ok": False, "error": error}
        if error == "missing_scope":
            body["needed"] = "chat:write"
        return JSONResponse(body)
    if provider == "google":
        status, reason, text = {
            "unauthorized": (401, "authError", "Request had invalid authentication credentials."),
            "not_found": (404, "notFound", "Requested entity was not found."),
            "rate_limited": (429, "rateLimitExceeded", "Rate Limit Exceeded"),
            "server_error": (500, "backendError", "Backend Error"),
            "forbidden": (403, "insufficientPermissions", "Insufficient Permission"),
        }[kind]
        headers = {"Retry-After": "30"} if kind == "rate_limited" else {}
        return JSONResponse(
            {
                "error": {
                    "code": status,
                    "message": text,
                    "errors": [{"message": text, "domain": "global", "reason": reason}],
                }
            },
            status_code=status,
            headers=headers,
        )
    if provider == "notion":
        status, code = {
            "unauthorized": (401, "unauthorized"),
            "not_found": (404, "object_not_found"),
            "rate_limited": (429, "rate_limited"),
            "server_error": (500, "internal_server_error"),
            "forbidden": (403, "restricted_resource"),
        }[kind]
        headers = {"Retry-After": "200"} if kind == "rate_limited" else {}
        return JSONResponse(
            {
                "object": "error",
                "status": status,
                "code": code,
                "message": "scripted failure",
                "request_id": "req-1",
            },
            status_code=status,
            headers=headers,
        )
    # GitHub
    if kind == "rate_limited":
        reset = int(time.time()) + 600
        return JSONResponse(
            {
                "message": "API rate limit exceeded for user ID 583231.",
                "documentation_url": "https://docs.github.com/rest/rate-limit",
            },
            status_code=403,
            headers={
                "x-ratelimit-limit": "5000",
                "x-ratelimit-remaining": "0",
                "x-ratelimit-used": "5000",
                "x-ratelimit-reset": str(reset),
            },
        )
    status, text = {
        "unauthorized": (401, "Bad credentials"),
        "not_found": (404, "Not Found"),
        "server_error": (500, "Server Error"),
        "forbidden": (403, "Resource not accessible by integration"),
    }[kind]
    return JSONResponse(
        {"message": text, "documentation_url": "https://docs.github.com/rest"}, status_code=status
    )


def _unauthenticated(provider: str, missing: bool) -> Response:
    if provider == "slack":
        return JSONResponse({"ok": False, "error": "not_authed" if missing else "invalid_auth"})
    return _failure(provider, "unauthorized")


def api_routes(peer: Any) -> list[Route]:
    """The API routes, reading `peer.api` (an ApiState) and `peer.bearer_account`."""

    def endpoint(provider: str, path: str, methods: tuple[str, ...] = ("GET",)):
        def wrap(handler):
            async def serve(request: Request) -> Response:
                api: ApiState = peer.api
                body = await request.body()
                token = peer.bearer_account(request, provider)
                api.requests.append(
                    {
                        "provider": provider,
                        "method": request.method,
                        "path": request.url.path,
                        "query": dict(request.query_params),
                        "query_list": list(request.query_params.multi_items()),
                        "body": body,
                        "account": token.account.id if token is not None else None,
                        "authorization": request.headers.get("authorization"),
                        "headers": {name: request.headers.get(name) for name in _RECORDED_HEADERS},
                    }
                )
                kind = api.fail_next.pop(provider, None)
                if kind == "slow":
                    await asyncio.sleep(2)
                elif kind is not None:
                    return _failure(provider, kind)
                if token is None:
                    return _unauthenticated(provider, "authorization" not in request.headers)
                if provider == "notion" and not re.fullmatch(
                    r"\d{4}-\d{2}-\d{2}", request.headers.get("notion-version", "")
                ):
                    return JSONResponse(
                        {
                            "object": "error",
                            "status": 400,
                            "code": "missing_version",
                            "message": "Notion-Version header failed validation.",
                        },
                        status_code=400,
                    )
                if provider == "github":
                    if not request.headers.get("user-agent"):
                        return Response(
                            "Request forbidden by administrative rules. Please "
                            "make sure your request has a User-Agent header",
                            status_code=403,
                        )
                    if "application/vnd.github" not in request.headers.get("accept", ""):
                        return JSONResponse(
                            {"message": "Unsupported 'Accept' header"}, status_code=415
                        )
                return await handler(request, api, token, body)

            return Route(path, serve, methods=list(methods))

        return wrap

    routes: list[Route] = []

    def add(provider: str, path: str, methods: tuple[str, ...] = ("GET",)):
        def register(handler):
            routes.append(endpoint(provider, path, methods)(handler))
            return handler

        return register

    # -- Slack ---------------------------------------------------------------------

    def permalink(channel_id: str, ts: str) -> str:
        return f"https://acme.slack.com/archives/{channel_id}/p{ts.replace('.', '')}"

    @add("slack", "/slack/api/search.messages", ("GET", "POST"))
    async def slack_search(request, api, token, body):
        query = request.query_params.get("query", "")
        if not query:
            return JSONResponse({"ok": False, "error": "no_query"})
        count = int(request.query_params.get("count", "20"))
        words = query.lower().split()
        matches = []
        by_id = {c["id"]: c for c in api.slack_channels}
        for channel_id, messages in api.slack_messages.items():
            for message in messages:
                if all(word in message["text"].lower() for word in words):
                    user = api.slack_users.get(message.get("user"), {})
                    matches.append(
                        {
                            "type": "message",
                            "user": message.get("user"),
                            "username": user.get("name"),
                            "ts": message["ts"],
                            "text": message["text"],
                            "permalink": permalink(channel_id, message["ts"]),
                            "channel": {"id": channel_id, "name": by_id[channel_id]["name"]},
                        }
                    )
        matches.sort(key=lambda m: m["ts"], reverse=True)
        return JSONResponse(
            {
                "ok": True,
                "query": query,
                "messages": {
                    "total": len(matches),
                    "matches": matches[:count],
                    "paging": {"count": count, "total": len(matches), "page": 1, "pages": 1},
                },
            }
        )

    @add("slack", "/slack/api/conversations.list", ("GET", "POST"))
    async def slack_channels(request, api, token, body):
        types = request.query_params.get("types", "public_channel").split(",")
        exclude_archived = request.query_params.get("exclude_archived") == "true"
        chosen = [
            c
            for c in api.slack_channels
            if ("private_channel" if c["is_private"] else "public_channel") in types
            and not (exclude_archived and c.get("is_archived"))
        ]
        offset = int(request.query_params.get("cursor") or 0)
        # Slack may return fewer than `limit`; two a page makes callers follow cursors.
        page = min(int(request.query_params.get("limit", "100")), 2)
        following = offset + page
        return JSONResponse(
            {
                "ok": True,
                "channels": chosen[offset:following],
                "response_metadata": {
                    "next_cursor": str(following) if following < len(chosen) else ""
                },
            }
        )

    @add("slack", "/slack/api/conversations.history", ("GET", "POST"))
    async def slack_history(request, api, token, body):
        channel_id = request.query_params.get("channel", "")
        if channel_id not in api.slack_messages:
            return JSONResponse({"ok": False, "error": "channel_not_found"})
        limit = int(request.query_params.get("limit", "100"))
        newest_first = sorted(api.slack_messages[channel_id], key=lambda m: m["ts"], reverse=True)
        return JSONResponse(
            {
                "ok": True,
                "messages": newest_first[:limit],
                "has_more": len(newest_first) > limit,
                "pin_count": 0,
                "response_metadata": {"next_cursor": ""},
            }
        )

    @add("slack", "/slack/api/users.info", ("GET", "POST"))
    async def slack_user(request, api, token, body):
        user = api.slack_users.get(request.query_params.get("user", ""))
        if user is None:
            return JSONResponse({"ok": False, "error": "user_not_found"})
        return JSONResponse({"ok": True, "user": user})

    @add("slack", "/slack/api/chat.postMessage", ("POST",))
    async def slack_post(request, api, token, body):
        if not request.headers.get("content-type", "").startswith("application/json"):
            return JSONResponse({"ok": False, "error": "invalid_form_data"})
        payload = json.loads(body or b"{}")
        channel_id, text = payload.get("channel"), payload.get("text")
        if not text:
            return JSONResponse({"ok": False, "error": "no_text"})
        if channel_id not in api.slack_messages:
            return JSONResponse({"ok": False, "error": "channel_not_found"})
        channel = next(c for c in api.slack_channels if c["id"] == channel_id)
        if not channel["is_member"]:
            return JSONResponse({"ok": False, "error": "not_in_channel"})
        ts = _slack_ts(datetime.now(UTC), len(api.slack_messages[channel_id]) + 100)
        message = {"type": "message", "user": token.account.id, "text": text, "ts": ts}
        api.slack_messages[channel_id].append(message)
        return JSONResponse({"ok": True, "channel": channel_id, "ts": ts, "message": message})

    @add("slack", "/slack/api/chat.getPermalink", ("GET", "POST"))
    async def slack_permalink(request, api, token, body):
        channel_id = request.query_params.get("channel", "")
        ts = request.query_params.get("message_ts", "")
        return JSONResponse(
            {"ok": True, "channel": channel_id, "permalink": permalink(channel_id, ts)}
        )

    # -- Gmail -----------------------------------------------------------------------

    def headers_of(message: dict) -> dict[str, str]:
        return {h["name"].lower(): h["value"] for h in message["payload"]["headers"]}

    def google_not_found() -> Response:
        return _failure("google", "not_found")

    @add("google", "/google/gmail/v1/users/me/messages")
    async def gmail_list(request, api, token, body):
        terms = request.query_params.get("q", "").lower().split()
        limit = int(request.query_params.get("maxResults", "100"))
        found = []
        for message in api.gmail.values():
            headers = headers_of(message)
            text = f"{headers.get('subject', '')} {message['snippet']}".lower()
            if all(
                term[5:] in headers.get("from", "").lower()
                if term.startswith("from:")
                else term in text
                for term in terms
            ):
                found.append({"id": message["id"], "threadId": message["threadId"]})
        answer: dict[str, Any] = {"resultSizeEstimate": len(found)}
        if found:  # Gmail leaves `messages` out when nothing matches
            answer["messages"] = found[:limit]
        return JSONResponse(answer)

    @add("google", "/google/gmail/v1/users/me/messages/{message_id}")
    async def gmail_get(request, api, token, body):
        message = api.gmail.get(request.path_params["message_id"])
        if message is None:
            return google_not_found()
        shape = request.query_params.get("format", "full")
        if shape == "metadata":
            wanted = {
                v.lower() for k, v in request.query_params.multi_items() if k == "metadataHeaders"
            }
            payload = {
                "mimeType": message["payload"]["mimeType"],
                "headers": [
                    h for h in message["payload"]["headers"] if h["name"].lower() in wanted
                ],
            }
            return JSONResponse(
                {key: value for key, value in message.items() if key != "payload"}
                | {"payload": payload}
            )
        if shape != "full":
            return JSONResponse(
                {"error": {"code": 400, "message": "Invalid format"}}, status_code=400
            )
        return JSONResponse(message)

    @add("google", "/google/gmail/v1/users/me/drafts", ("POST",))
    async def gmail_draft(request, api, token, body):
        raw = (json.loads(body or b"{}").get("message") or {}).get("raw")
        if not raw:
            return JSONResponse(
                {
                    "error": {
                        "code": 400,
                        "message": "Missing draft message",
                        "errors": [{"reason": "invalidArgument"}],
                    }
                },
                status_code=400,
            )
        data = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
        parsed = email.message_from_bytes(data, policy=default_policy)
        if not parsed["To"]:
            return JSONResponse(
                {
                    "error": {
                        "code": 400,
                        "message": "Invalid To header",
                        "errors": [{"reason": "invalidArgument"}],
                    }
                },
                status_code=400,
            )
        draft_id = f"r-{len(api.drafts) + 1}"
        api.drafts.append({"id": draft_id, "raw": data, "message": parsed})
        return JSONResponse(
            {
                "id": draft_id,
                "message": {
                    "id": f"m-{len(api.drafts)}",
                    "threadId": f"t-{len(api.drafts)}",
                    "labelIds": ["DRAFT"],
                },
            }
        )

    # -- Calendar --------------------------------------------------------------------

    def rfc3339(value: str | None) -> datetime | None:
        if not value or not re.search(r"(Z|[+-]\d{2}:\d{2})$", value):
            return None
        return datetime.fromisoformat(value.replace("Z", "+00:00"))

    def event_start(event: dict) -> datetime:
        start = event["start"]
        if "date" in start:
            return datetime.fromisoformat(start["date"]).replace(tzinfo=UTC)
        return datetime.fromisoformat(start["dateTime"])

    @add("google", "/google/calendar/v3/calendars/primary")
    async def calendar_get(request, api, token, body):
        return JSONResponse(
            {
                "kind": "calendar#calendar",
                "id": token.account.email,
                "summary": token.account.email,
                "timeZone": CALENDAR_TIME_ZONE,
            }
        )

    @add("google", "/google/calendar/v3/calendars/primary/events", ("GET", "POST"))
    async def calendar_events(request, api, token, body):
        bad = JSONResponse(
            {
                "error": {
                    "code": 400,
                    "message": "Bad Request",
                    "errors": [{"reason": "badRequest"}],
                }
            },
            status_code=400,
        )
        if request.method == "POST":
            event = json.loads(body or b"{}")
            for side in ("start", "end"):
                value = event.get(side) or {}
                if "date" not in value and not (
                    rfc3339(value.get("dateTime"))
                    or (value.get("dateTime") and value.get("timeZone"))
                ):
                    return bad
            if not event.get("summary"):
                return bad
            event_id = f"new{len(api.events) + 1}"
            created = {
                **event,
                "kind": "calendar#event",
                "id": event_id,
                "status": "confirmed",
                "htmlLink": f"https://www.google.com/calendar/event?eid={event_id}",
            }
            api.events.append(created)
            return JSONResponse(created)
        query = request.query_params
        start, end = rfc3339(query.get("timeMin")), rfc3339(query.get("timeMax"))
        if query.get("timeMin") and start is None or query.get("timeMax") and end is None:
            return bad
        if query.get("orderBy") == "startTime" and query.get("singleEvents") != "true":
            return bad
        chosen = [
            e
            for e in api.events
            if (start is None or event_start(e) >= start) and (end is None or event_start(e) < end)
        ]
        chosen.sort(key=event_start)
        limit = int(query.get("maxResults", "250"))
        return JSONResponse(
            {
                "kind": "calendar#events",
                "summary": token.account.email,
                "timeZone": CALENDAR_TIME_ZONE,
                "items": chosen[:limit],
            }
        )

    # -- Notion ----------------------------------------------------------------------

    def hyphenated(raw: str) -> str:
        plain = raw.replace("-", "").lower()
        return f"{plain[:8]}-{plain[8:12]}-{plain[12:16]}-{plain[16:20]}-{plain[20:]}"

    def notion_title(page: dict) -> str:
        return "".join(t["plain_text"] for t in page["properties"]["Name"]["title"])

    @add("notion", "/notion/v1/search", ("POST",))
    async def notion_search(request, api, token, body):
        payload = json.loads(body or b"{}")
        query = str(payload.get("query") or "").lower()
        size = min(int(payload.get("page_size", 100)), 100)
        found = [p for p in api.notion_pages.values() if query in notion_title(p).lower()]
        return JSONResponse(
            {
                "object": "list",
                "results": found[:size],
                "next_cursor": None,
                "has_more": len(found) > size,
                "type": "page_or_data_source",
                "page_or_data_source": {},
                "request_id": "req-s",
            }
        )

    @add("notion", "/notion/v1/pages/{page_id}")
    async def notion_page(request, api, token, body):
        page = api.notion_pages.get(hyphenated(request.path_params["page_id"]))
        if page is None:
            return _failure("notion", "not_found")
        return JSONResponse(page)

    @add("notion", "/notion/v1/blocks/{block_id}/children")
    async def notion_children(request, api, token, body):
        blocks = api.notion_blocks.get(hyphenated(request.path_params["block_id"]))
        if blocks is None:
            return _failure("notion", "not_found")
        size = min(int(request.query_params.get("page_size", "100")), 100)
        offset = int(request.query_params.get("start_cursor") or 0)
        following = offset + size
        more = following < len(blocks)
        return JSONResponse(
            {
                "object": "list",
                "results": blocks[offset:following],
                "next_cursor": str(following) if more else None,
                "has_more": more,
                "type": "block",
                "block": {},
                "request_id": "req-b",
            }
        )

    # -- GitHub ----------------------------------------------------------------------

    @add("github", "/github/api/repos/{owner}/{repo}/issues")
    async def github_issues(request, api, token, body):
        repository = f"{request.path_params['owner']}/{request.path_params['repo']}"
        items = api.github_issues.get(repository)
        if items is None:
            return _failure("github", "not_found")
        state = request.query_params.get("state", "open")
        chosen = [i for i in items if state == "all" or i["state"] == state]
        chosen.sort(key=lambda i: i["updated_at"], reverse=True)
        per_page = min(int(request.query_params.get("per_page", "30")), 100)
        return JSONResponse(chosen[:per_page])

    @add("github", "/github/api/search/issues")
    async def github_search(request, api, token, body):
        q = request.query_params.get("q", "")
        if not q.strip():
            return JSONResponse(
                {
                    "message": "Validation Failed",
                    "errors": [{"resource": "Search", "field": "q", "code": "missing"}],
                },
                status_code=422,
            )
        repo, kinds, words = None, None, []
        for term in q.split():
            if term.startswith("repo:"):
                repo = term[5:]
            elif term in ("is:pr", "is:issue"):
                kinds = term[3:]
            elif term.startswith("is:"):
                continue
            else:
                words.append(term.lower())
        found = [
            item
            for repository, items in api.github_issues.items()
            for item in items
            if (repo is None or repository == repo)
            and (kinds is None or bool(item.get("pull_request")) == (kinds == "pr"))
            and all(word in item["title"].lower() for word in words)
        ]
        per_page = min(int(request.query_params.get("per_page", "30")), 100)
        return JSONResponse(
            {"total_count": len(found), "incomplete_results": False, "items": found[:per_page]}
        )

    return routes
