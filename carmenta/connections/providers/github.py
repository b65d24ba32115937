"""GitHub, through a GitHub App's user tokens (the app's permissions, acting as the user).

User tokens last 8 hours; each refresh returns a new refresh token and ends the old
one. GitHub Apps take no scopes (permissions are set on the app) and accept PKCE.
The token endpoint answers errors with HTTP 200 and an `error` field. The account is
the numeric user id, which is also what the `github_app_authorization` webhook
names. For GitHub Enterprise Server, point `authorize_url`, `token_url` and
`api_base` (https://HOST/api/v3) at it with OAUTH_ENDPOINT_OVERRIDES.
"""

from __future__ import annotations

import httpx

from carmenta.connections.providers._tokens import json_object, text_field
from carmenta.connections.providers.base import AccountIdentity, Endpoints, ProviderSpec, TokenSet

ENDPOINTS = Endpoints(
    authorize_url="https://github.com/login/oauth/authorize",
    token_url="https://github.com/login/oauth/access_token",  # noqa: S106 (a URL)
    revoke_url=None,
    api_base="https://api.github.com",
)
API_HEADERS = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}


def build(
    endpoints: Endpoints = ENDPOINTS,
    *,
    client_id: str | None = None,
    client_secret: str | None = None,
) -> ProviderSpec:
    api_base = (endpoints.api_base or ENDPOINTS.api_base or "").rstrip("/")

    async def fetch_identity(client: httpx.AsyncClient, tokens: TokenSet) -> AccountIdentity:
        payload = json_object(
            await client.get(
                f"{api_base}/user",
                headers={**API_HEADERS, "Authorization": f"Bearer {tokens.access_token}"},
            )
        )
        user_id = text_field(payload, "id")
        if not user_id or not user_id.isdigit():
            raise ValueError("the /user answer has no numeric id")
        return AccountIdentity(account_id=user_id, label=text_field(payload, "login") or user_id)

    async def revoke(client: httpx.AsyncClient, token: str) -> None:
        if not client_id or not client_secret:
            raise ValueError("GitHub revocation needs the app's client id and secret")
        # Deleting the grant ends every token of this user for the app, as a disconnect should.
        response = await client.request(
            "DELETE",
            f"{api_base}/applications/{client_id}/grant",
            json={"access_token": token},
            auth=(client_id, client_secret),
            headers=API_HEADERS,
        )
        # 404/422: the grant or token is already gone.
        if response.status_code not in (404, 422):
            response.raise_for_status()

    return ProviderSpec(
        id="github",
        name="GitHub",
        description="Repositories, issues and pull requests you can reach.",
        auth_type="oauth",
        icon="git-pull-request",
        logo="/providers/github.svg",
        endpoints=endpoints,
        scopes=(),
        token_auth_method="client_secret_post",  # noqa: S106 (a method name)
        pkce=True,
        supports_refresh=True,
        rotating_refresh_tokens=True,
        fetch_identity=fetch_identity,
        revoke=revoke,
    )


PROVIDER = build()
