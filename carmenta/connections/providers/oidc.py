"""Any OpenID Connect provider (a company's own sign-in server), from its issuer URL.

Configured by OIDC_ISSUER, OIDC_CLIENT_ID, OIDC_CLIENT_SECRET, OIDC_NAME and
OIDC_SCOPES. The discovery document is fetched once per issuer and kept for the life
of the process; its `issuer` must be the configured one. PKCE S256 is always used,
refresh tokens are used when issued, revocation only where the document advertises
an endpoint. The account is the userinfo `sub`, labelled by email or name.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import httpx

from carmenta.connections.providers._tokens import (
    bearer,
    json_object,
    standard_token_set,
    text_field,
)
from carmenta.connections.providers.base import AccountIdentity, Endpoints, ProviderSpec, TokenSet
from carmenta.errors import CarmentaError
from carmenta.settings import Settings

logger = logging.getLogger(__name__)

PROVIDER_ID = "oidc"
OFFLINE_ACCESS = "offline_access"
DISCOVERY_TIMEOUT = httpx.Timeout(10.0, connect=5.0)


class DiscoveryError(CarmentaError):
    """The issuer's discovery document could not be fetched or is not usable."""


@dataclasses.dataclass(frozen=True)
class Discovery:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    userinfo_endpoint: str
    revocation_endpoint: str | None
    token_auth_methods: tuple[str, ...]


_discovered: dict[str, Discovery] = {}


def _normalized(issuer: str) -> str:
    return issuer.strip().rstrip("/")


def is_configured(settings: Settings) -> bool:
    return bool(settings.oidc_issuer and settings.oidc_client_id and settings.oidc_client_secret)


def requested_scopes(settings: Settings) -> tuple[str, ...]:
    scopes = tuple(dict.fromkeys(settings.oidc_scopes.split()))
    # Without `openid` there is no userinfo, so no way to tell who the account is.
    return scopes if "openid" in scopes else ("openid", *scopes)


def _endpoint(document: Mapping[str, Any], name: str, *, settings: Settings) -> str | None:
    value = document.get(name)
    if value is None:
        return None
    parts = urlsplit(value) if isinstance(value, str) else None
    allowed = ("https",) if settings.is_production else ("https", "http")
    if parts is None or parts.scheme not in allowed or not parts.netloc:
        raise DiscoveryError(f"the discovery document's {name} is not a usable URL")
    return value


def parse_discovery(document: Mapping[str, Any], *, settings: Settings) -> Discovery:
    issuer = _normalized(settings.oidc_issuer or "")
    if _normalized(str(document.get("issuer", ""))) != issuer:
        raise DiscoveryError("the discovery document names a different issuer than OIDC_ISSUER")
    required = {}
    for name in ("authorization_endpoint", "token_endpoint", "userinfo_endpoint"):
        value = _endpoint(document, name, settings=settings)
        if value is None:
            raise DiscoveryError(f"the discovery document has no {name}")
        required[name] = value
    methods = document.get("token_endpoint_auth_methods_supported")
    return Discovery(
        issuer=str(document["issuer"]),
        authorization_endpoint=required["authorization_endpoint"],
        token_endpoint=required["token_endpoint"],
        userinfo_endpoint=required["userinfo_endpoint"],
        revocation_endpoint=_endpoint(document, "revocation_endpoint", settings=settings),
        token_auth_methods=tuple(methods) if isinstance(methods, list) else (),
    )


async def prepare(settings: Settings) -> None:
    """Fetch the discovery document once. Raises DiscoveryError."""
    issuer = _normalized(settings.oidc_issuer or "")
    if not issuer or issuer in _discovered:
        return
    url = f"{issuer}/.well-known/openid-configuration"
    try:
        async with httpx.AsyncClient(timeout=DISCOVERY_TIMEOUT, follow_redirects=False) as client:
            document = json_object(await client.get(url, headers={"Accept": "application/json"}))
    except (httpx.HTTPError, ValueError) as error:
        logger.warning("OIDC discovery at %s failed: %s", url, type(error).__name__)
        raise DiscoveryError(
            f"the OpenID Connect discovery document at {url} is unreachable"
        ) from None
    _discovered[issuer] = parse_discovery(document, settings=settings)
    logger.info("OIDC discovery for %s done", issuer)


