"""The official clients' exceptions, told as a person would want to hear them.

Both SDKs raise the same family (APIStatusError with the status and the parsed error
body, APITimeoutError, APIConnectionError); errors sent inside a stream arrive the
same way with the body of the SSE `error` event. The provider's own message is only
quoted for a refused request (it names what was wrong), with the key scrubbed out.
"""

from __future__ import annotations

import re
from typing import Any

import anthropic
import openai

from carmenta.chat.llm.types import ModelError

MAX_QUOTED_CHARS = 300
_CONTEXT_HINTS = re.compile(
    r"prompt is too long|context[ _]length|context window|maximum context|too many tokens",
    re.IGNORECASE,
)
_TYPE_KINDS = {
    "authentication_error": "auth",
    "invalid_api_key": "auth",
    "permission_error": "permission",
    "not_found_error": "not_found",
    "model_not_found": "not_found",
    "rate_limit_error": "rate_limited",
    "rate_limit_exceeded": "rate_limited",
    "insufficient_quota": "billing",
    "billing_error": "billing",
    "overloaded_error": "overloaded",
    "api_error": "server",
    "server_error": "server",
    "timeout_error": "timeout",
    "request_too_large": "too_large",
    "context_length_exceeded": "context_length",
}
_STATUS_KINDS = {
    400: "bad_request",
    401: "auth",
    402: "billing",
    403: "permission",
    404: "not_found",
    408: "timeout",
    413: "too_large",
    422: "bad_request",
    429: "rate_limited",
    529: "overloaded",
}


def _error_object(body: Any) -> dict[str, Any]:
    # Anthropic's SDK keeps the whole {"type": "error", "error": {...}}; OpenAI's keeps
    # the inner object.
    if isinstance(body, dict):
        inner = body.get("error")
        return inner if isinstance(inner, dict) else body
    return {}


def _scrubbed(text: str, secret: str) -> str:
    if secret:
        text = text.replace(secret, "[key]")
    text = " ".join(text.split())
    if len(text) > MAX_QUOTED_CHARS:
        text = text[: MAX_QUOTED_CHARS - 1] + "…"
    return text


def _kind(status: int | None, error: dict[str, Any], message: str) -> str:
    for field in ("code", "type"):
        value = error.get(field)
        if isinstance(value, str) and value in _TYPE_KINDS:
            kind = _TYPE_KINDS[value]
            break
    else:
        kind = _STATUS_KINDS.get(status or 0) or ("server" if (status or 0) >= 500 else "")
        if not kind:
            kind = "server"
    if kind in ("bad_request", "too_large") and _CONTEXT_HINTS.search(message):
        return "context_length"
    return kind


def _retry_hint(headers: Any) -> str:
    try:
        seconds = int(float(headers.get("retry-after")))
    except (TypeError, ValueError, AttributeError):
        return "Try again in a minute."
    return f"Try again in {seconds} seconds." if seconds < 120 else "Try again in a few minutes."


def _message(kind: str, *, service: str, model: str, quoted: str, headers: Any) -> str:
    if kind == "auth":
        return f"{service} did not accept the API key. Check the key, or connect a new one."
    if kind == "permission":
        return f"This API key is not allowed to use {model} at {service}."
    if kind == "not_found":
        return f"{service} has no model called {model}. Choose another model."
    if kind == "rate_limited":
        return f"{service} is limiting requests right now. {_retry_hint(headers)}"
    if kind == "billing":
        return f"{service} refused the request: the account has no credit or quota left."
    if kind == "overloaded":
        return f"{service} is overloaded right now. Try again in a moment."
    if kind == "context_length":
        return (
            f"This conversation is too long for {model}. Start a new conversation "
            "or choose a model with a larger context."
        )
    if kind == "too_large":
        return f"The message is too large for {service}. Try fewer or smaller images."
    if kind == "timeout":
        return f"{service} did not answer in time. Try again."
    if kind == "bad_request":
        detail = f": {quoted}" if quoted else "."
        return f"{service} refused the request{detail}"
    return f"{service} had a problem answering. Try again in a moment."


def model_error(error: Exception, *, service: str, model: str, api_key: str) -> ModelError:
    """The ModelError for an exception of either official client."""
    if isinstance(error, anthropic.APITimeoutError | openai.APITimeoutError):
        return ModelError(f"{service} did not answer in time. Try again.", kind="timeout")
    if isinstance(error, anthropic.APIConnectionError | openai.APIConnectionError):
        return ModelError(
            f"Could not reach {service}. Check the address and that it is running.",
            kind="connection",
        )
    status = getattr(error, "status_code", None)
    status = status if isinstance(status, int) and status >= 400 else None
    inner = _error_object(getattr(error, "body", None))
    raw_message = inner.get("message")
    raw_message = raw_message if isinstance(raw_message, str) else ""
    kind = _kind(status, inner, raw_message)
    response = getattr(error, "response", None)
    headers = getattr(response, "headers", None)
    message = _message(
        kind,
        service=service,
        model=model,
        quoted=_scrubbed(raw_message, api_key),
        headers=headers,
    )
    return ModelError(message, kind=kind, status=status)
