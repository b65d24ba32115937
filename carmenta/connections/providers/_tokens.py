"""Reading token responses and calling provider APIs: shared by the provider modules."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import httpx

from carmenta.connections.providers.base import TokenSet
from carmenta.model_fields import utcnow


def expires_at_from(expires_in: object, *, now: datetime | None = None) -> datetime | None:
    """The absolute expiry of a token that lives `expires_in` seconds, if it says."""
    if isinstance(expires_in, bool) or expires_in is None:
        return None
    try:
        seconds = int(float(expires_in))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    if seconds <= 0:
        return None
    return (now or utcnow()) + timedelta(seconds=seconds)


def scopes_from(value: object) -> frozenset[str] | None:
    """Granted scopes from a `scope` field: space- or comma-separated; None when absent."""
    if value is None:
        return None
    if isinstance(value, list | tuple):
        return frozenset(str(item) for item in value if str(item))
    return frozenset(part for part in re.split(r"[\s,]+", str(value)) if part)


def standard_token_set(payload: Mapping[str, Any]) -> TokenSet:
    """A token response as RFC 6749 section 5.1 shapes it. Raises ValueError."""
    access_token = payload.get("access_token")
    if not isinstance(access_token, str) or not access_token:
        raise ValueError("the token response has no access_token")
    token_type = payload.get("token_type")
    if token_type is not None and str(token_type).lower() != "bearer":
        raise ValueError(f"unsupported token type {str(token_type)[:20]!r}")
    refresh_token = payload.get("refresh_token")
    return TokenSet(
        access_token=access_token,
        refresh_token=refresh_token if isinstance(refresh_token, str) and refresh_token else None,
        expires_at=expires_at_from(payload.get("expires_in")),
        granted_scopes=scopes_from(payload.get("scope")),
    )


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Accept": "application/json"}


def json_object(response: httpx.Response) -> dict[str, Any]:
    """The response's JSON object after a 2xx; raises httpx.HTTPStatusError or ValueError."""
    response.raise_for_status()
    payload = response.json()
    if not isinstance(payload, dict):
        raise ValueError("the provider answered with something other than a JSON object")
    return payload


def text_field(payload: Mapping[str, Any], name: str) -> str | None:
    value = payload.get(name)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str):
        return value.strip() or None
    return None


def key_fingerprint(api_key: str) -> str:
    """A stable id for an API key that does not reveal it (keys are high-entropy)."""
    return hashlib.sha256(api_key.encode("utf-8")).hexdigest()[:16]


def key_tail(api_key: str) -> str:
    return api_key[-4:] if len(api_key) >= 8 else ""
