"""Dropbox: the files of one Dropbox account.

`token_access_type=offline` asks for a refresh token beside the 4-hour access token;
PKCE (S256) is used. Dropbox's refresh answers carry no new refresh token, so the
old one is kept. Its API is RPC-style: POST with no body for calls without
arguments. The account is Dropbox's `account_id` ("dbid:...").
"""

from __future__ import annotations

import httpx

from carmenta.connections.providers._tokens import bearer, json_object, text_field
from carmenta.connections.providers.base import AccountIdentity, Endpoints, ProviderSpec, TokenSet

ENDPOINTS = Endpoints(
    authorize_url="https://www.dropbox.com/oauth2/authorize",
    token_url="https://api.dropboxapi.com/oauth2/token",  # noqa: S106 (a URL)
    revoke_url="https://api.dropboxapi.com/2/auth/token/revoke",
    api_base="https://api.dropboxapi.com",
)
SCOPES = (
    "account_info.read",
    "files.metadata.read",
    "files.content.read",
    "files.content.write",
)


def build(
    endpoints: Endpoints = ENDPOINTS,
    *,
    client_id: str | None = None,
    client_secret: str | None = None,
) -> ProviderSpec:
    api_base = (endpoints.api_base or ENDPOINTS.api_base or "").rstrip("/")
    revoke_url = endpoints.revoke_url or f"{api_base}/2/auth/token/revoke"

    async def fetch_identity(client: httpx.AsyncClient, tokens: TokenSet) -> AccountIdentity:
        payload = json_object(
            await client.post(
                f"{api_base}/2/users/get_current_account", headers=bearer(tokens.access_token)
            )
        )
        account = text_field(payload, "account_id")
        if not account:
            raise ValueError("get_current_account named no account")
        name = payload.get("name")
        label = (
            text_field(payload, "email")
            or (text_field(name, "display_name") if isinstance(name, dict) else None)
            or account
        )
        return AccountIdentity(account_id=account, label=label)

    async def revoke(client: httpx.AsyncClient, token: str) -> None:
        response = await client.post(revoke_url, headers=bearer(token))
        # 401: the token is already invalid.
        if response.status_code != 401:
            response.raise_for_status()

    return ProviderSpec(
        id="dropbox",
        name="Dropbox",
        description="Find, read and save files in your Dropbox.",
        auth_type="oauth",
        icon="box",
        logo="/providers/dropbox.svg",
        endpoints=endpoints,
        scopes=SCOPES,
        extra_authorize_params={"token_access_type": "offline"},
        token_auth_method="client_secret_post",  # noqa: S106 (a method name)
        pkce=True,
        supports_refresh=True,
        rotating_refresh_tokens=False,
        fetch_identity=fetch_identity,
        revoke=revoke,
    )


PROVIDER = build()
