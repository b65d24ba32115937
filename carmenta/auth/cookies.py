"""The session cookie and the return path after sign-in."""

from __future__ import annotations

from http.cookies import CookieError, SimpleCookie
from urllib.parse import urlsplit

from carmenta.settings import Settings

# Clerk's own session cookie (a short-lived token its script refreshes).
CLERK_COOKIE = "__session"


def session_cookie_name(settings: Settings) -> str:
    # The __Host- prefix pins the cookie to this exact origin, but browsers accept it
    # only over https; plain-http local runs use the bare name.
    secure = settings.app_url.startswith("https://")
    return "__Host-carmenta_session" if secure else "carmenta_session"


def read_cookie(cookie_header: str | None, name: str) -> str | None:
    if not cookie_header:
        return None
    jar = SimpleCookie()
    try:
        jar.load(cookie_header)
    except CookieError:
        return None
    morsel = jar.get(name)
    return morsel.value if morsel is not None and morsel.value else None


def safe_return_path(candidate: str | None, *, default: str = "/") -> str:
    """A same-origin path to return to; anything else becomes `default`."""
    if not candidate or len(candidate) > 2000:
        return default
    if not candidate.startswith("/") or candidate.startswith("//") or "\\" in candidate:
        return default
    if any(ord(char) < 0x20 for char in candidate):
        return default
    parts = urlsplit(candidate)
    if parts.scheme or parts.netloc:
        return default
    if parts.path.startswith(("/sign-in", "/sign-up", "/auth/")):
        return default
    return candidate
