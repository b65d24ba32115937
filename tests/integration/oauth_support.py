"""What the OAuth flow, attack, webhook and API-key tests share.

Two kinds of local authorization servers, both on 127.0.0.1:
- oidc-provider-mock (a real OpenID Connect provider written by others, a Flask app
  under werkzeug), driving the generic `oidc` provider; a client is registered with
  it, so its secret and redirect URI are really checked;
- the provider-shaped stand-ins of tests/provider_servers.py (Slack, Notion, Google,
  GitHub, Dropbox, Anthropic, OpenAI), reached through OAUTH_ENDPOINT_OVERRIDES.

A test drives the flow as a browser would: our authorize route (ASGI, with the
signed-in user's cookie), the provider's consent answer (real HTTP), then our
callback route with whatever the provider put in the redirect.
"""

from __future__ import annotations

import json
import re
import secrets
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import text

from carmenta import db
from carmenta.api.routes import build_api
from carmenta.connections import crypto
from carmenta.connections.providers import oidc as oidc_provider
from carmenta.settings import reset_settings_cache
from tests.integration.files_support import SignedIn, sign_up
from tests.oidc_mock import OidcPeer, running_oidc_provider
from tests.provider_servers import Account, Consent, ProviderPeer, overrides_for

ORIGIN = "http://localhost:3000"
ENCRYPTION_KEYS = "oauthtest:" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVowMTIzNDU="
SLACK_SIGNING_SECRET = "slack-signing-secret-for-tests"  # noqa: S105 (a test value)
GITHUB_WEBHOOK_SECRET = "github-webhook-secret-for-tests"  # noqa: S105 (a test value)
PROVIDER_IDS = ("slack", "notion", "google", "github", "dropbox")

__all__ = ["SignedIn", "sign_up"]


# -- the real OpenID Connect provider ------------------------------------------------


@pytest.fixture(scope="session")
def oidc_peer() -> Iterator[OidcPeer]:
    with running_oidc_provider(redirect_uris=[f"{ORIGIN}/connections/oidc/callback"]) as peer:
        yield peer


@pytest.fixture(scope="session")
def provider_peer() -> Iterator[ProviderPeer]:
    peer = ProviderPeer(app_url=ORIGIN).start()
    yield peer
    peer.stop()


ADA = Account(id="U0ADA01", name="ada", email="ada@example.com", team_id="T0TEAM1")
GRACE = Account(id="U0GRACE2", name="grace", email="grace@example.com", team_id="T0TEAM1")


def default_consent(provider_id: str) -> Consent:
    accounts = {
        "slack": ADA,
        "notion": Account(
            id="4f1c0e2a-0000-4000-8000-00000000ada1",
            name="Ada Lovelace",
            email="ada@example.com",
            team_id="9b0f9a6e-0000-4000-8000-0000000000b1",
            team_name="Ada's Notes",
        ),
        "google": Account(id="109876543210987654321", name="Ada", email="ada@gmail.example"),
        "github": Account(id="583231", name="octo-ada", email="ada@github.example"),
        "dropbox": Account(
            id="dbid:AAH4f99T0taONIb-OurWxbNQ6ywGRopQngc", name="Ada", email="ada@dropbox.example"
        ),
    }
    return Consent(account=accounts[provider_id])


def environment(provider_peer: ProviderPeer, oidc_peer: OidcPeer) -> dict[str, str]:
    state = provider_peer.state
    env = {
        "PORT": "3000",
        "ENCRYPTION_KEYS": ENCRYPTION_KEYS,
        "OAUTH_ENDPOINT_OVERRIDES": json.dumps(overrides_for(provider_peer.url)),
        "OIDC_ISSUER": oidc_peer.url,
        "OIDC_CLIENT_ID": oidc_peer.client_id,
        "OIDC_CLIENT_SECRET": oidc_peer.client_secret,
        "OIDC_NAME": "Test SSO",
        "OIDC_SCOPES": "openid email profile offline_access",
        "SLACK_SIGNING_SECRET": SLACK_SIGNING_SECRET,
        "GITHUB_WEBHOOK_SECRET": GITHUB_WEBHOOK_SECRET,
    }
    for provider_id in PROVIDER_IDS:
        env[f"{provider_id.upper()}_CLIENT_ID"] = state.client_id
        env[f"{provider_id.upper()}_CLIENT_SECRET"] = state.client_secret
    return env


def reset_caches() -> None:
    reset_settings_cache()
    crypto.reset_key_ring_cache()
    oidc_provider.forget_discovery()


@pytest.fixture
async def oauth_env(database_url, monkeypatch, tmp_path, provider_peer, oidc_peer):
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.delenv("PUBLIC_URL", raising=False)
    monkeypatch.delenv("CLERK_PUBLISHABLE_KEY", raising=False)
    monkeypatch.delenv("CLERK_SECRET_KEY", raising=False)
    for name, value in environment(provider_peer, oidc_peer).items():
        monkeypatch.setenv(name, value)
    reset_caches()
    state = provider_peer.state
    state.consent = {provider_id: default_consent(provider_id) for provider_id in PROVIDER_IDS}
    state.token_requests.clear()
    state.authorize_requests.clear()
    state.revoked.clear()
    state.slack_rotation = False
    await db.dispose_engine()
    yield provider_peer
    await db.dispose_engine()
    monkeypatch.undo()
    reset_caches()


