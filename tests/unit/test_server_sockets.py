"""Nagle's algorithm off on the server's sockets, found by port in this process."""

import asyncio
import socket
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from carmenta.api import sockets


def _nodelay(sock: socket.socket) -> bool:
    return bool(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))


@contextmanager
def _listener() -> Iterator[socket.socket]:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener


def _port(sock: socket.socket) -> int:
    return sock.getsockname()[1]


def test_the_listener_and_what_it_accepts_send_small_writes_at_once():
    with _listener() as listener, _listener() as other:
        early_client = socket.create_connection(listener.getsockname())
        early, _ = listener.accept()
        assert not _nodelay(listener) and not _nodelay(early)

        assert sockets.disable_nagle(port=_port(listener)) is True

        late_client = socket.create_connection(listener.getsockname())
        late, _ = listener.accept()
        # Set on the listener, on a connection it had already accepted, and inherited
        # by the next one; another server's socket is left as it was.
        assert _nodelay(listener) and _nodelay(early) and _nodelay(late)
        assert not _nodelay(other)
        for sock in (early_client, early, late_client, late):
            sock.close()


def test_no_listener_on_the_port_is_reported():
    with socket.socket() as unbound:
        unbound.bind(("127.0.0.1", 0))
        port = _port(unbound)  # bound, never listening
        assert sockets.disable_nagle(port=port) is False


async def test_a_listener_opened_after_start_up_is_found(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(sockets, "LISTENER_POLL_SECONDS", 0.01)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        looking = asyncio.create_task(sockets._disable_nagle_once_listening(_port(listener)))
        await asyncio.sleep(0.05)
        assert not looking.done()  # still looking: nothing listens yet
        listener.listen()
        await asyncio.wait_for(looking, timeout=5)
        assert _nodelay(listener)


async def test_looking_gives_up_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    monkeypatch.setattr(sockets, "LISTENER_POLL_SECONDS", 0.01)
    monkeypatch.setattr(sockets, "LISTENER_WAIT_SECONDS", 0.05)
    with socket.socket() as unbound:
        unbound.bind(("127.0.0.1", 0))
        await asyncio.wait_for(sockets._disable_nagle_once_listening(_port(unbound)), timeout=5)
    assert "found no socket listening" in caplog.text
