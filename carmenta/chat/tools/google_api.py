"""What the Gmail and Calendar tools share: where Google's APIs live and how Google
words its errors ({"error": {"code", "message", "status", "errors": [{"reason"}]}})."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from carmenta.chat.tools.base import (
    ToolContext,
    ToolFailure,
    json_body,
    one_line,
    raise_for_status,
    rate_limit_message,
    retry_after_seconds,
    send,
)
from carmenta.connections.providers import google

# The connection's api_base is the OpenID userinfo host; Gmail and Calendar answer
# under www.googleapis.com. An api_base set in OAUTH_ENDPOINT_OVERRIDES (a proxy, a
# local stand-in) serves them all under its own root.
GOOGLE_APIS_ROOT = "https://www.googleapis.com"
_RATE_REASONS = {"rateLimitExceeded", "userRateLimitExceeded", "quotaExceeded"}
_SCOPE_REASONS = {"insufficientPermissions", "ACCESS_TOKEN_SCOPE_INSUFFICIENT"}


def api_root(ctx: ToolContext) -> str:
    configured = ctx.api_base
    if not configured or configured == (google.ENDPOINTS.api_base or "").rstrip("/"):
        return GOOGLE_APIS_ROOT
    return configured


def _error_of(response: httpx.Response) -> tuple[set[str], str]:
    try:
        payload = response.json()
    except ValueError:
        return set(), ""
    error = payload.get("error") if isinstance(payload, dict) else None
    if not isinstance(error, dict):
        return set(), ""
    reasons = {
        str(item.get("reason"))
        for item in error.get("errors") or []
        if isinstance(item, dict) and item.get("reason")
    }
    if error.get("status"):
        reasons.add(str(error["status"]))
    for detail in error.get("details") or []:
        if isinstance(detail, dict) and detail.get("reason"):
            reasons.add(str(detail["reason"]))
    return reasons, one_line(error.get("message"), 200)


async def call(
    ctx: ToolContext,
    method: str,
    url: str,
    *,
    params: Any = None,
    json: Mapping[str, Any] | None = None,
    not_found: str | None = None,
) -> dict[str, Any]:
    response = await send(ctx, method, url, headers=ctx.bearer(), params=params, json=json)
    if response.status_code >= 300:
        reasons, message = _error_of(response)
        if response.status_code == 403 and reasons & _RATE_REASONS:
            raise ToolFailure(rate_limit_message(ctx.service, retry_after_seconds(response)))
        if response.status_code == 403 and reasons & _SCOPE_REASONS:
            raise ToolFailure(
                f"Your {ctx.service} connection lacks permission for this; reconnect "
                f"{ctx.service} to grant it."
            )
        raise_for_status(ctx, response, not_found=not_found, detail=message or None)
    return json_body(ctx, response)
