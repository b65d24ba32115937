"""Connecting a service with OAuth 2.0: the authorization request and its callback.

`begin_authorization` stores a pending authorization (the SHA-256 of a 32-byte random
`state`, the user, the provider, the encrypted PKCE verifier and a same-origin return
path; 10 minutes) and returns the provider's authorization URL. `complete_authorization`
consumes that state in one statement, bound to the provider whose callback received
it and to the signed-in user, then exchanges the code, checks the granted scopes,
reads the account identity and saves the connection.

Every refusal is an `OAuthFlowError` with a short code and a message meant for the
person; neither ever contains a token or the provider's free-text error description.
Refreshing and revoking stored tokens is the connections service's work.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import httpx
from sqlalchemy import delete, func
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from carmenta.auth.cookies import safe_return_path
from carmenta.connections import crypto
from carmenta.connections import service as connections_service
from carmenta.connections.models import OAuthState
from carmenta.connections.providers import registry
from carmenta.connections.providers._tokens import standard_token_set
from carmenta.connections.providers.base import ProviderSpec, TokenSet
from carmenta.errors import CarmentaError
from carmenta.model_fields import utcnow
from carmenta.settings import Settings

logger = logging.getLogger(__name__)

STATE_BYTES = 32
STATE_TTL = timedelta(minutes=10)
DEFAULT_RETURN_PATH = "/connections"
HTTP_TIMEOUT = httpx.Timeout(15.0, connect=5.0)
# A state longer than this was not made here; refused before it is hashed.
MAX_STATE_LENGTH = 256
# OAuth error codes are short ASCII words (RFC 6749 4.1.2.1); anything else is not shown.
_ERROR_CODE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")

STATE_MESSAGE = "This connection request has expired or was already used. Start connecting again."


class OAuthFlowError(CarmentaError):
    """An authorization that was refused: `code` is short and stable, `message` is for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class TokenEndpointError(CarmentaError):
    """The token endpoint refused a request, or could not be reached.

    `error` is the provider's OAuth error code when it gave a well-formed one, else
    "invalid_response" or "unreachable"; never a token or a free-text description.
    """

    def __init__(self, *, provider_name: str, status: int | None, error: str) -> None:
        super().__init__(f"{provider_name} refused the token request ({error})")
        self.status = status
        self.error = error


@dataclass(frozen=True)
class AuthorizationResult:
    provider_id: str
    connection: connections_service.ConnectionView
    created: bool
    return_path: str
    message: str


# -- token responses ---------------------------------------------------------------


def parse_tokens(provider: ProviderSpec, payload: Mapping[str, Any]) -> TokenSet:
    parse = provider.parse_token_response or standard_token_set
    return parse(payload)


def missing_scopes(provider: ProviderSpec, tokens: TokenSet) -> list[str]:
    """Requested scopes the grant lacks; none when the provider does not list them."""
    if tokens.granted_scopes is None:
        return []
    return [scope for scope in provider.scopes if scope not in tokens.granted_scopes]


# -- the token endpoint ----------------------------------------------------------


def _safe_error(value: object) -> str:
    text = str(value) if value is not None else ""
    return text if _ERROR_CODE.fullmatch(text) else "invalid_response"


def _client_auth(
    provider: ProviderSpec, settings: Settings, data: dict[str, str]
) -> httpx.BasicAuth | None:
    client_id, client_secret = registry.client_credentials(provider.id, settings)
    if not client_id or not client_secret:
        raise TokenEndpointError(provider_name=provider.name, status=None, error="not_configured")
    if provider.token_auth_method == "client_secret_basic":  # noqa: S105 (a method name)
        # RFC 6749 2.3.1: both parts are form-encoded before the Basic encoding.
        return httpx.BasicAuth(quote(client_id, safe=""), quote(client_secret, safe=""))
    data["client_id"] = client_id
    data["client_secret"] = client_secret
    return None


