"""Calling Reflex event handlers directly over the websocket, as an attacker could."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any

import socketio

# The browser opens `io("<host>/_event", {path: "/_event"})`: "/_event" is both the
# engine.io path and the socket.io namespace.
NAMESPACE = "/_event"
QUIET_SECONDS = 1.0


async def call_handler(
    *,
    base_url: str,
    handler: str,
    payload: dict[str, Any],
    cookie: str | None = None,
    path: str = "/account",
    timeout: float = 15.0,
    token: str | None = None,
    until: Callable[[list[dict[str, Any]]], bool] | None = None,
) -> list[dict[str, Any]]:
    """Send one event to `handler` (a full Reflex event name); return every update.

    Updates carry no end marker, so the call ends once the server has been quiet for
    QUIET_SECONDS after its first update. `token` is the browser tab's state token
    (a fresh one unless given): the same token is the same page state. With `until`,
    the call instead ends once `until(updates)` holds (or fails after `timeout`).
    """
    client = socketio.AsyncClient(reconnection=False)
    updates: list[dict[str, Any]] = []
    arrived = asyncio.Event()

    @client.on("event", namespace=NAMESPACE)
    async def _on_update(update: dict[str, Any]) -> None:
        updates.append(update)
        arrived.set()

    headers = {"Cookie": cookie} if cookie else {}
    await client.connect(
        f"{base_url}?token={token or uuid.uuid4()}",
        socketio_path=NAMESPACE,
        namespaces=[NAMESPACE],
        transports=["websocket"],
        headers=headers,
        wait_timeout=timeout,
    )
    try:
        await client.emit(
            "event",
            namespace=NAMESPACE,
            data={
                "name": handler,
                "payload": payload,
                "router_data": {"pathname": path, "asPath": path, "query": {}},
            },
        )
        if until is not None:
            deadline = time.monotonic() + timeout
            while not until(updates):
                arrived.clear()
                await asyncio.wait_for(arrived.wait(), max(0.0, deadline - time.monotonic()))
            return updates
        await asyncio.wait_for(arrived.wait(), timeout)
        while True:
            arrived.clear()
            try:
                await asyncio.wait_for(arrived.wait(), QUIET_SECONDS)
            except TimeoutError:
                break
    finally:
        await client.disconnect()
    return updates
