"""What the connection tests share: a scripted OAuth token server on 127.0.0.1,
provider declarations pointing at it, settings holding their client credentials,
and users to own connections."""

from __future__ import annotations

import base64
import itertools
import json
import os
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote

import httpx
import psycopg

from carmenta.connections import crypto
from carmenta.connections.providers.base import (
    AccountIdentity,
    Endpoints,
    ProviderSpec,
    TokenSet,
)
from carmenta.connections.service import RetryPolicy
from carmenta.model_fields import utcnow
from carmenta.settings import Settings, reset_settings_cache

CLIENT_ID = "carmenta-test-client"
CLIENT_SECRET = "client-secret-for/tests+only"  # noqa: S105 (a test value)

# Two key rings: the tests' own, and a newer one for the rotation tests.
KEY_1 = base64.b64encode(bytes(range(32))).decode()
KEY_2 = base64.b64encode(bytes(range(64, 96))).decode()
RING_1 = f"k1:{KEY_1}"
RING_2_AND_1 = f"k2:{KEY_2},k1:{KEY_1}"


class ConnectionTestSettings(Settings):
    """Settings with client credentials for the test providers' ids."""

    tokentest_client_id: str | None = CLIENT_ID
    tokentest_client_secret: str | None = CLIENT_SECRET
    tokenbasic_client_id: str | None = CLIENT_ID
    tokenbasic_client_secret: str | None = CLIENT_SECRET
    tokenjob_client_id: str | None = CLIENT_ID
    tokenjob_client_secret: str | None = CLIENT_SECRET
    tokenjob2_client_id: str | None = CLIENT_ID
    tokenjob2_client_secret: str | None = CLIENT_SECRET
    svctest_client_id: str | None = CLIENT_ID
    svctest_client_secret: str | None = CLIENT_SECRET


@contextmanager
def encryption_keys(value: str) -> Iterator[None]:
    """Point the app's key ring at `value` for the duration of the block."""
    previous = os.environ.get("ENCRYPTION_KEYS")
    os.environ["ENCRYPTION_KEYS"] = value
    reset_settings_cache()
    crypto.reset_key_ring_cache()
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("ENCRYPTION_KEYS", None)
        else:
            os.environ["ENCRYPTION_KEYS"] = previous
        reset_settings_cache()
        crypto.reset_key_ring_cache()


def create_user(database_url: str) -> uuid.UUID:
    user_id = uuid.uuid4()
    with psycopg.connect(database_url, autocommit=True) as connection:
        connection.execute(
            "insert into users (id, external_auth_id, auth_provider) values (%s, %s, 'builtin')",
            (user_id, f"connections-test-{user_id}"),
        )
    return user_id


def fast_retry(sleeps: list[float] | None = None, *, timeout: float = 5.0) -> RetryPolicy:
    """The default delays, recorded instead of slept."""

    async def sleep(seconds: float) -> None:
        if sleeps is not None:
            sleeps.append(seconds)

    return RetryPolicy(timeout_seconds=timeout, sleep=sleep)