async def _token_request(
    *,
    provider: ProviderSpec,
    settings: Settings,
    form: Mapping[str, str],
    client: httpx.AsyncClient,
) -> dict[str, Any]:
    if not provider.endpoints.token_url:
        raise TokenEndpointError(provider_name=provider.name, status=None, error="not_configured")
    data = dict(form)
    auth = _client_auth(provider, settings, data)
    try:
        response = await client.post(
            provider.endpoints.token_url,
            data=data,
            auth=auth if auth is not None else httpx.USE_CLIENT_DEFAULT,
            headers={"Accept": "application/json"},
        )
    except httpx.HTTPError as error:
        logger.warning(
            "the %s token endpoint could not be reached: %s", provider.id, type(error).__name__
        )
        raise TokenEndpointError(
            provider_name=provider.name, status=None, error="unreachable"
        ) from None
    try:
        payload = response.json()
    except ValueError:
        payload = None
    if not isinstance(payload, dict):
        logger.warning(
            "the %s token endpoint answered %d without a JSON object",
            provider.id,
            response.status_code,
        )
        raise TokenEndpointError(
            provider_name=provider.name, status=response.status_code, error="invalid_response"
        )
    # GitHub and Slack report errors with HTTP 200 and an `error` field.
    if response.status_code >= 400 or payload.get("error") or payload.get("ok") is False:
        error = _safe_error(payload.get("error"))
        logger.warning(
            "the %s token endpoint refused a %s request: HTTP %d, %s",
            provider.id,
            form.get("grant_type"),
            response.status_code,
            error,
        )
        raise TokenEndpointError(
            provider_name=provider.name, status=response.status_code, error=error
        )
    return payload


async def exchange_code(
    *,
    provider: ProviderSpec,
    settings: Settings,
    code: str,
    code_verifier: str | None,
    client: httpx.AsyncClient,
) -> TokenSet:
    """Trade an authorization code for tokens. Raises TokenEndpointError or ValueError."""
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri_for(provider, settings),
    }
    if code_verifier:
        form["code_verifier"] = code_verifier
    payload = await _token_request(provider=provider, settings=settings, form=form, client=client)
    return parse_tokens(provider, payload)


async def _revoke_unwanted(provider: ProviderSpec, tokens: TokenSet, client: httpx.AsyncClient):
    """Hand back a grant Carmenta will not keep, rather than leave it valid (best effort).

    Providers' `revoke` takes the access token: Slack, Notion, GitHub and Dropbox revoke
    by it, and Google and RFC 7009 servers accept it too.
    """
    if provider.revoke is None:
        return
    try:
        await provider.revoke(client, tokens.access_token)
    except (httpx.HTTPError, ValueError) as error:
        logger.warning("revoking a refused %s grant failed: %s", provider.id, type(error).__name__)


def new_http_client() -> httpx.AsyncClient:
    # Redirects are not followed: a token never goes anywhere but the declared URL.
    return httpx.AsyncClient(timeout=HTTP_TIMEOUT, follow_redirects=False)


# -- the flow ------------------------------------------------------------------------


def redirect_uri_for(provider: ProviderSpec, settings: Settings) -> str:
    """One callback per provider, on the configured public address (never the Host header)."""
    return f"{settings.app_url}/connections/{provider.id}/callback"


def hash_state(state: str) -> str:
    return hashlib.sha256(state.encode("utf-8")).hexdigest()


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def pkce_pair() -> tuple[str, str]:
    """(code_verifier, S256 code_challenge) as RFC 7636 describes them."""
    verifier = _b64url(secrets.token_bytes(48))
    challenge = _b64url(hashlib.sha256(verifier.encode("ascii")).digest())
    return verifier, challenge


def _with_query(url: str, params: Mapping[str, str]) -> str:
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))


