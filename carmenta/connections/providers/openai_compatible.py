"""Any API that speaks OpenAI's protocol (OpenAI itself, OpenRouter, a local server...).

It takes a key and the API's base URL (e.g. https://api.openai.com/v1); the key is
checked by listing models (GET {base_url}/models with a Bearer key). The account is
the host plus a fingerprint of the key; the label shows the host and the key's last
four characters. Which base URLs are acceptable is decided before this is called.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx

from carmenta.connections.providers._tokens import json_object, key_fingerprint, key_tail
from carmenta.connections.providers.base import AccountIdentity, Endpoints, ProviderSpec


def host_of(base_url: str) -> str:
    parts = urlsplit(base_url)
    return parts.netloc.lower() or "API"


def label_for(api_key: str, base_url: str) -> str:
    tail = key_tail(api_key)
    return f"{host_of(base_url)} key …{tail}" if tail else f"{host_of(base_url)} key"


async def validate_api_key(
    client: httpx.AsyncClient, api_key: str, base_url: str | None
) -> AccountIdentity:
    if not base_url:
        raise ValueError("an OpenAI-compatible API needs its base URL")
    payload = json_object(
        await client.get(
            f"{base_url.rstrip('/')}/models",
            headers={"Authorization": f"Bearer {api_key}", "Accept": "application/json"},
        )
    )
    if not isinstance(payload.get("data"), list):
        raise ValueError("the answer is not a list of models")
    return AccountIdentity(
        account_id=f"{host_of(base_url)}:{key_fingerprint(api_key)}",
        label=label_for(api_key, base_url),
    )


PROVIDER = ProviderSpec(
    id="openai_compatible",
    name="OpenAI-compatible API",
    description="OpenAI, or any service or local server with the same API.",
    auth_type="api_key",
    icon="bot",
    logo="/providers/openai_compatible.svg",
    endpoints=Endpoints(),
    validate_api_key=validate_api_key,
    needs_base_url=True,
    api_key_hint="Your API key and the API's base URL, such as https://api.openai.com/v1.",
)
