"""Every HTTP request: an id (X-Request-ID in and out), a log line, and metrics.

Wraps the whole backend (machine routes and Reflex's own) as plain ASGI, so streamed
responses are timed to their last byte. The user id is added by whichever route
verifies the caller (`carmenta.api.request_user`); emails and tokens are never logged,
and query values are logged only when their names say they are harmless.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Iterable
from urllib.parse import parse_qsl

from starlette.routing import BaseRoute, Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from carmenta.observability import logs, metrics

logger = logging.getLogger("carmenta.http")

REQUEST_ID_HEADER = "x-request-id"
# A client's request id is kept when it looks like one (a load balancer's), else replaced.
_ACCEPTABLE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{8,128}")
# Query parameters whose values say nothing secret; every other value is redacted.
_HARMLESS_QUERY_NAMES = frozenset(
    {
        "return",
        "page",
        "limit",
        "width",
        "height",
        "resize",
        "format",
        "quality",
        "gravity",
        "transport",
        "EIO",
        "error",
        "error_description",
        "provider",
        "q",
    }
)
# Paths Reflex serves itself, reported as they are; anything else not matched by a
# machine route is a page or a static file of the interface.
_REFLEX_PATHS = ("/_event", "/_upload", "/ping", "/_health", "/_all_routes")


def _redacted_query(raw: bytes) -> str:
    if not raw:
        return ""
    pairs = parse_qsl(raw.decode("latin-1"), keep_blank_values=True)
    shown = [
        f"{name}={logs.redact(value) if name in _HARMLESS_QUERY_NAMES else logs.REDACTED}"
        for name, value in pairs
    ]
    return "&".join(shown)


class RequestObserver:
    """ASGI middleware: request id, structured access log and Prometheus metrics."""

    def __init__(self, app: ASGIApp, *, routes: Iterable[BaseRoute] = ()) -> None:
        self.app = app
        # Only the machine routes: Reflex is mounted at "" beside them and matches anything.
        self.observed_routes = [route for route in routes if isinstance(route, Route)]

    @property
    def routes(self) -> list[BaseRoute]:
        # Starlette's url_for walks mounted apps through `.routes`; this wrapper must not
        # hide the wrapped app's (the admin console builds its links that way).
        return list(getattr(self.app, "routes", []))

    def route_of(self, scope: Scope) -> str:
        """The route template (`/connections/{provider}/callback`), never the raw path."""
        for route in self.observed_routes:
            match, _ = route.matches(scope)
            if match is Match.FULL:
                return route.path
        path: str = scope.get("path", "")
        for prefix in _REFLEX_PATHS:
            if path == prefix or path.startswith(prefix + "/"):
                return prefix
        return "interface"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        incoming = dict(scope.get("headers") or []).get(REQUEST_ID_HEADER.encode(), b"")
        request_id = incoming.decode("latin-1")
        if not _ACCEPTABLE_REQUEST_ID.fullmatch(request_id):
            request_id = uuid.uuid4().hex
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [
                    (name, value)
                    for name, value in message.get("headers", [])
                    if name.lower() != REQUEST_ID_HEADER.encode()
                ]
                headers.append((REQUEST_ID_HEADER.encode(), request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        with logs.log_context(request_id=request_id):
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                seconds = time.perf_counter() - started
                method = scope.get("method", "")
                route = self.route_of(scope)
                metrics.HTTP_REQUESTS.labels(method=method, route=route, status=str(status)).inc()
                metrics.HTTP_DURATION.labels(method=method, route=route).observe(seconds)
                if route != "/health" or status >= 400:  # load balancers poll it constantly
                    logger.info(
                        "%s %s %s %.1f ms",
                        method,
                        scope.get("path", ""),
                        status,
                        seconds * 1000,
                        extra={
                            "method": method,
                            "path": scope.get("path", ""),
                            "query": _redacted_query(scope.get("query_string", b"")),
                            "route": route,
                            "status": status,
                            "duration_ms": round(seconds * 1000, 2),
                        },
                    )
