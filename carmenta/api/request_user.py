"""Who sent this HTTP request: the signed-in user behind its cookie or bearer token.

Routes outside Reflex read the same credentials the pages do: the built-in session
cookie, Clerk's `__session` cookie, or an `Authorization: Bearer` token.
"""

from __future__ import annotations

from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.requests import Request

from carmenta.auth import cookies
from carmenta.auth import service as auth_service
from carmenta.settings import Settings


def request_token(request: Request, settings: Settings) -> str | None:
    """The raw session token the request carries, unverified."""
    authorization = request.headers.get("authorization")
    if authorization and authorization[:7].lower() == "bearer ":
        return authorization[7:].strip() or None
    name = cookies.CLERK_COOKIE if settings.uses_clerk else cookies.session_cookie_name(settings)
    return cookies.read_cookie(request.headers.get("cookie"), name)


async def authenticated_user(
    request: Request, *, settings: Settings, session: AsyncSession | None = None
) -> auth_service.AuthenticatedUser | None:
    """The verified user, or None; in `session` when given, else in a transaction of its own."""
    token = request_token(request, settings)
    if session is None:
        return await auth_service.current_user(settings=settings, token=token)
    return await auth_service.authenticate(session=session, settings=settings, token=token)
