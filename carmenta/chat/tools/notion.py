"""Notion: search what the user shared with Carmenta, and read a page as plain text.

Every request names the API version (Notion-Version). Errors come as {"object":
"error", "status", "code", "message"}. A page's text is its block children, read
page by page (100 blocks each) until the character budget is spent.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from carmenta.chat.tools.base import (
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
    send,
    short_time,
    truncate,
)
from carmenta.connections.providers.notion import NOTION_VERSION

PROVIDER_ID = "notion"
# Block pages read for one page's text at most.
_MAX_BLOCK_PAGES = 10
_PAGE_ID = re.compile(
    r"([0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12})"
)
_HEADING = {"heading_1": "# ", "heading_2": "## ", "heading_3": "### "}
_PREFIX = {
    "bulleted_list_item": "- ",
    "numbered_list_item": "1. ",
    "quote": "> ",
    "callout": "> ",
    "toggle": "▸ ",
    **_HEADING,
}


def _headers(ctx: ToolContext) -> dict[str, str]:
    return {**ctx.bearer(), "Notion-Version": NOTION_VERSION}


async def _call(
    ctx: ToolContext,
    method: str,
    path: str,
    *,
    params: Mapping[str, Any] | None = None,
    json: Mapping[str, Any] | None = None,
    not_found: str | None = None,
) -> dict[str, Any]:
    response = await send(
        ctx,
        method,
        f"{ctx.api_base}{path}",
        headers=_headers(ctx),
        params=dict(params) if params else None,
        json=json,
    )
    if response.status_code >= 300:
        code = ""
        try:
            payload = response.json()
            code = str(payload.get("code") or "") if isinstance(payload, dict) else ""
        except ValueError:
            pass
        if code == "restricted_resource" or (response.status_code == 403 and not code):
            raise ToolFailure(
                "Notion says Carmenta may not see that; share the page with Carmenta in Notion."
            )
        detail = code if re.fullmatch(r"[a-z_]{1,40}", code) else None
        raise_for_status(ctx, response, not_found=not_found, detail=detail)
    return json_body(ctx, response)


def rich_text(items: Any) -> str:
    if not isinstance(items, list):
        return ""
    return "".join(
        str(item.get("plain_text") or (item.get("text") or {}).get("content") or "")
        for item in items
        if isinstance(item, dict)
    )


def title_of(thing: Mapping[str, Any]) -> str:
    """A page's title property, or a database's / data source's title."""
    if isinstance(thing.get("title"), list):
        return rich_text(thing["title"])
    for prop in (thing.get("properties") or {}).values():
        if isinstance(prop, dict) and prop.get("type") == "title":
            return rich_text(prop.get("title"))
    return ""


def block_text(block: Mapping[str, Any]) -> str | None:
    """One block as a line (or lines) of plain text; None for blocks without text."""
    kind = str(block.get("type") or "")
    body = block.get(kind) if isinstance(block.get(kind), dict) else {}
    text = rich_text(body.get("rich_text"))
    if kind in _PREFIX:
        more = " (more inside)" if kind == "toggle" and block.get("has_children") else ""
        return f"{_PREFIX[kind]}{text}{more}"
    if kind == "paragraph":
        return text
    if kind == "to_do":
        return f"[{'x' if body.get('checked') else ' '}] {text}"
    if kind == "code":
        return f"```{body.get('language') or ''}\n{text}\n```"
    if kind == "equation":
        return str(body.get("expression") or "")
    if kind == "child_page":
        return f"[page] {body.get('title') or ''}"
    if kind == "child_database":
        return f"[database] {body.get('title') or ''}"
    if kind == "divider":
        return "---"
    if kind in ("bookmark", "embed", "link_preview"):
        return str(body.get("url") or "")
    if kind in ("image", "file", "pdf", "video", "audio"):
        caption = rich_text(body.get("caption"))
        return f"[{kind}]" + (f" {caption}" if caption else "")
    if kind == "table_row":
        return " | ".join(rich_text(cell) for cell in body.get("cells") or [])
    return text or None


def page_id_from(value: str) -> str:
    """The page id in a Notion URL or id (with or without hyphens), hyphenated."""
    matches = _PAGE_ID.findall(value)
    if not matches:
        raise ToolFailure(
            f"'{one_line(value, 80)}' is not a Notion page id or link; "
            "use an id from notion_search."
        )
    raw = matches[-1].replace("-", "").lower()
    return f"{raw[:8]}-{raw[8:12]}-{raw[12:16]}-{raw[16:20]}-{raw[20:]}"


