"""JWKS keys over real HTTP on loopback: fetched once, cached by kid, re-fetched sparingly."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from carmenta.auth.tokens import InvalidTokenError, JwksKeySource, TokenVerifier

ISSUER = "https://clerk.example.com"
ORIGIN = "https://carmenta.example.com"

KEY_1 = rsa.generate_private_key(public_exponent=65537, key_size=2048)
KEY_2 = rsa.generate_private_key(public_exponent=65537, key_size=2048)
UNLISTED_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwk(private_key, kid: str, **extra) -> dict:
    numbers = private_key.public_key().public_numbers()
    return {
        "kty": "RSA",
        "kid": kid,
        "use": "sig",
        "alg": "RS256",
        "n": _b64(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")),
        "e": _b64(numbers.e.to_bytes(3, "big")),
        **extra,
    }


def token(kid: str, *, key=KEY_1) -> str:
    now = int(time.time())
    claims = {
        "sub": "user_1",
        "sid": "sess_1",
        "iss": ISSUER,
        "azp": ORIGIN,
        "iat": now,
        "nbf": now,
        "exp": now + 60,
    }
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid})


@dataclass
class JwksServer:
    """A loopback JWKS endpoint whose answers and request count the test controls."""

    document: object = field(default_factory=lambda: {"keys": [jwk(KEY_1, "kid-1")]})
    status: int = 200
    delay_seconds: float = 0.0
    requests: int = 0
    url: str = ""
    _server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.requests += 1
                if owner.delay_seconds:
                    time.sleep(owner.delay_seconds)
                body = (
                    owner.document
                    if isinstance(owner.document, bytes)
                    else json.dumps(owner.document).encode()
                )
                try:
                    self.send_response(owner.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        host, port = self._server.server_address[:2]
        self.url = f"http://{host}:{port}/.well-known/jwks.json"
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


@pytest.fixture
def server() -> Iterator[JwksServer]:
    jwks = JwksServer()
    jwks.start()
    yield jwks
    jwks.stop()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def verifier_for(source: JwksKeySource) -> TokenVerifier:
    return TokenVerifier(key_source=source, issuer=ISSUER, authorized_parties=[ORIGIN])


async def reason_for(check: TokenVerifier, raw: str) -> str:
    with pytest.raises(InvalidTokenError) as caught:
        await check.verify(raw)
    return caught.value.reason


async def test_keys_are_fetched_once_and_then_served_from_the_cache(server, clock):
    check = verifier_for(JwksKeySource(server.url, clock=clock))
    assert server.requests == 0
    raw = token("kid-1")
    assert (await check.verify(raw)).subject == "user_1"
    assert server.requests == 1
    for _ in range(100):
        await check.verify(raw)
    assert server.requests == 1


async def test_an_unknown_kid_refetches_at_most_once_a_minute(server, clock):
    check = verifier_for(JwksKeySource(server.url, clock=clock))
    await check.verify(token("kid-1"))
    assert server.requests == 1

    clock.now += 60
    assert await reason_for(check, token("kid-x", key=UNLISTED_KEY)) == "unknown_kid"
    assert server.requests == 2
    clock.now += 59
    assert await reason_for(check, token("kid-y", key=UNLISTED_KEY)) == "unknown_kid"
    assert await reason_for(check, token("kid-x", key=UNLISTED_KEY)) == "unknown_kid"
    assert server.requests == 2

    clock.now += 1
    assert await reason_for(check, token("kid-y", key=UNLISTED_KEY)) == "unknown_kid"
    assert server.requests == 3
    # Known keys keep working throughout, with no request.
    await check.verify(token("kid-1"))
    assert server.requests == 3


async def test_a_new_kid_soon_after_the_first_fetch_waits_for_the_minute(server, clock):
    check = verifier_for(JwksKeySource(server.url, clock=clock))
    await check.verify(token("kid-1"))
    server.document = {"keys": [jwk(KEY_1, "kid-1"), jwk(KEY_2, "kid-2")]}
    clock.now += 30
    assert await reason_for(check, token("kid-2", key=KEY_2)) == "unknown_kid"
    assert server.requests == 1
    clock.now += 30
    assert (await check.verify(token("kid-2", key=KEY_2))).subject == "user_1"
    assert server.requests == 2


async def test_key_rotation_is_picked_up_by_the_refetch(server, clock):
    check = verifier_for(JwksKeySource(server.url, clock=clock))
    await check.verify(token("kid-1"))
    server.document = {"keys": [jwk(KEY_2, "kid-2")]}
    clock.now += 60
    assert (await check.verify(token("kid-2", key=KEY_2))).subject == "user_1"
    assert server.requests == 2
    # The retired key left the set, so its tokens stop verifying.
    assert await reason_for(check, token("kid-1")) == "unknown_kid"
    assert server.requests == 2


async def test_a_cached_key_outlives_the_server(server, clock):
    check = verifier_for(JwksKeySource(server.url, clock=clock, timeout_seconds=1.0))
    await check.verify(token("kid-1"))
    server.stop()

    assert (await check.verify(token("kid-1"))).subject == "user_1"
    clock.now += 60
    assert await reason_for(check, token("kid-2", key=KEY_2)) == "key_unavailable"
    # The failed attempt counts towards the minute too: no storm of reconnects.
    assert await reason_for(check, token("kid-3", key=KEY_2)) == "key_unavailable"
    assert (await check.verify(token("kid-1"))).subject == "user_1"


async def test_a_cold_cache_with_no_server_is_key_unavailable(clock):
    idle = JwksServer()
    idle.start()
    url = idle.url
    idle.stop()
    check = verifier_for(JwksKeySource(url, clock=clock, timeout_seconds=1.0))
    assert await reason_for(check, token("kid-1")) == "key_unavailable"


async def test_concurrent_callers_on_a_cold_cache_share_one_fetch(server, clock):
    server.delay_seconds = 0.2
    check = verifier_for(JwksKeySource(server.url, clock=clock))
    raw = token("kid-1")
    results = await asyncio.gather(*(check.verify(raw) for _ in range(20)))
    assert {result.subject for result in results} == {"user_1"}
    assert server.requests == 1


async def test_a_cancelled_fetch_lets_the_next_caller_try_again(server, clock):
    server.delay_seconds = 0.3
    check = verifier_for(JwksKeySource(server.url, clock=clock))
    raw = token("kid-1")
    first = asyncio.create_task(check.verify(raw))
    # Cancelled once its request has reached the server (however busy the machine).
    deadline = asyncio.get_running_loop().time() + 10
    while server.requests < 1 and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.01)
    assert server.requests == 1
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    server.delay_seconds = 0
    assert (await check.verify(raw)).subject == "user_1"
    assert server.requests == 2


@pytest.mark.parametrize(
    ("status", "document"),
    [
        (500, {"keys": [jwk(KEY_1, "kid-1")]}),
        (404, b"not found"),
        (200, b"<html>not json</html>"),
        (200, {"keys": []}),
        (200, {"keys": "kid-1"}),
        (200, ["kid-1"]),
    ],
)
async def test_a_broken_answer_is_key_unavailable_and_keeps_cached_keys(
    server, clock, status, document
):
    check = verifier_for(JwksKeySource(server.url, clock=clock))
    await check.verify(token("kid-1"))
    server.status, server.document = status, document
    clock.now += 60
    assert await reason_for(check, token("kid-2", key=KEY_2)) == "key_unavailable"
    assert server.requests == 2
    assert (await check.verify(token("kid-1"))).subject == "user_1"


async def test_a_slow_server_times_out_as_key_unavailable(server, clock):
    server.delay_seconds = 1.0
    check = verifier_for(JwksKeySource(server.url, clock=clock, timeout_seconds=0.2))
    started = time.monotonic()
    assert await reason_for(check, token("kid-1")) == "key_unavailable"
    assert time.monotonic() - started < 0.9


async def test_an_oversized_answer_is_refused(server, clock):
    server.document = {"keys": [jwk(KEY_1, "kid-1")], "padding": "x" * 1_000_000}
    check = verifier_for(JwksKeySource(server.url, clock=clock))
    assert await reason_for(check, token("kid-1")) == "key_unavailable"


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
async def test_only_rs256_signing_keys_are_taken_from_the_set(server, clock):
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    ec_public = ec.generate_private_key(ec.SECP256R1()).public_key().public_numbers()
    server.document = {
        "keys": [
            jwk(KEY_1, "kid-1"),
            {
                key: value
                for key, value in jwk(KEY_2, "no-use-no-alg").items()
                if key not in ("use", "alg")
            },
            jwk(KEY_2, "enc", use="enc"),
            jwk(KEY_2, "rs512", alg="RS512"),
            jwk(KEY_2, "wrong-kty", kty="oct"),
            jwk(small, "small"),
            {key: value for key, value in jwk(KEY_2, "").items()},
            {
                "kty": "EC",
                "kid": "ec",
                "crv": "P-256",
                "x": _b64(ec_public.x.to_bytes(32, "big")),
                "y": _b64(ec_public.y.to_bytes(32, "big")),
            },
            {"kty": "RSA", "kid": "broken", "n": "!!", "e": "AQAB"},
            "not an object",
        ]
    }
    check = verifier_for(JwksKeySource(server.url, clock=clock))
    assert (await check.verify(token("kid-1"))).subject == "user_1"
    assert (await check.verify(token("no-use-no-alg", key=KEY_2))).subject == "user_1"
    for kid in ("enc", "rs512", "wrong-kty", "ec", "broken"):
        assert await reason_for(check, token(kid, key=KEY_2)) == "unknown_kid"
    assert await reason_for(check, token("small", key=small)) == "unknown_kid"
    assert server.requests == 1


async def test_a_token_without_kid_matches_no_jwks_key(server, clock):
    check = verifier_for(JwksKeySource(server.url, clock=clock))
    raw = jwt.encode(
        {"sub": "u", "iss": ISSUER, "azp": ORIGIN, "iat": 0, "nbf": 0, "exp": 2**40},
        KEY_1,
        algorithm="RS256",
    )
    assert await reason_for(check, raw) == "unknown_kid"
    assert server.requests == 0
