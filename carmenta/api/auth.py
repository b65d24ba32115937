"""Cookie routes of built-in accounts.

Sign-in runs over the websocket, which cannot set an HttpOnly cookie. The page then
posts the one-time code it received to `/auth/session`, which answers with the
cookie; `/auth/sign-out` revokes the session and clears it.
"""

from __future__ import annotations

import json
import uuid
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from carmenta import db
from carmenta.auth import builtin, cookies
from carmenta.auth import service as auth_service
from carmenta.settings import Settings, get_settings

MAX_BODY_BYTES = 4096


def _same_origin(request: Request, settings: Settings) -> bool:
    """Cookie-changing requests must come from the app's own pages (login CSRF)."""
    origin = request.headers.get("origin")
    if origin is None:
        # Browsers send Origin on every POST from a page; fall back to Fetch metadata.
        return request.headers.get("sec-fetch-site") == "same-origin"
    expected = urlsplit(settings.app_url)
    actual = urlsplit(origin)
    return (actual.scheme, actual.netloc) == (expected.scheme, expected.netloc) or (
        # Local runs are reached as localhost or 127.0.0.1 interchangeably.
        not settings.is_production
        and actual.scheme == expected.scheme
        and actual.port == expected.port
        and actual.hostname in ("localhost", "127.0.0.1")
        and expected.hostname in ("localhost", "127.0.0.1")
    )


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse(
        {"error": message}, status_code=status, headers={"Cache-Control": "no-store"}
    )


async def create_session_cookie(request: Request) -> Response:
    settings = get_settings()
    if settings.uses_clerk:
        return _error(404, "Not found")
    if not _same_origin(request, settings):
        return _error(403, "This request must come from Carmenta's own pages.")
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        return _error(413, "Request too large.")
    try:
        code = json.loads(body or b"{}").get("code")
    except (ValueError, AttributeError):
        return _error(400, "Malformed request.")
    if not isinstance(code, str):
        return _error(400, "Malformed request.")
    async with db.session_scope() as session:
        redeemed = await builtin.redeem_handoff(session=session, settings=settings, code=code)
    if redeemed is None:
        return _error(400, "This sign-in link has expired. Sign in again.")
    token, auth_session = redeemed
    response = Response(status_code=204, headers={"Cache-Control": "no-store"})
    max_age = int((auth_session.expires_at - builtin._now()).total_seconds())
    response.set_cookie(
        cookies.session_cookie_name(settings),
        token,
        max_age=max(0, max_age),
        path="/",
        secure=settings.app_url.startswith("https://"),
        httponly=True,
        samesite="lax",
    )
    return response


async def sign_out(request: Request) -> Response:
    settings = get_settings()
    if not _same_origin(request, settings):
        return _error(403, "This request must come from Carmenta's own pages.")
    name = cookies.session_cookie_name(settings)
    token = cookies.read_cookie(request.headers.get("cookie"), name)
    if token and not settings.uses_clerk:
        async with db.session_scope() as session:
            user = await auth_service.authenticate(session=session, settings=settings, token=token)
            if user is not None and user.session_id:
                await builtin.sign_out(session=session, session_id=uuid.UUID(user.session_id))
    response = Response(status_code=204, headers={"Cache-Control": "no-store"})
    response.delete_cookie(
        name,
        path="/",
        secure=settings.app_url.startswith("https://"),
        httponly=True,
        samesite="lax",
    )
    return response