async def _search(ctx: ToolContext, arguments: dict[str, Any]) -> ToolOutcome:
    query = arguments.get("query") or ""
    payload = await _call(
        ctx,
        "POST",
        "/search",
        json={
            "query": query,
            "page_size": arguments["limit"],
            "sort": {"direction": "descending", "timestamp": "last_edited_time"},
        },
    )
    results = [item for item in payload.get("results") or [] if isinstance(item, dict)]
    lines, items = [], []
    for result in results:
        kind = str(result.get("object") or "page").replace("_", " ")
        title = one_line(title_of(result), 120) or "(untitled)"
        edited = short_time(iso_time(result.get("last_edited_time")))
        lines.append(
            f"[{kind}] {title} · id {result.get('id')} · edited {edited}"
            + (f" {result['url']}" if result.get("url") else "")
        )
        items.append({"id": result.get("id"), "title": title, "url": result.get("url")})
    shown = f'matching "{query}"' if query else "shared with Carmenta"
    header = f"Notion pages {shown}: {len(lines)}" + (
        " (more exist; refine the query)." if payload.get("has_more") else "."
    )
    return ToolOutcome(
        ok=True,
        content=numbered(header, lines, ctx.budget),
        summary=f"Found {plural(len(lines), 'Notion page')}"
        + (f' for "{one_line(query, 60)}"' if query else ""),
        data={"results": items},
    )


async def _read(ctx: ToolContext, arguments: dict[str, Any]) -> ToolOutcome:
    page_id = page_id_from(arguments["page"])
    missing = f"Notion says the page {page_id} does not exist or is not shared with Carmenta."
    page = await _call(ctx, "GET", f"/pages/{page_id}", not_found=missing)
    title = one_line(title_of(page), 200) or "(untitled)"
    lines: list[str] = []
    size = 0
    cursor: str | None = None
    complete = False
    for _ in range(_MAX_BLOCK_PAGES):
        params: dict[str, Any] = {"page_size": 100}
        if cursor:
            params["start_cursor"] = cursor
        chunk = await _call(
            ctx, "GET", f"/blocks/{page_id}/children", params=params, not_found=missing
        )
        for block in chunk.get("results") or []:
            if isinstance(block, dict):
                line = block_text(block)
                if line is not None:
                    lines.append(line)
                    size += len(line) + 1
        cursor = chunk.get("next_cursor") if chunk.get("has_more") else None
        if not cursor:
            complete = True
            break
        if size > ctx.budget:
            break
    body = "\n".join(lines).strip() or "(the page has no text)"
    if not complete:
        body += "\n[… the page goes on; only its beginning is shown]"
    header = f"Notion page: {title}" + (f"\n{page['url']}" if page.get("url") else "")
    return ToolOutcome(
        ok=True,
        content=truncate(f"{header}\n\n{body}", ctx.budget),
        summary=f"Read the Notion page “{one_line(title, 60)}”",
        data={"id": page_id, "title": title, "url": page.get("url"), "complete": complete},
    )


TOOLS = (
    ServiceTool(
        name="notion_search",
        provider_id=PROVIDER_ID,
        title="Search Notion",
        description=(
            "Search the Notion pages and databases the user shared with Carmenta, by title. "
            "Returns ids and links; read one with notion_read_page."
        ),
        parameters={
            "type": "object",
            "properties": {
                "query": {"type": "string", "maxLength": 300, "description": "Words in the title"},
                "limit": {"type": "integer", "minimum": 1, "maximum": 50, "default": 10},
            },
            "required": [],
            "additionalProperties": False,
        },
        writes=False,
        describe=lambda a: (
            "Search Notion" + (f' for "{one_line(a.get("query"), 80)}"' if a.get("query") else "")
        ),
        run=_search,
    ),
    ServiceTool(
        name="notion_read_page",
        provider_id=PROVIDER_ID,
        title="Read a Notion page",
        description="Read a Notion page's title and text, by its id or link.",
        parameters={
            "type": "object",
            "properties": {
                "page": {
                    "type": "string",
                    "minLength": 32,
                    "maxLength": 500,
                    "description": "The page id from notion_search, or its notion.so link",
                },
            },
            "required": ["page"],
            "additionalProperties": False,
        },
        writes=False,
        describe=lambda a: f"Read Notion page {one_line(a.get('page'), 60)}",
        run=_read,
    ),
)