def forget_discovery() -> None:
    """Drop cached discovery documents (the issuer's configuration changed)."""
    _discovered.clear()


def _parse_tokens_for(scopes: tuple[str, ...]):
    def parse_token_response(payload: Mapping[str, Any]) -> TokenSet:
        tokens = standard_token_set(payload)
        granted = tokens.granted_scopes
        # offline_access asks for a refresh token; many servers grant it without listing it.
        if granted is not None and OFFLINE_ACCESS in scopes and tokens.refresh_token:
            tokens = dataclasses.replace(tokens, granted_scopes=granted | {OFFLINE_ACCESS})
        return tokens

    return parse_token_response


def build_provider(settings: Settings, overrides: Mapping[str, str] | None = None) -> ProviderSpec:
    """The provider as configured now; its endpoints are known once `prepare` has run."""
    overrides = dict(overrides or {})
    issuer = _normalized(settings.oidc_issuer or "")
    found = _discovered.get(issuer)
    endpoints = Endpoints(
        authorize_url=overrides.get("authorize_url") or (found and found.authorization_endpoint),
        token_url=overrides.get("token_url") or (found and found.token_endpoint),
        revoke_url=overrides.get("revoke_url") or (found and found.revocation_endpoint),
        api_base=overrides.get("api_base"),
    )
    if endpoints.api_base:
        userinfo_url: str | None = f"{endpoints.api_base}/userinfo"
    else:
        userinfo_url = found.userinfo_endpoint if found else None
    methods = found.token_auth_methods if found else ()
    # The discovery default is client_secret_basic (OpenID Connect Discovery 1.0, 3).
    auth_method = (
        "client_secret_post"
        if methods and "client_secret_basic" not in methods and "client_secret_post" in methods
        else "client_secret_basic"
    )
    client_id, client_secret = settings.oidc_client_id, settings.oidc_client_secret
    scopes = requested_scopes(settings)

    async def fetch_identity(client: httpx.AsyncClient, tokens: TokenSet) -> AccountIdentity:
        if not userinfo_url:
            raise ValueError("the provider has no userinfo endpoint")
        payload = json_object(await client.get(userinfo_url, headers=bearer(tokens.access_token)))
        subject = text_field(payload, "sub")
        if not subject:
            raise ValueError("the userinfo answer has no sub")
        label = (
            text_field(payload, "email")
            or text_field(payload, "name")
            or text_field(payload, "preferred_username")
            or subject
        )
        return AccountIdentity(account_id=subject, label=label)

    async def revoke(client: httpx.AsyncClient, token: str) -> None:
        assert endpoints.revoke_url is not None
        data = {"token": token}
        auth = None
        if auth_method == "client_secret_basic":
            auth = (client_id or "", client_secret or "")
        else:
            data.update(client_id=client_id or "", client_secret=client_secret or "")
        response = await client.post(
            endpoints.revoke_url, data=data, auth=auth or httpx.USE_CLIENT_DEFAULT
        )
        response.raise_for_status()

    return ProviderSpec(
        id=PROVIDER_ID,
        name=settings.oidc_name,
        description="Your organization's OpenID Connect account.",
        auth_type="oauth",
        icon="key-round",
        endpoints=endpoints,
        scopes=scopes,
        token_auth_method=auth_method,
        pkce=True,
        supports_refresh=True,
        rotating_refresh_tokens=False,
        callback_issuer=found.issuer if found else None,
        parse_token_response=_parse_tokens_for(scopes),
        fetch_identity=fetch_identity,
        revoke=revoke if endpoints.revoke_url else None,
    )