@pytest.fixture
async def api(oauth_env) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=build_api())
    async with httpx.AsyncClient(transport=transport, base_url=ORIGIN) as http:
        yield http


# -- driving the flow ----------------------------------------------------------------


def location(response: httpx.Response) -> str:
    assert response.status_code in (302, 303), (response.status_code, response.text[:300])
    return response.headers["location"]


def query_of(url: str) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(urlsplit(url).query).items()}


def path_and_query(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}" if parts.query else parts.path


async def start(
    api: httpx.AsyncClient, user: SignedIn, provider_id: str, *, return_path: str | None = None
) -> str:
    """Our authorize route, as the signed-in user; the provider URL it sends them to."""
    params = {"return": return_path} if return_path is not None else None
    response = await api.get(
        f"/connections/{provider_id}/authorize", params=params, headers={"Cookie": user.cookie}
    )
    assert response.status_code == 303, response.text
    return response.headers["location"]


async def consent(authorization_url: str) -> str:
    """The provider's consent step (stand-ins consent at once); the callback URL it sends."""
    async with httpx.AsyncClient(timeout=10) as http:
        return location(await http.get(authorization_url))


async def consent_oidc(authorization_url: str, *, subject: str, deny: bool = False) -> str:
    """oidc-provider-mock's consent form, submitted as a person would."""
    async with httpx.AsyncClient(timeout=10) as http:
        page = await http.get(authorization_url)
        assert page.status_code == 200, page.text[:500]
        assert 'name="sub"' in page.text
        form = {"action": "deny"} if deny else {"sub": subject}
        return location(await http.post(authorization_url, data=form))


async def finish(
    api: httpx.AsyncClient,
    user: SignedIn | None,
    callback_url: str,
    *,
    provider_id: str | None = None,
) -> httpx.Response:
    """Our callback route with the provider's redirect, in `user`'s browser."""
    parts = urlsplit(callback_url)
    path = parts.path if provider_id is None else f"/connections/{provider_id}/callback"
    headers = {"Cookie": user.cookie} if user is not None else {}
    return await api.get(f"{path}?{parts.query}", headers=headers)


async def connect(
    api: httpx.AsyncClient, user: SignedIn, provider_id: str, *, return_path: str | None = None
) -> httpx.Response:
    return await finish(
        api, user, await consent(await start(api, user, provider_id, return_path=return_path))
    )


def failure_of(response: httpx.Response) -> tuple[str, str]:
    """(error code, message) of a refused callback, which goes to the Connections page."""
    target = location(response)
    assert urlsplit(target).path == "/connections", target
    query = query_of(target)
    return query["error"], query["message"]


# -- looking into the database -------------------------------------------------------


async def connection_rows(user_id: uuid.UUID) -> list[dict[str, Any]]:
    async with db.session_scope() as session:
        result = await session.execute(
            text(
                "select * from service_connections where owner_id = :owner"
                " order by provider, connected_at"
            ),
            {"owner": user_id},
        )
        return [dict(row) for row in result.mappings().all()]


async def pending_states(user_id: uuid.UUID) -> list[dict[str, Any]]:
    async with db.session_scope() as session:
        result = await session.execute(
            text("select * from oauth_states where owner_id = :owner order by created_at"),
            {"owner": user_id},
        )
        return [dict(row) for row in result.mappings().all()]


async def events_of(user_id: uuid.UUID) -> list[dict[str, Any]]:
    async with db.session_scope() as session:
        result = await session.execute(
            text(
                "select provider, account_id, event, source from connection_events"
                " where owner_id = :owner order by created_at, id"
            ),
            {"owner": user_id},
        )
        return [dict(row) for row in result.mappings().all()]


async def expire_token(connection_id: uuid.UUID) -> None:
    """Make the stored access token look about to expire, so the next use refreshes it."""
    async with db.session_scope() as session:
        await session.execute(
            text(
                "update service_connections set expires_at = now() + interval '1 minute'"
                " where id = :id"
            ),
            {"id": connection_id},
        )


async def stored_credentials(connection_id: uuid.UUID) -> dict[str, Any]:
    async with db.session_scope() as session:
        row = (
            await session.execute(
                text("select encrypted_credentials from service_connections where id = :id"),
                {"id": connection_id},
            )
        ).one()
    assert row[0].startswith("v1."), "credentials must be stored encrypted"
    plain = crypto.decrypt(row[0], aad=crypto.credential_aad(connection_id))
    return json.loads(plain)


def random_state() -> str:
    return secrets.token_urlsafe(32)


STATE_SHAPE = re.compile(r"^[A-Za-z0-9_-]{43}$")
