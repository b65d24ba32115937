"""The Starlette app mounted in front of Reflex's own routes."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.routing import Route

from carmenta.api import auth
from carmenta.api.clerk_webhooks import clerk_webhook
from carmenta.api.health import health


def build_api() -> Starlette:
    return Starlette(
        routes=[
            Route("/health", health, methods=["GET", "HEAD"]),
            Route("/auth/session", auth.create_session_cookie, methods=["POST"]),
            Route("/auth/sign-out", auth.sign_out, methods=["POST"]),
            Route("/webhooks/clerk", clerk_webhook, methods=["POST"]),
        ]
    )
