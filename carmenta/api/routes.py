"""The Starlette app mounted in front of Reflex's own routes."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.routing import Route

from carmenta.api.health import health


def build_api() -> Starlette:
    return Starlette(routes=[Route("/health", health, methods=["GET", "HEAD"])])
