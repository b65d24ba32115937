from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

from carmenta.health import service as health_service


async def health(request: Request) -> JSONResponse:
    database = await health_service.check_database()
    body = {
        "status": "ok" if database.ok else "unavailable",
        "database": {
            "status": "ok" if database.ok else "error",
            "latency_ms": database.latency_ms,
            "error": database.error,
        },
    }
    return JSONResponse(
        body,
        status_code=200 if database.ok else 503,
        headers={"Cache-Control": "no-store"},
    )
