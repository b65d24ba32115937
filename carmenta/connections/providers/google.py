"""Google: Gmail, Calendar and Drive for one Google account.

`access_type=offline` and `prompt=consent` make Google issue a refresh token on every
authorization (it sends one only at the first consent otherwise). A refresh answer
carries no new refresh token: the old one stays valid and is kept. The account is
the OpenID `sub`; Google's callback names its issuer (`iss`), which must be its own.
"""

from __future__ import annotations

import httpx

from carmenta.connections.providers._tokens import bearer, json_object, text_field
from carmenta.connections.providers.base import AccountIdentity, Endpoints, ProviderSpec, TokenSet

ENDPOINTS = Endpoints(
    authorize_url="https://accounts.google.com/o/oauth2/v2/auth",
    token_url="https://oauth2.googleapis.com/token",  # noqa: S106 (a URL)
    revoke_url="https://oauth2.googleapis.com/revoke",
    api_base="https://openidconnect.googleapis.com",
)
ISSUER = "https://accounts.google.com"

# Full URLs, because Google reports granted scopes that way (never "email").
SCOPES = (
    "openid",
    "https://www.googleapis.com/auth/userinfo.email",
    "https://www.googleapis.com/auth/userinfo.profile",
    "https://www.googleapis.com/auth/gmail.modify",
    "https://www.googleapis.com/auth/calendar",
    "https://www.googleapis.com/auth/drive",
)


def build(
    endpoints: Endpoints = ENDPOINTS,
    *,
    client_id: str | None = None,
    client_secret: str | None = None,
) -> ProviderSpec:
    api_base = (endpoints.api_base or ENDPOINTS.api_base or "").rstrip("/")
    revoke_url = endpoints.revoke_url or ENDPOINTS.revoke_url or ""

    async def fetch_identity(client: httpx.AsyncClient, tokens: TokenSet) -> AccountIdentity:
        payload = json_object(
            await client.get(f"{api_base}/v1/userinfo", headers=bearer(tokens.access_token))
        )
        subject = text_field(payload, "sub")
        if not subject:
            raise ValueError("the userinfo answer has no sub")
        label = text_field(payload, "email") or text_field(payload, "name") or subject
        return AccountIdentity(account_id=subject, label=label)

    async def revoke(client: httpx.AsyncClient, token: str) -> None:
        response = await client.post(revoke_url, data={"token": token})
        # 400 invalid_token: already revoked or expired, which is what was wanted.
        if response.status_code != 400:
            response.raise_for_status()

    return ProviderSpec(
        id="google",
        name="Google",
        description="Gmail, Google Calendar and Google Drive.",
        auth_type="oauth",
        icon="mail",
        logo="/providers/google.svg",
        endpoints=endpoints,
        scopes=SCOPES,
        extra_authorize_params={
            "access_type": "offline",
            "prompt": "consent",
            "include_granted_scopes": "true",
        },
        token_auth_method="client_secret_post",  # noqa: S106 (a method name)
        pkce=True,
        supports_refresh=True,
        rotating_refresh_tokens=False,
        callback_issuer=ISSUER,
        fetch_identity=fetch_identity,
        revoke=revoke,
    )


PROVIDER = build()
