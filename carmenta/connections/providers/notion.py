"""Notion: the pages and databases a person shares with Carmenta in one workspace.

The token endpoint takes the client id and secret as HTTP Basic credentials. Notion
asks for no scopes (access is chosen page by page in its own picker). The token
response names the workspace and its owner, so no API call is needed to know the
account: "{workspace_id}:{owner user id}". Integrations that issue refresh tokens
rotate them; older ones issue tokens that never expire.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from carmenta.connections.providers._tokens import json_object, standard_token_set, text_field
from carmenta.connections.providers.base import AccountIdentity, Endpoints, ProviderSpec, TokenSet

ENDPOINTS = Endpoints(
    authorize_url="https://api.notion.com/v1/oauth/authorize",
    token_url="https://api.notion.com/v1/oauth/token",  # noqa: S106 (a URL)
    revoke_url="https://api.notion.com/v1/oauth/revoke",
    api_base="https://api.notion.com/v1",
)
NOTION_VERSION = "2025-09-03"


def parse_token_response(payload: Mapping[str, Any]) -> TokenSet:
    tokens = standard_token_set(payload)
    owner = payload.get("owner")
    user = owner.get("user") if isinstance(owner, dict) else None
    person = user.get("person") if isinstance(user, dict) else None
    extra = {
        "workspace_id": text_field(payload, "workspace_id"),
        "workspace_name": text_field(payload, "workspace_name"),
        "bot_id": text_field(payload, "bot_id"),
        "owner_user_id": text_field(user, "id") if isinstance(user, dict) else None,
        "owner_name": text_field(user, "name") if isinstance(user, dict) else None,
        "owner_email": text_field(person, "email") if isinstance(person, dict) else None,
    }
    return TokenSet(
        access_token=tokens.access_token,
        refresh_token=tokens.refresh_token,
        expires_at=tokens.expires_at,
        granted_scopes=tokens.granted_scopes,
        extra={key: value for key, value in extra.items() if value},
    )


async def fetch_identity(client: httpx.AsyncClient, tokens: TokenSet) -> AccountIdentity:
    workspace_id = tokens.extra.get("workspace_id")
    # The bot id stands in for the owner of a workspace-level grant.
    owner = tokens.extra.get("owner_user_id") or tokens.extra.get("bot_id")
    if not workspace_id or not owner:
        raise ValueError("the token response names no workspace or owner")
    workspace = tokens.extra.get("workspace_name") or "Notion workspace"
    person = tokens.extra.get("owner_email") or tokens.extra.get("owner_name")
    label = f"{workspace} ({person})" if person else workspace
    return AccountIdentity(account_id=f"{workspace_id}:{owner}", label=label)


def build(
    endpoints: Endpoints = ENDPOINTS,
    *,
    client_id: str | None = None,
    client_secret: str | None = None,
) -> ProviderSpec:
    revoke_url = endpoints.revoke_url

    async def revoke(client: httpx.AsyncClient, token: str) -> None:
        if not revoke_url or not client_id or not client_secret:
            raise ValueError("Notion revocation needs the app's client id and secret")
        response = await client.post(
            revoke_url,
            json={"token": token},
            auth=(client_id, client_secret),
            headers={"Notion-Version": NOTION_VERSION, "Accept": "application/json"},
        )
        # 400/401 for a token Notion no longer knows: nothing left to revoke.
        if response.status_code not in (400, 401):
            json_object(response)

    return ProviderSpec(
        id="notion",
        name="Notion",
        description="Read and write the Notion pages and databases you share.",
        auth_type="oauth",
        icon="notebook",
        logo="/providers/notion.svg",
        endpoints=endpoints,
        scopes=(),
        extra_authorize_params={"owner": "user"},
        token_auth_method="client_secret_basic",  # noqa: S106 (a method name)
        pkce=False,
        supports_refresh=True,
        rotating_refresh_tokens=True,
        parse_token_response=parse_token_response,
        fetch_identity=fetch_identity,
        revoke=revoke if revoke_url else None,
    )


PROVIDER = build()