def _require_oauth(provider: ProviderSpec, settings: Settings) -> None:
    endpoints = provider.endpoints
    if (
        provider.auth_type != "oauth"
        or not endpoints.authorize_url
        or not endpoints.token_url
        or not registry.is_configured(provider, settings)
    ):
        raise OAuthFlowError(
            "not_configured", f"{provider.name} is not set up for connecting on this server."
        )


async def begin_authorization(
    *,
    session: AsyncSession,
    owner_id: uuid.UUID,
    provider: ProviderSpec,
    settings: Settings,
    return_path: str | None,
) -> str:
    """Store a pending authorization for this user; return the URL to send them to."""
    _require_oauth(provider, settings)
    client_id, _ = registry.client_credentials(provider.id, settings)
    assert client_id is not None
    state = _b64url(secrets.token_bytes(STATE_BYTES))
    row_id = uuid.uuid4()
    verifier, challenge = pkce_pair() if provider.pkce else (None, None)
    # Expired requests are swept here rather than by a job; the column is indexed.
    await session.exec(delete(OAuthState).where(col(OAuthState.expires_at) <= func.now()))
    session.add(
        OAuthState(
            id=row_id,
            state_hash=hash_state(state),
            owner_id=owner_id,
            provider=provider.id,
            code_verifier=(
                crypto.encrypt_field(
                    verifier, table="oauth_states", row_id=row_id, field="code_verifier"
                )
                if verifier
                else None
            ),
            return_path=safe_return_path(return_path, default=DEFAULT_RETURN_PATH),
            expires_at=utcnow() + STATE_TTL,
        )
    )
    await session.flush()

    params: dict[str, str] = dict(provider.extra_authorize_params)
    if provider.scopes:
        params[provider.scope_param] = provider.scope_separator.join(provider.scopes)
    # The protocol's own parameters are set last, so a declaration cannot replace them.
    params.update(
        {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": redirect_uri_for(provider, settings),
            "state": state,
        }
    )
    if challenge:
        params["code_challenge"] = challenge
        params["code_challenge_method"] = "S256"
    assert provider.endpoints.authorize_url is not None
    return _with_query(provider.endpoints.authorize_url, params)


@dataclass(frozen=True)
class _PendingAuthorization:
    id: uuid.UUID
    owner_id: uuid.UUID
    code_verifier: str | None
    return_path: str


async def _consume_state(
    *, session: AsyncSession, state: str, provider_id: str, owner_id: uuid.UUID
) -> _PendingAuthorization | None:
    # One statement: two callbacks with the same state cannot both get the row.
    statement = (
        delete(OAuthState)
        .where(
            col(OAuthState.state_hash) == hash_state(state),
            col(OAuthState.provider) == provider_id,
            col(OAuthState.owner_id) == owner_id,
            col(OAuthState.expires_at) > func.now(),
        )
        .returning(
            col(OAuthState.id),
            col(OAuthState.owner_id),
            col(OAuthState.code_verifier),
            col(OAuthState.return_path),
        )
    )
    row = (await session.exec(statement)).first()  # type: ignore[call-overload]
    if row is None:
        return None
    return _PendingAuthorization(
        id=row[0], owner_id=row[1], code_verifier=row[2], return_path=row[3]
    )


def _provider_error(provider: ProviderSpec, error: str) -> OAuthFlowError:
    if error == "access_denied":
        return OAuthFlowError(
            "access_denied",
            f"You did not allow Carmenta to use your {provider.name} account, "
            "so nothing was connected.",
        )
    code = _safe_error(error)
    detail = f" ({code})" if code != "invalid_response" else ""
    return OAuthFlowError(
        "provider_error",
        f"{provider.name} could not complete the connection{detail}. Try connecting again.",
    )


