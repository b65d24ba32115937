"""What the admin console tests share: signed-in admins and non-admins, a client."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

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
