"""Anthropic's API, with the person's own API key (the chat's models).

A key is checked by listing models (GET /v1/models with `x-api-key` and
`anthropic-version`), which costs nothing. The account is a fingerprint of the key,
and its label shows only the key's last four characters.
"""

from __future__ import annotations

import httpx

from carmenta.connections.providers._tokens import json_object, key_fingerprint, key_tail
from carmenta.connections.providers.base import AccountIdentity, Endpoints, ProviderSpec

ENDPOINTS = Endpoints(api_base="https://api.anthropic.com")
ANTHROPIC_VERSION = "2023-06-01"
KEY_PREFIX = "sk-ant-"


def key_format_problem(api_key: str) -> str | None:
    if not api_key.startswith(KEY_PREFIX):
        return f"Anthropic keys start with {KEY_PREFIX}. Copy the whole key from the Console."
    return None


def label_for(api_key: str) -> str:
    tail = key_tail(api_key)
    return f"Anthropic key …{tail}" if tail else "Anthropic key"


def build(
    endpoints: Endpoints = ENDPOINTS,
    *,
    client_id: str | None = None,
    client_secret: str | None = None,
) -> ProviderSpec:
    api_base = (endpoints.api_base or ENDPOINTS.api_base or "").rstrip("/")

    async def validate_api_key(
        client: httpx.AsyncClient, api_key: str, base_url: str | None
    ) -> AccountIdentity:
        payload = json_object(
            await client.get(
                f"{api_base}/v1/models",
                headers={
                    "x-api-key": api_key,
                    "anthropic-version": ANTHROPIC_VERSION,
                    "Accept": "application/json",
                },
            )
        )
        if not isinstance(payload.get("data"), list):
            raise ValueError("the answer is not a list of models")
        return AccountIdentity(account_id=key_fingerprint(api_key), label=label_for(api_key))

    return ProviderSpec(
        id="anthropic",
        name="Anthropic",
        description="Claude models, billed to your own Anthropic account.",
        auth_type="api_key",
        icon="sparkles",
        logo="/providers/anthropic.svg",
        endpoints=endpoints,
        validate_api_key=validate_api_key,
        needs_base_url=False,
        api_key_hint="Starts with sk-ant-. Create one in the Anthropic Console under API keys.",
    )


PROVIDER = build()
