"""The Starlette app mounted in front of Reflex's own routes."""

from __future__ import annotations

from collections.abc import Callable

from starlette.applications import Starlette
from starlette.routing import Mount, Route
from starlette.types import ASGIApp

from carmenta.admin.console import BASE_URL as ADMIN_URL
from carmenta.admin.console import AdminGate
from carmenta.api import auth, connections, provider_webhooks, uploads
from carmenta.api.clerk_webhooks import clerk_webhook
from carmenta.api.file_objects import serve_object
from carmenta.api.health import health
from carmenta.files import service as files_service  # noqa: F401  (account cleanup hook)
from carmenta.observability.metrics import metrics_endpoint
from carmenta.observability.requests import RequestObserver


def build_api() -> Starlette:
    admin_gate = AdminGate()
    return Starlette(
        routes=[
            Route("/health", health, methods=["GET", "HEAD"]),
            Route("/metrics", metrics_endpoint, methods=["GET"]),
            Route("/auth/session", auth.create_session_cookie, methods=["POST"]),
            Route("/auth/sign-out", auth.sign_out, methods=["POST"]),
            Route("/webhooks/clerk", clerk_webhook, methods=["POST"]),
            Route("/webhooks/slack", provider_webhooks.slack_webhook, methods=["POST"]),
            Route("/webhooks/github", provider_webhooks.github_webhook, methods=["POST"]),
            Route("/connections/{provider}/authorize", connections.authorize, methods=["GET"]),
            Route("/connections/{provider}/callback", connections.callback, methods=["GET"]),
            Route("/files/upload", uploads.upload_file, methods=["POST"]),
            Route("/files/{file_id}/replace", uploads.replace_file, methods=["POST"]),
            Route("/files/object/{key:path}", serve_object, methods=["GET", "HEAD"]),
            Route(ADMIN_URL, admin_gate.entry, methods=["GET", "HEAD"]),
            Mount(ADMIN_URL, app=admin_gate, name="admin"),
        ]
    )


def observe_requests(api: Starlette) -> Callable[[ASGIApp], ASGIApp]:
    """Wraps the whole backend: request ids, access logs and metrics by `api`'s routes."""
    routes = list(api.routes)
    return lambda backend: RequestObserver(backend, routes=routes)