async def complete_authorization(
    *,
    session: AsyncSession,
    settings: Settings,
    provider: ProviderSpec,
    owner_id_of_browser: uuid.UUID,
    params: Mapping[str, str],
) -> AuthorizationResult:
    """Finish an authorization from the provider's callback parameters.

    The state is consumed and committed before the provider is called, so it is spent
    even when what follows fails; the connection is then saved in `session`, which
    the caller commits. Raises OAuthFlowError.
    """
    state = params.get("state")
    if not state and params.get("error"):
        # Some servers drop the state from error answers; nothing is changed here, so
        # the error is shown as it is and the pending request simply expires.
        raise _provider_error(provider, params["error"])
    if not state or len(state) > MAX_STATE_LENGTH:
        raise OAuthFlowError("invalid_state", STATE_MESSAGE)
    pending = await _consume_state(
        session=session, state=state, provider_id=provider.id, owner_id=owner_id_of_browser
    )
    await session.commit()
    if pending is None:
        logger.info("an OAuth callback for %s had no matching pending authorization", provider.id)
        raise OAuthFlowError("invalid_state", STATE_MESSAGE)

    issuer = params.get("iss")
    if provider.callback_issuer and issuer is not None and issuer != provider.callback_issuer:
        logger.warning("an OAuth callback for %s named another issuer", provider.id)
        raise OAuthFlowError(
            "issuer_mismatch",
            f"The answer did not come from {provider.name}, so nothing was connected.",
        )
    error = params.get("error")
    if error:
        raise _provider_error(provider, error)
    code = params.get("code")
    if not code:
        raise OAuthFlowError(
            "missing_code", f"{provider.name} sent no authorization code. Try connecting again."
        )
    _require_oauth(provider, settings)

    verifier = (
        crypto.decrypt_field(
            pending.code_verifier, table="oauth_states", row_id=pending.id, field="code_verifier"
        )
        if pending.code_verifier
        else None
    )
    async with new_http_client() as client:
        try:
            tokens = await exchange_code(
                provider=provider,
                settings=settings,
                code=code,
                code_verifier=verifier,
                client=client,
            )
        except TokenEndpointError as refused:
            if refused.error == "unreachable":
                raise OAuthFlowError(
                    "provider_unreachable",
                    f"Carmenta could not reach {provider.name}. Try again in a moment.",
                ) from None
            raise OAuthFlowError(
                "token_exchange",
                f"{provider.name} did not accept this sign-in. Try connecting again.",
            ) from None
        except (ValueError, KeyError, TypeError):
            logger.warning("the %s token response could not be read", provider.id)
            raise OAuthFlowError(
                "token_exchange",
                f"{provider.name} answered in a way Carmenta does not understand.",
            ) from None

        missing = missing_scopes(provider, tokens)
        if missing:
            await _revoke_unwanted(provider, tokens, client)
            raise OAuthFlowError(
                "missing_scope",
                f"{provider.name} did not grant every permission Carmenta asked for "
                f"(missing: {', '.join(missing)}). Connect again and leave them all allowed.",
            )
        if provider.fetch_identity is None:
            raise OAuthFlowError("identity", f"{provider.name} cannot be connected yet.")
        try:
            identity = await provider.fetch_identity(client, tokens)
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as failure:
            logger.warning("reading the %s account failed: %s", provider.id, type(failure).__name__)
            await _revoke_unwanted(provider, tokens, client)
            raise OAuthFlowError(
                "identity",
                f"Carmenta could not tell which {provider.name} account this is. Try again.",
            ) from None

    view, created = await connections_service.save_oauth_connection(
        session=session,
        owner_id=pending.owner_id,
        provider=provider,
        identity=identity,
        tokens=tokens,
        requested_scopes=list(provider.scopes),
        source="user",
    )
    logger.info(
        "user %s %s %s account %s",
        pending.owner_id,
        "connected" if created else "reconnected",
        provider.id,
        identity.account_id,
    )
    verb = "Connected" if created else "Reconnected"
    return AuthorizationResult(
        provider_id=provider.id,
        connection=view,
        created=created,
        return_path=safe_return_path(pending.return_path, default=DEFAULT_RETURN_PATH),
        message=f"{verb} {provider.name}: {identity.label}.",
    )
