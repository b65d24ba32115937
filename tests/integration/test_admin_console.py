"""The admin console at /admin, over HTTP against the built API and a real PostgreSQL."""

from __future__ import annotations

import uuid

import httpx
import pytest
from sqlalchemy import text

from carmenta import db
from carmenta.api.routes import build_api
from carmenta.conversations import service as conversations_service
from carmenta.settings import reset_settings_cache
from tests.integration.admin_support import ADMIN_EMAIL, ORIGIN, SignedIn, csrf_token, sign_up


@pytest.fixture
async def api(database_url, monkeypatch, tmp_path):
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.delenv("PUBLIC_URL", raising=False)
    monkeypatch.setenv("PORT", "3000")
    monkeypatch.setenv("ADMIN_EMAILS", ADMIN_EMAIL)
    reset_settings_cache()
    await db.dispose_engine()
    yield build_api()
    await db.dispose_engine()
    reset_settings_cache()


def client_for(app, user: SignedIn | None) -> httpx.AsyncClient:
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url=ORIGIN, timeout=60
    )
    if user is not None:
        client.cookies.set("carmenta_session", user.token)
    return client


@pytest.fixture
async def admin(api):
    async with db.session_scope() as session:
        await session.execute(
            text("delete from users where email = :email"), {"email": ADMIN_EMAIL}
        )
    return await sign_up(ADMIN_EMAIL)


async def test_probe(api, admin):
    async with client_for(api, admin) as client:
        for url in ["/admin", "/admin/", "/admin/user/list", "/admin/conversation/list", "/admin/storage", "/admin/failed-jobs/list", "/admin/audit-log/list", "/admin/connection-reconnect/list"]:
            response = await client.get(url)
            print(url, response.status_code, response.headers.get("location"), response.text[:300] if response.status_code >= 400 else len(response.text))
        response = await client.get(f"/admin/user/detail?pk={admin.user_id}")
        print(response.status_code); open("/tmp/admin-scratch/detail.html","w").write(response.text)
        response = await client.get(f"/admin/user/edit?pk={admin.user_id}")
        print(response.status_code); open("/tmp/admin-scratch/edit.html","w").write(response.text)
        response = await client.get(f"/admin/user/list?q={ADMIN_EMAIL}")
        open("/tmp/admin-scratch/list.html","w").write(response.text)
