"""Slack, with a user token only: the person's own search, messages, reactions and files.

Scopes are asked for under `user_scope` (never `scope`, which would install a bot),
and `oauth.v2.access` returns the user token inside `authed_user`. The account is
the pair team and user, written "{team_id}:{user_id}": that is how Slack names the
tokens it revokes (`tokens_revoked`) and the workspaces that uninstall the app
(`app_uninstalled`), so webhooks find connections by it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from carmenta.connections.providers._tokens import (
    bearer,
    expires_at_from,
    json_object,
    scopes_from,
    text_field,
)
from carmenta.connections.providers.base import AccountIdentity, Endpoints, ProviderSpec, TokenSet

ENDPOINTS = Endpoints(
    authorize_url="https://slack.com/oauth/v2/authorize",
    token_url="https://slack.com/api/oauth.v2.access",  # noqa: S106 (a URL)
    revoke_url="https://slack.com/api/auth.revoke",
    api_base="https://slack.com/api",
)

USER_SCOPES = (
    "search:read",
    "channels:read",
    "channels:history",
    "groups:read",
    "groups:history",
    "im:read",
    "im:history",
    "mpim:read",
    "mpim:history",
    "chat:write",
    "users:read",
    "users:read.email",
    "reactions:write",
    "files:write",
)


def account_id(team_id: str, user_id: str) -> str:
    return f"{team_id}:{user_id}"


def _team_id(payload: Mapping[str, Any]) -> str | None:
    for key in ("team", "enterprise"):
        value = payload.get(key)
        if isinstance(value, dict) and text_field(value, "id"):
            return text_field(value, "id")
    return text_field(payload, "team_id")


def parse_token_response(payload: Mapping[str, Any]) -> TokenSet:
    """A user token from oauth.v2.access: in `authed_user` on an authorization, at the
    top level (token_type "user") on a refresh of a rotating token. Raises ValueError."""
    if payload.get("ok") is not True:
        raise ValueError("Slack did not answer ok")
    authed_user = payload.get("authed_user")
    if isinstance(authed_user, dict) and authed_user.get("access_token"):
        source: Mapping[str, Any] = authed_user
        user_id = text_field(authed_user, "id")
    elif payload.get("token_type") == "user" and payload.get("access_token"):
        source = payload
        user_id = text_field(payload, "user_id") or (
            text_field(authed_user, "id") if isinstance(authed_user, dict) else None
        )
    else:
        # Only a bot token was granted: not something Carmenta acts with.
        raise ValueError("Slack granted no user token")
    access_token = source["access_token"]
    if not isinstance(access_token, str):
        raise ValueError("Slack's user token is not a string")
    refresh_token = source.get("refresh_token")
    team = payload.get("team")
    return TokenSet(
        access_token=access_token,
        refresh_token=refresh_token if isinstance(refresh_token, str) and refresh_token else None,
        expires_at=expires_at_from(source.get("expires_in")),
        granted_scopes=scopes_from(source.get("scope")),
        extra={
            "team_id": _team_id(payload),
            "team_name": text_field(team, "name") if isinstance(team, dict) else None,
            "user_id": user_id,
        },
    )


def build(
    endpoints: Endpoints = ENDPOINTS,
    *,
    client_id: str | None = None,
    client_secret: str | None = None,
) -> ProviderSpec:
    api_base = (endpoints.api_base or ENDPOINTS.api_base or "").rstrip("/")
    revoke_url = endpoints.revoke_url or f"{api_base}/auth.revoke"

    async def fetch_identity(client: httpx.AsyncClient, tokens: TokenSet) -> AccountIdentity:
        payload = json_object(
            await client.post(f"{api_base}/auth.test", headers=bearer(tokens.access_token))
        )
        if payload.get("ok") is not True:
            raise ValueError("auth.test did not answer ok")
        team_id = text_field(payload, "team_id") or text_field(payload, "enterprise_id")
        user_id = text_field(payload, "user_id")
        if not team_id or not user_id:
            raise ValueError("auth.test named no team or user")
        granted_to = (tokens.extra.get("team_id"), tokens.extra.get("user_id"))
        if granted_to[1] and granted_to != (team_id, user_id):
            raise ValueError("the token belongs to another Slack account than the grant said")
        user = text_field(payload, "user") or user_id
        team = text_field(payload, "team") or tokens.extra.get("team_name") or team_id
        return AccountIdentity(account_id=account_id(team_id, user_id), label=f"{user} ({team})")

    async def revoke(client: httpx.AsyncClient, token: str) -> None:
        payload = json_object(await client.post(revoke_url, headers=bearer(token)))
        # A token Slack already forgot is as revoked as it gets.
        if payload.get("ok") is not True and payload.get("error") not in (
            "invalid_auth",
            "token_revoked",
            "account_inactive",
        ):
            raise ValueError("auth.revoke did not answer ok")

    return ProviderSpec(
        id="slack",
        name="Slack",
        description="Search your workspace, read conversations and send messages as you.",
        auth_type="oauth",
        icon="message-square-text",
        logo="/providers/slack.svg",
        endpoints=endpoints,
        scopes=USER_SCOPES,
        scope_param="user_scope",
        scope_separator=",",
        token_auth_method="client_secret_post",  # noqa: S106 (a method name)
        pkce=False,
        # Only with token rotation turned on for the app; then the refresh token rotates.
        supports_refresh=True,
        rotating_refresh_tokens=True,
        parse_token_response=parse_token_response,
        fetch_identity=fetch_identity,
        revoke=revoke,
    )


PROVIDER = build()
