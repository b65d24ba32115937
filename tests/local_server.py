"""An ASGI app served on 127.0.0.1 from a background thread, for local test peers."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from typing import Any

import httpx


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class BackgroundServer:
    """Serves `app` with granian's embedded server until `stop()`."""

    def __init__(self, app: Any, *, name: str, probe_path: str) -> None:
        self.app = app
        self.name = name
        self.probe_path = probe_path
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def start(self) -> BackgroundServer:
        from granian.constants import Interfaces
        from granian.server.embed import Server

        self._server = Server(
            self.app,
            address="127.0.0.1",
            port=self.port,
            interface=Interfaces.ASGINL,
            log_enabled=False,
        )
        self._loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            self._loop.call_soon(ready.set)
            self._loop.run_until_complete(self._server.serve())
            self._loop.close()

        self._thread = threading.Thread(target=run, name=self.name, daemon=True)
        self._thread.start()
        ready.wait(10)
        deadline = time.monotonic() + 10
        while True:
            try:
                httpx.get(f"{self.url}{self.probe_path}", timeout=1)
                return self
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.name} did not start") from None
                time.sleep(0.02)

    def stop(self) -> None:
        if self._loop is not None and self._server is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._server.stop)
        if self._thread is not None:
            self._thread.join(10)