@dataclass
class TokenServer:
    """An OAuth token endpoint (refresh grant), a revocation endpoint and a userinfo
    endpoint. Each /token request takes the next scripted answer, then "ok":

    - "ok": new access token (and a new refresh token when `rotate`, the same one
      echoed back when `echo_refresh`, none otherwise, like Google)
    - "invalid_grant", "invalid_client": a 400/401 OAuth error
    - an int: that HTTP status, JSON error body
    - ("slow", seconds): wait, then answer "ok"
    """

    auth_method: str = "post"  # or "basic"
    rotate: bool = False
    echo_refresh: bool = False
    expires_in: int = 3600
    delay: float = 0.0
    script: list[Any] = field(default_factory=list)
    # Refresh tokens the server honours; rotation retires the one presented.
    valid_refresh_tokens: set[str] = field(default_factory=set)
    token_requests: list[dict[str, Any]] = field(default_factory=list)
    revoked: list[str] = field(default_factory=list)
    revoke_status: int = 200
    # Refresh tokens answered with 503 every time (a provider shard that is down).
    unavailable_for: set[str] = field(default_factory=set)
    userinfo_status: int = 200
    issued: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _counter: Any = field(default_factory=lambda: itertools.count(1))

    def __post_init__(self) -> None:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode()
                form = {key: values[0] for key, values in parse_qs(body).items()}
                if self.path == "/token":
                    status, answer = server._token(form, self.headers.get("Authorization"))
                elif self.path == "/revoke":
                    with server._lock:
                        server.revoked.append(form.get("token", ""))
                    status, answer = server.revoke_status, {}
                else:
                    status, answer = 404, {"error": "not_found"}
                self._send(status, answer)

            def do_GET(self) -> None:  # noqa: N802
                if self.path == "/userinfo":
                    status = server.userinfo_status
                    self._send(status, {"sub": "someone"} if status == 200 else {})
                else:
                    self._send(404, {})

            def _send(self, status: int, answer: dict[str, Any]) -> None:
                payload = json.dumps(answer).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout tests)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    @property
    def token_calls(self) -> int:
        return len(self.token_requests)

    def new_token(self, kind: str) -> str:
        token = f"{kind}-{next(self._counter)}-{secrets.token_hex(8)}"
        self.issued.append(token)
        return token

    def _client_ok(self, form: dict[str, str], authorization: str | None) -> bool:
        if self.auth_method == "basic":
            if "client_secret" in form or not authorization:
                return False
            scheme, _, encoded = authorization.partition(" ")
            decoded = base64.b64decode(encoded).decode()
            client_id, _, client_secret = decoded.partition(":")
            return (
                scheme == "Basic"
                and unquote(client_id) == CLIENT_ID
                and unquote(client_secret) == CLIENT_SECRET
            )
        return (
            authorization is None
            and form.get("client_id") == CLIENT_ID
            and form.get("client_secret") == CLIENT_SECRET
        )

    def _token(self, form: dict[str, str], authorization: str | None) -> tuple[int, dict]:
        with self._lock:
            self.token_requests.append({"form": form, "authorization": authorization})
            step = self.script.pop(0) if self.script else "ok"
        wait = self.delay
        if isinstance(step, tuple) and step[0] == "slow":
            wait += step[1]
            step = "ok"
        if wait:
            time.sleep(wait)
        if form.get("refresh_token") in self.unavailable_for:
            step = 503
        if isinstance(step, int):
            return step, {"error": "temporarily_unavailable"}
        if step == "invalid_client" or not self._client_ok(form, authorization):
            return 401, {"error": "invalid_client"}
        if form.get("grant_type") != "refresh_token":
            return 400, {"error": "unsupported_grant_type"}
        with self._lock:
            presented = form.get("refresh_token", "")
            if step == "invalid_grant" or presented not in self.valid_refresh_tokens:
                return 400, {"error": "invalid_grant", "error_description": "Token is invalid"}
            answer: dict[str, Any] = {
                "access_token": self.new_token("access"),
                "token_type": "Bearer",
                "expires_in": self.expires_in,
                "scope": "read write",
            }
            if self.rotate:
                self.valid_refresh_tokens.discard(presented)
                fresh = self.new_token("refresh")
                self.valid_refresh_tokens.add(fresh)
                answer["refresh_token"] = fresh
            elif self.echo_refresh:
                answer["refresh_token"] = presented
        return 200, answer


def provider(
    server: TokenServer, provider_id: str = "tokentest", *, revoke: bool = True
) -> ProviderSpec:
    """A provider declared like the real ones, with every endpoint on `server`."""

    async def fetch_identity(client: httpx.AsyncClient, tokens: TokenSet) -> AccountIdentity:
        response = await client.get(
            f"{server.url}/userinfo", headers={"Authorization": f"Bearer {tokens.access_token}"}
        )
        response.raise_for_status()
        return AccountIdentity(account_id=response.json()["sub"], label="someone")

    async def revoke_token(client: httpx.AsyncClient, token: str) -> None:
        response = await client.post(f"{server.url}/revoke", data={"token": token})
        response.raise_for_status()

    return ProviderSpec(
        id=provider_id,
        name=provider_id.title(),
        description="A test provider",
        auth_type="oauth",
        endpoints=Endpoints(
            authorize_url=f"{server.url}/authorize",
            token_url=f"{server.url}/token",
            revoke_url=f"{server.url}/revoke",
        ),
        scopes=("read", "write"),
        token_auth_method=(
            "client_secret_basic" if server.auth_method == "basic" else "client_secret_post"
        ),
        supports_refresh=True,
        rotating_refresh_tokens=server.rotate,
        fetch_identity=fetch_identity,
        revoke=revoke_token if revoke else None,
    )


def api_key_provider(provider_id: str = "keytest", *, server: TokenServer | None = None):
    async def validate(client: httpx.AsyncClient, key: str, base_url: str | None):
        if server is not None:
            response = await client.get(
                f"{server.url}/userinfo", headers={"Authorization": f"Bearer {key}"}
            )
            response.raise_for_status()
        return AccountIdentity(account_id="key", label="key")

    return ProviderSpec(
        id=provider_id,
        name="Key Test",
        description="An API-key test provider",
        auth_type="api_key",
        needs_base_url=True,
        validate_api_key=validate,
    )


def tokens(
    *,
    access: str | None = None,
    refresh: str | None = None,
    expires_in: timedelta | None = timedelta(hours=1),
    server: TokenServer | None = None,
    extra: dict[str, Any] | None = None,
) -> TokenSet:
    """A token set as an authorization would give it; `server` then honours its refresh."""
    access = access or f"access-initial-{secrets.token_hex(8)}"
    refresh = refresh or f"refresh-initial-{secrets.token_hex(8)}"
    if server is not None:
        server.valid_refresh_tokens.add(refresh)
    return TokenSet(
        access_token=access,
        refresh_token=refresh,
        expires_at=utcnow() + expires_in if expires_in is not None else None,
        granted_scopes=frozenset({"read", "write"}),
        extra=extra or {},
    )
