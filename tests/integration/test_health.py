"""GET /health: 200 with the database's status, 503 when it cannot be reached."""

from __future__ import annotations

import httpx

from carmenta import db
from carmenta.api.routes import build_api
from carmenta.settings import reset_settings_cache


async def _get_health() -> httpx.Response:
    transport = httpx.ASGITransport(app=build_api())
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.get("/health")


async def test_health_is_ok_when_the_database_answers(database_url):
    await db.dispose_engine()
    response = await _get_health()
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["database"]["status"] == "ok"
    assert body["database"]["latency_ms"] >= 0
    assert response.headers["cache-control"] == "no-store"
    await db.dispose_engine()


async def test_health_is_503_when_the_database_is_unreachable(database_url, monkeypatch):
    await db.dispose_engine()
    monkeypatch.setenv("DATABASE_URL", "postgresql://carmenta:hunter2@127.0.0.1:9/nowhere")
    reset_settings_cache()
    try:
        response = await _get_health()
    finally:
        await db.dispose_engine()
        monkeypatch.setenv("DATABASE_URL", database_url)
        reset_settings_cache()
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["database"]["status"] == "error"
    assert "unreachable" in body["database"]["error"]
    assert "hunter2" not in response.text
