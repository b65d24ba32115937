"""The Reflex app: theme, pages, machine routes and the in-process job worker."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import reflex as rx

from carmenta.api.routes import build_api, observe_requests
from carmenta.api.sockets import small_frames_at_once_lifespan
from carmenta.chat import service as chat_service
from carmenta.chat.lifespan import chat_lifespan
from carmenta.components.layout import PAGES
from carmenta.components.theme import GLOBAL_STYLE
from carmenta.jobs.worker import inline_worker_lifespan, stop_inline_worker
from carmenta.observability.lifespan import logging_lifespan, quiet_collector_lifespan
from carmenta.pages import (  # noqa: F401  (registers the pages)
    account,
    chat,
    connections,
    files,
    home,
    knowledge,
    memory,
    not_found,
    sign_in,
    sign_up,
)

api = build_api()
app = rx.App(
    style=GLOBAL_STYLE,
    stylesheets=["/app.css"],
    # The machine routes in front of Reflex's own, all of it observed (ids, logs, metrics).
    api_transformer=[api, observe_requests(api)],
    head_components=[rx.el.link(rel="icon", href="/favicon.svg", type="image/svg+xml")],
)

for spec in PAGES:
    app.add_page(
        spec.component, route=spec.route, title=f"{spec.title} · Carmenta", on_load=spec.on_load
    )

app.add_page(not_found.not_found, route="/404", title="Not found · Carmenta")

# Each server process logs through the one configuration (LOG_FORMAT, redaction).
app.register_lifespan_task(logging_lifespan)
# Frames to the page leave at once, not after the previous one is acknowledged.
app.register_lifespan_task(small_frames_at_once_lifespan)
# With JOB_WORKER=inline (the embedded default) jobs run inside this process.
app.register_lifespan_task(inline_worker_lifespan)
# Replies: interrupted ones recorded at start, ones in flight saved at shutdown.
app.register_lifespan_task(chat_lifespan)
# Start-up's objects are set aside from garbage collection once the app is loaded.
app.register_lifespan_task(quiet_collector_lifespan)


@asynccontextmanager
async def stop_taking_work() -> AsyncIterator[None]:
    """On SIGTERM, before anything else winds down: no new reply, no new job."""
    yield
    chat_service.get_engine().stop_accepting()
    stop_inline_worker()


# Registered last so its exit runs first (lifespan exits run in reverse order).
app.register_lifespan_task(stop_taking_work)
