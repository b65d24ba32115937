"""The cookie routes: one-time codes become HttpOnly cookies, only from our own pages."""

from __future__ import annotations

import uuid

import httpx
import pytest

from carmenta import db
from carmenta.api.routes import build_api
from carmenta.auth import builtin
from carmenta.settings import get_settings, reset_settings_cache

ORIGIN = "http://localhost:3000"


@pytest.fixture
async def client(database_url, monkeypatch, tmp_path):
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.delenv("PUBLIC_URL", raising=False)
    monkeypatch.setenv("PORT", "3000")
    reset_settings_cache()
    await db.dispose_engine()
    transport = httpx.ASGITransport(app=build_api())
    async with httpx.AsyncClient(transport=transport, base_url=ORIGIN) as http:
        yield http
    await db.dispose_engine()
    reset_settings_cache()


async def _handoff_code() -> tuple[str, uuid.UUID]:
    settings = get_settings()
    async with db.session_scope() as session:
        auth_session = await builtin.sign_up(
            session=session,
            settings=settings,
            email=f"route-{uuid.uuid4().hex[:8]}@example.com",
            password="correct horse battery",
        )
        code = await builtin.create_handoff(session=session, session_id=auth_session.id)
    return code, auth_session.id


async def test_a_code_from_our_own_page_sets_an_httponly_cookie_once(client):
    code, _ = await _handoff_code()
    response = await client.post("/auth/session", json={"code": code}, headers={"Origin": ORIGIN})
    assert response.status_code == 204
    set_cookie = response.headers["set-cookie"]
    assert set_cookie.startswith("carmenta_session=")
    assert "HttpOnly" in set_cookie and "SameSite=lax" in set_cookie and "Path=/" in set_cookie
    again = await client.post("/auth/session", json={"code": code}, headers={"Origin": ORIGIN})
    assert again.status_code == 400
    assert "set-cookie" not in again.headers


async def test_a_code_posted_from_another_site_is_refused_and_not_consumed(client):
    code, _ = await _handoff_code()
    hostile = await client.post(
        "/auth/session", json={"code": code}, headers={"Origin": "https://evil.example"}
    )
    assert hostile.status_code == 403
    assert "set-cookie" not in hostile.headers
    no_origin = await client.post("/auth/session", json={"code": code})
    assert no_origin.status_code == 403
    ours = await client.post("/auth/session", json={"code": code}, headers={"Origin": ORIGIN})
    assert ours.status_code == 204


@pytest.mark.parametrize("body", [b"not json", b'{"code": 42}', b"[]", b"x" * 5000])
async def test_malformed_requests_get_clear_errors(client, body):
    response = await client.post(
        "/auth/session",
        content=body,
        headers={"Origin": ORIGIN, "Content-Type": "application/json"},
    )
    assert response.status_code in (400, 413)
    assert "error" in response.json()


async def test_sign_out_revokes_the_session_and_clears_the_cookie(client):
    code, session_id = await _handoff_code()
    created = await client.post("/auth/session", json={"code": code}, headers={"Origin": ORIGIN})
    token = created.cookies["carmenta_session"]
    response = await client.post(
        "/auth/sign-out", headers={"Origin": ORIGIN, "Cookie": f"carmenta_session={token}"}
    )
    assert response.status_code == 204
    assert 'carmenta_session=""' in response.headers["set-cookie"]
    async with db.session_scope() as session:
        revoked = await session.get(builtin.AuthSession, session_id)
        assert revoked.revoked_at is not None
