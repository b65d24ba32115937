"""A load balancer in front of several app instances: each new TCP connection goes to
the next instance in turn, and bytes flow both ways untouched - so plain HTTP requests
and websocket upgrades are spread exactly as a layer-4 balancer spreads them."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
from dataclasses import dataclass, field

from tests.local_server import free_port


@dataclass
class Connection:
    backend: int
    # The request line the client opened with, e.g. "GET /_event/?EIO=4... HTTP/1.1".
    first_line: str = ""


@dataclass
class RoundRobinProxy:
    backends: list[tuple[str, int]]
    port: int = field(default_factory=free_port)
    connections: list[Connection] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._turn = itertools.cycle(range(len(self.backends)))
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://localhost:{self.port}"

    def websocket_backends(self) -> list[int]:
        """Which instance each websocket connection (Reflex's `/_event`) went to."""
        return [c.backend for c in self.connections if c.first_line.startswith("GET /_event")]

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while chunk := await reader.read(65536):
                writer.write(chunk)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter):
        index = next(self._turn)
        record = Connection(backend=index)
        self.connections.append(record)
        host, port = self.backends[index]
        try:
            upstream_r, upstream_w = await asyncio.open_connection(host, port)
        except OSError:
            client_w.close()
            return
        first = await client_r.read(65536)
        record.first_line = first.split(b"\r\n", 1)[0].decode("latin-1")
        upstream_w.write(first)
        await asyncio.gather(self._pipe(client_r, upstream_w), self._pipe(upstream_r, client_w))

    def start(self) -> RoundRobinProxy:
        started = threading.Event()

        async def serve() -> None:
            self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
            started.set()

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(serve())
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="round-robin-proxy", daemon=True)
        self._thread.start()
        if not started.wait(10):
            raise RuntimeError("the proxy did not start")
        return self

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()

        if self._thread is not None:
            asyncio.run_coroutine_threadsafe(close(), self._loop).result(5)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
