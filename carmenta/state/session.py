"""The signed-in user, decided on the server for every page load and every event.

Handlers never trust a user id sent by the browser: `verified_user()` re-verifies the
session token the connection carries (the HttpOnly cookie, or Clerk's token) each
time it is called, so a revoked session stops working at its next event.
"""

from __future__ import annotations

import asyncio
from urllib.parse import quote, urlsplit

import reflex as rx

from carmenta.auth import builtin, cookies
from carmenta.auth import service as auth_service
from carmenta.settings import get_settings

SIGN_IN_PATH = "/sign-in"


class SessionState(rx.State):
    auth_checked: bool = False
    signed_in: bool = False
    # Who the last verification in this page named (never sent to the page). A hint
    # only: work may start on it, but nothing is written or shown until an event's own
    # verification names the same person.
    _verified_user_id: str = ""
    user_email: str = ""
    user_name: str = ""
    is_admin: bool = False
    # Clerk mode: the latest session token Clerk's script handed over. Backend-only.
    _clerk_token: str = ""

    def _session_token(self) -> str | None:
        settings = get_settings()
        cookie_header = self.router.headers.cookie
        if settings.uses_clerk:
            return self._clerk_token or cookies.read_cookie(cookie_header, cookies.CLERK_COOKIE)
        return cookies.read_cookie(cookie_header, cookies.session_cookie_name(settings))

    def start_session_check(self) -> asyncio.Task[auth_service.AuthenticatedUser | None]:
        """The database half of `verified_user`, started now to be passed to it later:
        the check then runs while the page draws, not after."""
        return asyncio.create_task(
            auth_service.current_user(settings=get_settings(), token=self._session_token())
        )

    async def verified_user(
        self, started: asyncio.Task[auth_service.AuthenticatedUser | None] | None = None
    ) -> auth_service.AuthenticatedUser | None:
        if started is None:
            started = self.start_session_check()
        user = await started
        seen = {
            "signed_in": user is not None,
            "user_email": (user.email or "") if user else "",
            "user_name": (user.display_name or "") if user else "",
            "is_admin": bool(user and user.is_admin),
            "auth_checked": True,
        }
        # For a signed-in person only what changed is assigned: an assignment sends the
        # value to the page and renders again everything that shows it, on every event.
        # Signed out, the page is always told.
        for name, value in seen.items():
            if user is None or getattr(self, name) != value:
                setattr(self, name, value)
        self._verified_user_id = str(user.user_id) if user else ""
        return user

    @rx.var
    def sign_in_again_path(self) -> str:
        """Sign-in, then back to this page (for a session that ended while it was open)."""
        return f"{SIGN_IN_PATH}?next={quote(self._current_path(), safe='')}"

    def _current_path(self) -> str:
        parts = urlsplit(str(self.router.url))
        path = parts.path or "/"
        return f"{path}?{parts.query}" if parts.query else path

    @rx.event
    async def require_sign_in(self):
        """on_load of every protected page: signed-out visitors go to sign-in."""
        if await self.verified_user() is None:
            return rx.redirect(f"{SIGN_IN_PATH}?next={quote(self._current_path(), safe='')}")
        return None

    @rx.event
    async def leave_if_signed_in(self):
        """on_load of the sign-in and sign-up pages."""
        if await self.verified_user() is not None:
            return rx.redirect(self.return_path())
        return None

    def return_path(self) -> str:
        query = dict(self.router.url.query_parameters) if self.router.url else {}
        return cookies.safe_return_path(query.get("next"))

    @rx.event
    async def set_clerk_token(self, token: str):
        """Clerk mode: Clerk's script reports a fresh session token (or none)."""
        if not get_settings().uses_clerk or not isinstance(token, str):
            return None
        self._clerk_token = token[:8192]
        await self.verified_user()
        return None

    @rx.event
    async def sign_out(self):
        user = await self.verified_user()
        if user is not None and user.provider == builtin.AUTH_PROVIDER and user.session_id:
            await auth_service.sign_out(session_id=user.session_id)
        self.signed_in = False
        self.user_email = self.user_name = ""
        self.is_admin = False
        self._clerk_token = ""
        if get_settings().uses_clerk:
            return rx.call_script(
                "(window.Clerk ? window.Clerk.signOut() : Promise.resolve())"
                f".finally(() => window.location.assign('{SIGN_IN_PATH}'))"
            )
        return rx.call_script(
            "fetch('/auth/sign-out', {method: 'POST', credentials: 'same-origin'})"
            f".finally(() => window.location.assign('{SIGN_IN_PATH}'))"
        )
