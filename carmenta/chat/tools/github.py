"""GitHub: a repository's issues and pull requests, and issue search across GitHub.

Requests carry GitHub's media type, API version and a User-Agent (GitHub refuses
requests without one). The issues endpoint lists pull requests too; they are the
items with a `pull_request` key. Rate limits come as 403 or 429 with
x-ratelimit-remaining: 0 and x-ratelimit-reset (epoch seconds), or Retry-After.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import httpx

from carmenta.chat.tools.base import (
    USER_AGENT,
    ServiceTool,
    ToolContext,
    ToolFailure,
    ToolOutcome,
    iso_time,
    json_body,
    numbered,
    one_line,
    plural,
    raise_for_status,
    rate_limit_message,
    retry_after_seconds,
    send,
)
from carmenta.connections.providers.github import API_HEADERS

PROVIDER_ID = "github"


def _headers(ctx: ToolContext) -> dict[str, str]:
    return {**API_HEADERS, "Authorization": f"Bearer {ctx.token}", "User-Agent": USER_AGENT}


def _rate_limit_wait(response: httpx.Response) -> float | None | bool:
    """Seconds to wait when this is a rate-limit answer (None: unknown); False if not."""
    retry_after = retry_after_seconds(response)
    if retry_after is not None and response.status_code in (403, 429):
        return retry_after
    if response.headers.get("x-ratelimit-remaining") == "0" or response.status_code == 429:
        try:
            return max(0.0, float(response.headers["x-ratelimit-reset"]) - time.time())
        except (KeyError, ValueError):
            return None
    return False


def _message(response: httpx.Response) -> str:
    try:
        payload = response.json()
    except ValueError:
        return ""
    if not isinstance(payload, dict):
        return ""
    details = [
        str(error.get("message"))
        for error in payload.get("errors") or []
        if isinstance(error, dict) and error.get("message")
    ]
    return one_line("; ".join(details) or payload.get("message") or "", 200)


async def _get(ctx: ToolContext, path: str, *, params: Mapping[str, Any], not_found: str) -> Any:
    response = await send(
        ctx, "GET", f"{ctx.api_base}{path}", headers=_headers(ctx), params=dict(params)
    )
    if response.status_code >= 300:
        if response.status_code in (403, 429):
            wait = _rate_limit_wait(response)
            if wait is not False:
                raise ToolFailure(rate_limit_message(ctx.service, wait))
        if response.status_code == 422:
            raise ToolFailure(f"GitHub could not do that: {_message(response) or 'invalid query'}.")
        raise_for_status(ctx, response, not_found=not_found, detail=_message(response) or None)
    try:
        return response.json()
    except ValueError:
        return json_body(ctx, response)


def _line(item: Mapping[str, Any], *, repository: str | None = None) -> str:
    kind = "PR" if item.get("pull_request") else "issue"
    state = str(item.get("state") or "?")
    if item.get("pull_request") and (item.get("pull_request") or {}).get("merged_at"):
        state = "merged"
    author = (item.get("user") or {}).get("login") or "?"
    labels = [
        str(label.get("name"))
        for label in item.get("labels") or []
        if isinstance(label, dict) and label.get("name")
    ]
    updated = iso_time(item.get("updated_at"))
    parts = [
        f"{repository + ' ' if repository else ''}#{item.get('number')} [{kind}, {state}] "
        f"{one_line(item.get('title'), 150)}",
        f"by {author}",
        f"updated {updated.strftime('%Y-%m-%d') if updated else '?'}",
    ]
    if labels:
        parts.append("labels: " + one_line(", ".join(labels), 80))
    if isinstance(item.get("comments"), int) and item["comments"]:
        parts.append(plural(item["comments"], "comment"))
    return " · ".join(parts) + (f" {item['html_url']}" if item.get("html_url") else "")


def _repository_of(item: Mapping[str, Any]) -> str | None:
    url = str(item.get("repository_url") or "")
    parts = url.rstrip("/").split("/")
    return "/".join(parts[-2:]) if len(parts) >= 2 and "/repos/" in url else None


async def _list(ctx: ToolContext, arguments: dict[str, Any]) -> ToolOutcome:
    repository = arguments["repository"]
    kind = arguments["kind"]
    limit = arguments["limit"]
    payload = await _get(
        ctx,
        f"/repos/{repository}/issues",
        params={
            "state": arguments["state"],
            "sort": "updated",
            "direction": "desc",
            # Issues and pull requests come mixed: ask for more when keeping one kind.
            "per_page": limit if kind == "all" else 100,
        },
        not_found=(
            f"GitHub says the repository {repository} does not exist or your account cannot see it."
        ),
    )
    items = (
        [item for item in payload if isinstance(item, dict)] if isinstance(payload, list) else []
    )
    if kind == "issues":
        items = [item for item in items if not item.get("pull_request")]
    elif kind == "pull_requests":
        items = [item for item in items if item.get("pull_request")]
    items = items[:limit]
    noun = {"issues": "issue", "pull_requests": "pull request", "all": "issue or pull request"}[
        kind
    ]
    plural_noun = {
        "issues": "issues",
        "pull_requests": "pull requests",
        "all": "issues and pull requests",
    }[kind]
    header = (
        f"{repository}: {plural(len(items), noun, plural_noun)} ({arguments['state']}), "
        "most recently updated first."
    )
    return ToolOutcome(
        ok=True,
        content=numbered(header, [_line(item) for item in items], ctx.budget),
        summary=f"Listed {plural(len(items), noun, plural_noun)} in {repository}",
        data={
            "items": [
                {
                    "number": item.get("number"),
                    "pull_request": bool(item.get("pull_request")),
                    "url": item.get("html_url"),
                }
                for item in items
            ]
        },
    )


async def _search(ctx: ToolContext, arguments: dict[str, Any]) -> ToolOutcome:
    query = arguments["query"]
    payload = await _get(
        ctx,
        "/search/issues",
        params={"q": query, "per_page": arguments["limit"]},
        not_found="GitHub search is not available on this server.",
    )
    payload = payload if isinstance(payload, dict) else {}
    items = [item for item in payload.get("items") or [] if isinstance(item, dict)]
    total = (
        payload.get("total_count") if isinstance(payload.get("total_count"), int) else len(items)
    )
    header = f'GitHub issues and pull requests matching "{query}": {len(items)} shown of {total}.'
    if payload.get("incomplete_results"):
        header += " (GitHub stopped the search early; results may be incomplete.)"
    return ToolOutcome(
        ok=True,
        content=numbered(
            header, [_line(item, repository=_repository_of(item)) for item in items], ctx.budget
        ),
        summary=f'Found {plural(total, "GitHub result")} for "{one_line(query, 60)}"',
        data={
            "total": total,
            "items": [
                {
                    "repository": _repository_of(item),
                    "number": item.get("number"),
                    "url": item.get("html_url"),
                }
                for item in items
            ],
        },
    )


TOOLS = (
    ServiceTool(
        name="github_list_issues",
        provider_id=PROVIDER_ID,
        title="List GitHub issues and pull requests",
        description=(
            "List the issues and pull requests of a GitHub repository, most recently "
            "updated first; pull requests are marked [PR]."
        ),
        parameters={
            "type": "object",
            "properties": {
                "repository": {
                    "type": "string",
                    "minLength": 3,
                    "maxLength": 140,
                    "pattern": r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}$",
                    "description": "owner/name",
                    "examples": ["octocat/hello-world"],
                },
                "state": {"type": "string", "enum": ["open", "closed", "all"], "default": "open"},
                "kind": {
                    "type": "string",
                    "enum": ["all", "issues", "pull_requests"],
                    "default": "all",
                },
                "limit": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20},
            },
            "required": ["repository"],
            "additionalProperties": False,
        },
        writes=False,
        describe=lambda a: (
            f"List {a.get('state') or 'open'} issues and pull requests "
            f"in {one_line(a.get('repository'), 80)}"
        ),
        run=_list,
    ),
    ServiceTool(
        name="github_search_issues",
        provider_id=PROVIDER_ID,
        title="Search GitHub issues and pull requests",
        description=(
            "Search issues and pull requests with GitHub search syntax (repo:owner/name, "
            "is:pr, is:open, author:login, label:bug, involves:@me)."
        ),
        parameters={
            "type": "object",
            "properties": {
                "query": {"type": "string", "minLength": 1, "maxLength": 256},
                "limit": {"type": "integer", "minimum": 1, "maximum": 50, "default": 20},
            },
            "required": ["query"],
            "additionalProperties": False,
        },
        writes=False,
        describe=lambda a: f'Search GitHub for "{one_line(a.get("query"), 80)}"',
        run=_search,
    ),
)
