"""Small frames leave at once: Nagle's algorithm off on the server's connections.

The web server accepts connections without TCP_NODELAY. With Nagle's algorithm on, a
websocket frame written while the previous one is not yet acknowledged waits for that
acknowledgement, which the browser delays: a reply's first words waited about 10 ms
behind the frame that showed the message as sent. Accepted connections inherit the
option from the listening socket (Linux, the BSDs and macOS alike), so it is set there,
once; the server opens that socket after the app's start-up hooks have run, so it is
looked for until it appears.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import stat
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from carmenta.settings import get_settings

logger = logging.getLogger(__name__)

_FD_DIRECTORIES = (Path("/proc/self/fd"), Path("/dev/fd"))
LISTENER_WAIT_SECONDS = 30.0
LISTENER_POLL_SECONDS = 0.05


def _open_descriptors() -> list[int]:
    for directory in _FD_DIRECTORIES:
        try:
            return sorted(int(name) for name in os.listdir(directory) if name.isdigit())
        except OSError:
            continue
    return []


def _tcp_socket(fd: int) -> socket.socket | None:
    """A duplicate of `fd` when it is a TCP socket (closing it leaves `fd` open)."""
    try:
        if not stat.S_ISSOCK(os.fstat(fd).st_mode):
            return None
        duplicate = socket.socket(fileno=os.dup(fd))
    except OSError:
        return None
    if duplicate.family in (socket.AF_INET, socket.AF_INET6) and (
        duplicate.type == socket.SOCK_STREAM
    ):
        return duplicate
    duplicate.close()
    return None


def disable_nagle(*, port: int) -> bool:
    """TCP_NODELAY on each of this process's TCP sockets on local `port`: the listening
    one and any connection it already accepted. True once a listening one was found."""
    found_listener = False
    for fd in _open_descriptors():
        tcp = _tcp_socket(fd)
        if tcp is None:
            continue
        with tcp:
            try:
                if tcp.getsockname()[1] != port:
                    continue
                tcp.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if tcp.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
                    found_listener = True
            except OSError:
                logger.debug("could not set TCP_NODELAY on descriptor %d", fd, exc_info=True)
    return found_listener


async def _disable_nagle_once_listening(port: int) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + LISTENER_WAIT_SECONDS
    while not disable_nagle(port=port):
        if loop.time() > deadline:
            logger.warning("found no socket listening on port %d to set TCP_NODELAY on", port)
            return
        await asyncio.sleep(LISTENER_POLL_SECONDS)


@asynccontextmanager
async def small_frames_at_once_lifespan() -> AsyncIterator[None]:
    task = asyncio.create_task(
        _disable_nagle_once_listening(get_settings().port), name="carmenta-tcp-nodelay"
    )
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
