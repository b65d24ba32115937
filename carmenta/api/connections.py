"""GET /connections/{provider}/authorize and GET /connections/{provider}/callback.

authorize (`?return=/same-origin/path`, default /connections): signed-out visitors
get 303 to /sign-in?next=<this address>; an unknown provider, an API-key provider or
one the operator has not set up gets 404; otherwise 303 to the provider's consent page.

callback: only for the signed-in browser that started the authorization. Success:
303 to the stored return path with `connected=<provider id>` added. Anything else:
303 to /connections?error=<code>&message=<text for people>, where code is one of
not_signed_in, invalid_state, issuer_mismatch, access_denied, provider_error,
missing_code, token_exchange, provider_unreachable, missing_scope, identity,
duplicate_parameter, not_configured or server_error (not_signed_in, invalid_state and
duplicate_parameter leave a pending authorization as it was). The message is Carmenta's own
wording (a provider's error code at most, never its free-text description).

Every answer is `Cache-Control: no-store` and `Referrer-Policy: no-referrer`, so
neither the state nor the code is kept or passed on.
"""

from __future__ import annotations

import logging
from html import escape
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from carmenta import db
from carmenta.api.request_user import authenticated_user
from carmenta.auth.cookies import safe_return_path
from carmenta.connections import oauth
from carmenta.connections.providers import registry
from carmenta.connections.providers.base import ProviderSpec
from carmenta.errors import CarmentaError
from carmenta.settings import get_settings

logger = logging.getLogger(__name__)

CONNECTIONS_PATH = "/connections"
SIGN_IN_PATH = "/sign-in"
NO_STORE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
# The callback parameters a provider may send; each must appear at most once.
CALLBACK_PARAMETERS = ("state", "code", "error", "iss")


def _redirect(location: str) -> RedirectResponse:
    return RedirectResponse(location, status_code=303, headers=NO_STORE)


def _failure(code: str, message: str) -> RedirectResponse:
    query = urlencode({"error": code, "message": message})
    return _redirect(f"{CONNECTIONS_PATH}?{query}")


def _not_found(request: Request, message: str) -> Response:
    if "text/html" in request.headers.get("accept", ""):
        body = (
            "<!doctype html><meta charset=utf-8><title>Not found</title>"
            f"<p>{escape(message)}</p><p><a href={CONNECTIONS_PATH}>Back to Connections</a></p>"
        )
        return HTMLResponse(body, status_code=404, headers=NO_STORE)
    return JSONResponse({"error": message}, status_code=404, headers=NO_STORE)


def _with_connected(path: str, provider_id: str) -> str:
    parts = urlsplit(path)
    query = parse_qsl(parts.query, keep_blank_values=True)
    query = [(name, value) for name, value in query if name not in ("connected", "error")]
    query.append(("connected", provider_id))
    return urlunsplit(("", "", parts.path, urlencode(query), parts.fragment))


def _provider_or_none(provider_id: str) -> ProviderSpec | None:
    try:
        return registry.get_provider(provider_id, get_settings())
    except registry.UnknownProvider:
        return None


def _head_not_allowed() -> Response:
    # Starlette answers HEAD with the GET handler; here that would start or spend a flow.
    return Response(status_code=405, headers={**NO_STORE, "Allow": "GET"})


async def authorize(request: Request) -> Response:
    if request.method == "HEAD":
        return _head_not_allowed()
    settings = get_settings()
    provider_id = request.path_params["provider"]
    user = await authenticated_user(request, settings=settings)
    if user is None:
        here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return _redirect(f"{SIGN_IN_PATH}?next={quote(here, safe='')}")

    provider = _provider_or_none(provider_id)
    if provider is None:
        return _not_found(request, "Carmenta does not know this service.")
    if provider.auth_type != "oauth":
        return _not_found(request, f"{provider.name} connects with an API key, not a sign-in.")
    if not registry.is_configured(provider, settings):
        return _not_found(request, f"{provider.name} is not set up on this server.")

    try:
        provider = await registry.load_provider(provider_id, settings)
    except CarmentaError as error:
        logger.warning("%s could not be prepared for an authorization: %s", provider_id, error)
        return _failure(
            "provider_unreachable",
            f"Carmenta could not reach {provider.name}. Try again in a moment.",
        )
    return_path = safe_return_path(request.query_params.get("return"), default=CONNECTIONS_PATH)
    try:
        async with db.session_scope() as session:
            location = await oauth.begin_authorization(
                session=session,
                owner_id=user.user_id,
                provider=provider,
                settings=settings,
                return_path=return_path,
            )
    except oauth.OAuthFlowError as refused:
        return _failure(refused.code, refused.message)
    return _redirect(location)


async def callback(request: Request) -> Response:
    if request.method == "HEAD":
        return _head_not_allowed()
    settings = get_settings()
    provider_id = request.path_params["provider"]
    provider = _provider_or_none(provider_id)
    if provider is None or provider.auth_type != "oauth":
        return _not_found(request, "Carmenta does not know this service.")
    user = await authenticated_user(request, settings=settings)
    if user is None:
        # The state stays unspent; it simply expires.
        return _failure("not_signed_in", "Sign in to Carmenta, then connect again.")
    for name in CALLBACK_PARAMETERS:
        if len(request.query_params.getlist(name)) > 1:
            return _failure(
                "duplicate_parameter", "The answer from the service was malformed. Try again."
            )
    params = {
        name: request.query_params[name]
        for name in CALLBACK_PARAMETERS
        if name in request.query_params
    }

    try:
        provider = await registry.load_provider(provider_id, settings)
    except CarmentaError as error:
        logger.warning("%s could not be prepared for a callback: %s", provider_id, error)
        return _failure(
            "provider_unreachable",
            f"Carmenta could not reach {provider.name}. Try again in a moment.",
        )
    try:
        async with db.session_scope() as session:
            result = await oauth.complete_authorization(
                session=session,
                settings=settings,
                provider=provider,
                owner_id_of_browser=user.user_id,
                params=params,
            )
    except oauth.OAuthFlowError as refused:
        logger.info(
            "connecting %s for user %s refused: %s", provider_id, user.user_id, refused.code
        )
        return _failure(refused.code, refused.message)
    except Exception:
        logger.exception("connecting %s for user %s failed", provider_id, user.user_id)
        return _failure(
            "server_error", f"Connecting {provider.name} failed on our side. Try again."
        )
    return _redirect(_with_connected(result.return_path, result.provider_id))
