"""What the admin console tests share: signed-in admins and non-admins, a client."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from html.parser import HTMLParser

import httpx

from carmenta import db
from carmenta.auth import builtin
from carmenta.settings import get_settings

ORIGIN = "http://localhost:3000"
ADMIN_EMAIL = "root-admin@example.com"


@dataclass(frozen=True)
class SignedIn:
    user_id: uuid.UUID
    email: str
    token: str

    @property
    def cookie(self) -> str:
        return f"carmenta_session={self.token}"


async def sign_up(email: str | None = None) -> SignedIn:
    settings = get_settings()
    email = email or f"person-{uuid.uuid4().hex[:10]}@example.com"
    async with db.session_scope() as session:
        auth_session = await builtin.sign_up(
            session=session,
            settings=settings,
            email=email,
            password="correct horse battery",
        )
        code = await builtin.create_handoff(session=session, session_id=auth_session.id)
        redeemed = await builtin.redeem_handoff(session=session, settings=settings, code=code)
    assert redeemed is not None
    token, auth_session = redeemed
    return SignedIn(user_id=auth_session.user_id, email=email, token=token)


def csrf_token(page: str) -> str:
    found = re.search(r'name="csrftoken" value="([^"]+)"', page)
    assert found, "the form carries no CSRF token"
    return found.group(1)


async def get(client: httpx.AsyncClient, user: SignedIn | None, url: str) -> httpx.Response:
    headers = {"Cookie": user.cookie} if user else {}
    return await client.get(url, headers=headers)


class _FormReader(HTMLParser):
    """The fields a browser would submit from the page's main form."""

    def __init__(self) -> None:
        super().__init__()
        self.values: dict[str, str] = {}
        self._textarea: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        name = attributes.get("name")
        if not name or name.startswith("_") or name == "viewport":
            return
        if tag == "input":
            kind = attributes.get("type", "text")
            if kind == "checkbox":
                if "checked" in attributes:
                    self.values[name] = attributes.get("value") or "on"
            elif kind not in ("submit", "button", "file"):
                self.values[name] = attributes.get("value") or ""
        elif tag == "textarea":
            self._textarea = name
            self.values[name] = ""

    def handle_data(self, data: str) -> None:
        if self._textarea is not None:
            self.values[self._textarea] += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "textarea":
            self._textarea = None


def form_values(page: str) -> dict[str, str]:
    reader = _FormReader()
    reader.feed(page)
    return reader.values
