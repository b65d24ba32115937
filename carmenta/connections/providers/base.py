"""What a provider module declares. Adding a provider is adding one such module.

A provider is data (endpoints, scopes, parameter names, how the token endpoint
authenticates, PKCE, refresh and revoke support) plus the few calls it needs
(reading the account identity, revoking, checking an API key).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import httpx

AuthType = Literal["oauth", "api_key"]
TokenAuthMethod = Literal["client_secret_post", "client_secret_basic"]


@dataclass(frozen=True)
class TokenSet:
    """What a token endpoint granted, read from the provider's own response shape."""

    access_token: str
    refresh_token: str | None = None
    expires_at: datetime | None = None
    # None when the provider does not say (then the requested scopes are assumed).
    granted_scopes: frozenset[str] | None = None
    # Provider-specific values worth keeping (Slack team id, Notion workspace...).
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AccountIdentity:
    account_id: str
    label: str


@dataclass(frozen=True)
class Endpoints:
    authorize_url: str | None = None
    token_url: str | None = None
    revoke_url: str | None = None
    api_base: str | None = None


@dataclass(frozen=True)
class ProviderSpec:
    id: str
    name: str
    description: str
    auth_type: AuthType
    # Lucide icon name shown on the Connections page when there is no logo.
    icon: str = "plug"
    # The provider's logo, an asset path such as "/providers/slack.svg".
    logo: str | None = None
    endpoints: Endpoints = Endpoints()
    scopes: tuple[str, ...] = ()
    # Slack asks for user scopes under `user_scope`, never `scope`.
    scope_param: str = "scope"
    scope_separator: str = " "
    extra_authorize_params: Mapping[str, str] = field(default_factory=dict)
    token_auth_method: TokenAuthMethod = "client_secret_post"  # noqa: S105 (a method name)
    pkce: bool = False
    supports_refresh: bool = False
    # The refresh token changes on every refresh (GitHub, Dropbox rotate; Google does not).
    rotating_refresh_tokens: bool = False
    # Expected `iss` on the callback, where the provider sends one (mix-up defence).
    callback_issuer: str | None = None
    # Reads the provider's token response (e.g. Slack's `authed_user`).
    parse_token_response: Callable[[Mapping[str, Any]], TokenSet] | None = None
    # Reads who the account is, with a fresh access token.
    fetch_identity: Callable[[httpx.AsyncClient, TokenSet], Awaitable[AccountIdentity]] | None = (
        None
    )
    # Revokes a token at the provider; None when the provider has no revocation endpoint.
    revoke: Callable[[httpx.AsyncClient, str], Awaitable[None]] | None = None
    # API-key providers: checks a key (and base URL) against the provider before saving.
    validate_api_key: (
        Callable[[httpx.AsyncClient, str, str | None], Awaitable[AccountIdentity]] | None
    ) = None
    # API-key providers that take a base URL (OpenAI-compatible endpoints).
    needs_base_url: bool = False
    api_key_hint: str = ""
