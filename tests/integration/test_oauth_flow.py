"""The whole OAuth flow: authorize, consent, callback, store, use, refresh, rotate, disconnect.

Against oidc-provider-mock (a real OpenID Connect provider) through the generic
`oidc` provider, and against local servers speaking Slack's, Notion's, Google's,
GitHub's and Dropbox's documented shapes, pointed at with OAUTH_ENDPOINT_OVERRIDES.
"""

from __future__ import annotations

import json

import httpx
import pytest

from carmenta import db
from carmenta.connections import service
from carmenta.connections.oauth import hash_state
from carmenta.connections.providers import registry
from carmenta.errors import ConfigurationError
from carmenta.settings import Settings, get_settings
from tests.integration import oauth_support
from tests.integration.oauth_support import (
    ORIGIN,
    STATE_SHAPE,
    connect,
    connection_rows,
    consent,
    consent_oidc,
    events_of,
    expire_token,
    failure_of,
    finish,
    location,
    pending_states,
    query_of,
    sign_up,
    start,
    stored_credentials,
)
from tests.provider_servers import GOOGLE_ISSUER

# authlib, inside oidc-provider-mock, announces its own deprecations while it serves.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:authlib")

oauth_env = oauth_support.oauth_env
api = oauth_support.api
oidc_peer = oauth_support.oidc_peer
provider_peer = oauth_support.provider_peer


def _connected_to(response: httpx.Response, provider_id: str, path: str = "/connections") -> None:
    target = location(response)
    assert target.startswith(path), target
    assert query_of(target).get("connected") == provider_id, target


async def _revoke_access_token(provider_id: str, token: str) -> None:
    """The provider's own revocation call, as its documentation shapes it."""
    provider = await registry.load_provider(provider_id, get_settings())
    assert provider.revoke is not None
    async with httpx.AsyncClient(timeout=10) as http:
        await provider.revoke(http, token)


async def _disconnect(user, connection_id) -> None:
    async with db.session_scope() as session:
        assert await service.disconnect(
            session=session, owner_id=user.user_id, connection_id=connection_id
        )
    assert await connection_rows(user.user_id) == []


async def _userinfo(peer_url: str, token: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=10) as http:
        return await http.get(f"{peer_url}/userinfo", headers={"Authorization": f"Bearer {token}"})


# -- oidc-provider-mock --------------------------------------------------------------


async def test_the_whole_flow_against_a_real_openid_connect_provider(api, oidc_peer):
    user = await sign_up()
    oidc_peer.put_user("ada-sub-1", email="ada@corp.example", name="Ada Lovelace")

    authorization_url = await start(api, user, "oidc", return_path="/files?view=grid")
    assert authorization_url.startswith(f"{oidc_peer.url}/oauth2/authorize?")
    asked = query_of(authorization_url)
    assert asked["client_id"] == oidc_peer.client_id
    assert asked["redirect_uri"] == f"{ORIGIN}/connections/oidc/callback"
    assert asked["response_type"] == "code"
    assert asked["scope"] == "openid email profile offline_access"
    assert asked["code_challenge_method"] == "S256"
    assert STATE_SHAPE.match(asked["state"])
    [pending] = await pending_states(user.user_id)
    assert pending["state_hash"] == hash_state(asked["state"])
    assert pending["provider"] == "oidc"
    assert pending["code_verifier"].startswith("v1.")  # encrypted, never in clear
    assert pending["return_path"] == "/files?view=grid"

    callback_url = await consent_oidc(authorization_url, subject="ada-sub-1")
    assert callback_url.startswith(f"{ORIGIN}/connections/oidc/callback?")
    response = await finish(api, user, callback_url)
    _connected_to(response, "oidc", "/files?view=grid")
    assert location(response) == "/files?view=grid&connected=oidc"
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert await pending_states(user.user_id) == []

    [row] = await connection_rows(user.user_id)
    assert (row["provider"], row["account_id"], row["account_label"]) == (
        "oidc",
        "ada-sub-1",
        "ada@corp.example",
    )
    assert row["credential_type"] == "oauth" and row["status"] == "connected"
    assert row["is_default"] is True
    assert {"openid", "email", "profile", "offline_access"} <= set(row["scopes"])
    credentials = await stored_credentials(row["id"])
    assert credentials["refresh_token"]

    # Use: the stored token works at the provider.
    token = await service.get_access_token(owner_id=user.user_id, provider_id="oidc")
    assert token.token == credentials["access_token"]
    assert (await _userinfo(oidc_peer.url, token.token)).json()["sub"] == "ada-sub-1"

    # Refresh: the mock's refresh grant (no new refresh token: the old one is kept).
    await expire_token(row["id"])
    refreshed = await service.get_access_token(owner_id=user.user_id, provider_id="oidc")
    assert refreshed.token != token.token
    assert (await _userinfo(oidc_peer.url, refreshed.token)).status_code == 200
    # The mock ends the old access token on refresh (it answers 400 for it).
    assert (await _userinfo(oidc_peer.url, token.token)).status_code in (400, 401)
    after = await stored_credentials(row["id"])
    assert after["refresh_token"] == credentials["refresh_token"]
    [row_after] = await connection_rows(user.user_id)
    assert row_after["last_refreshed_at"] is not None

    # Disconnect: the mock advertises no revocation endpoint, so the row just goes.
    async with db.session_scope() as session:
        assert await service.disconnect(
            session=session, owner_id=user.user_id, connection_id=row["id"]
        )
    assert await connection_rows(user.user_id) == []
    events = [(event["event"], event["source"]) for event in await events_of(user.user_id)]
    assert events[0] == ("connected", "user")
    assert ("refreshed", "system") in events
    assert events[-1] == ("disconnected", "user")


async def test_connecting_the_same_openid_account_again_updates_one_connection(api, oidc_peer):
    user = await sign_up()
    for _ in range(2):
        callback_url = await consent_oidc(await start(api, user, "oidc"), subject="same-sub")
        _connected_to(await finish(api, user, callback_url), "oidc")
    [row] = await connection_rows(user.user_id)
    assert row["account_id"] == "same-sub"
    events = [event["event"] for event in await events_of(user.user_id)]
    assert events == ["connected", "reconnected"]


async def test_a_scope_the_openid_provider_does_not_grant_is_refused_by_name(
    api, oidc_peer, monkeypatch
):
    monkeypatch.setenv("OIDC_SCOPES", "openid email groups")
    oauth_support.reset_caches()
    user = await sign_up()
    callback_url = await consent_oidc(await start(api, user, "oidc"), subject="scoped-sub")
    code, message = failure_of(await finish(api, user, callback_url))
    assert code == "missing_scope"
    assert "groups" in message and "email" not in message
    assert await connection_rows(user.user_id) == []


async def test_denying_consent_at_the_openid_provider_stores_nothing(api, oidc_peer):
    user = await sign_up()
    callback_url = await consent_oidc(await start(api, user, "oidc"), subject="x", deny=True)
    # The mock leaves `state` out of its error answer (RFC 6749 4.1.2.1 asks for it).
    assert query_of(callback_url)["error"] == "access_denied"
    code, message = failure_of(await finish(api, user, callback_url))
    assert code == "access_denied"
    assert message.startswith("You did not allow Carmenta to use your Test SSO account")
    assert await connection_rows(user.user_id) == []


# -- Slack ---------------------------------------------------------------------------


async def test_slack_asks_for_user_scopes_only_and_keeps_the_authed_user_token(api, oauth_env):
    peer = oauth_env.state
    user = await sign_up()
    authorization_url = await start(api, user, "slack")
    asked = query_of(authorization_url)
    assert "scope" not in asked
    user_scopes = asked["user_scope"].split(",")
    assert "search:read" in user_scopes and "chat:write" in user_scopes
    assert "code_challenge" not in asked

    _connected_to(await finish(api, user, await consent(authorization_url)), "slack")
    [row] = await connection_rows(user.user_id)
    assert row["account_id"] == "T0TEAM1:U0ADA01"
    assert row["account_label"] == "ada (Acme)"
    assert set(row["scopes"]) == set(user_scopes)
    credentials = await stored_credentials(row["id"])
    assert credentials["access_token"].startswith("xoxp-")
    assert credentials["extra"]["team_id"] == "T0TEAM1"
    assert [request["grant_type"] for request in peer.token_requests] == ["authorization_code"]

    token = await service.get_access_token(owner_id=user.user_id, provider_id="slack")
    assert token.token == credentials["access_token"]

    async with db.session_scope() as session:
        await service.disconnect(session=session, owner_id=user.user_id, connection_id=row["id"])
    assert peer.revoked == [("slack", credentials["access_token"])]
    assert await connection_rows(user.user_id) == []


async def test_slack_token_rotation_refreshes_a_top_level_user_token(api, oauth_env):
    peer = oauth_env.state
    peer.slack_rotation = True
    user = await sign_up()
    _connected_to(await connect(api, user, "slack"), "slack")
    [row] = await connection_rows(user.user_id)
    assert row["expires_at"] is not None
    first = await stored_credentials(row["id"])
    assert first["access_token"].startswith("xoxe.xoxp-") and first["refresh_token"]

    await expire_token(row["id"])
    token = await service.get_access_token(owner_id=user.user_id, provider_id="slack")
    after = await stored_credentials(row["id"])
    assert token.token == after["access_token"] != first["access_token"]
    assert after["refresh_token"] != first["refresh_token"]
    assert after["refresh_token"] in peer.refresh_tokens
    assert [r["grant_type"] for r in peer.token_requests] == [
        "authorization_code",
        "refresh_token",
    ]


# -- Notion --------------------------------------------------------------------------


async def test_notion_exchanges_with_basic_auth_and_reads_the_owner_from_the_answer(api, oauth_env):
    peer = oauth_env.state
    user = await sign_up()
    authorization_url = await start(api, user, "notion")
    assert query_of(authorization_url)["owner"] == "user"
    _connected_to(await finish(api, user, await consent(authorization_url)), "notion")

    [request] = peer.token_requests
    assert request["auth"] == "client_secret_basic"
    [row] = await connection_rows(user.user_id)
    account = peer.consent["notion"].account
    assert row["account_id"] == f"{account.team_id}:{account.id}"
    assert row["account_label"] == "Ada's Notes (ada@example.com)"

    # Notion's rotating refresh tokens: the new one replaces the old one.
    before = await stored_credentials(row["id"])
    await expire_token(row["id"])
    # Notion issues no expiry; this connection was given one above to force a refresh.
    refreshed = await service.get_access_token(owner_id=user.user_id, provider_id="notion")
    after = await stored_credentials(row["id"])
    assert refreshed.token != before["access_token"]
    assert after["refresh_token"] != before["refresh_token"]
    assert before["refresh_token"] not in peer.refresh_tokens
    assert after["refresh_token"] in peer.refresh_tokens
    assert [r["auth"] for r in peer.token_requests] == ["client_secret_basic"] * 2

    await _revoke_access_token("notion", after["access_token"])
    assert peer.revoked == [("notion", after["access_token"])]
    await _disconnect(user, row["id"])


async def test_the_notion_token_endpoint_refuses_a_client_without_basic_auth(oauth_env):
    peer = oauth_env
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.post(
            f"{peer.url}/notion/v1/oauth/token",
            data={
                "grant_type": "authorization_code",
                "code": "anything",
                "client_id": peer.state.client_id,
                "client_secret": peer.state.client_secret,
            },
        )
    assert response.status_code == 401


# -- Google --------------------------------------------------------------------------


async def test_google_keeps_its_refresh_token_when_a_refresh_sends_none(api, oauth_env):
    peer = oauth_env.state
    user = await sign_up()
    authorization_url = await start(api, user, "google")
    asked = query_of(authorization_url)
    assert asked["access_type"] == "offline" and asked["prompt"] == "consent"
    assert asked["code_challenge_method"] == "S256"
    assert "https://www.googleapis.com/auth/gmail.modify" in asked["scope"].split()
    callback_url = await consent(authorization_url)
    assert query_of(callback_url)["iss"] == GOOGLE_ISSUER
    _connected_to(await finish(api, user, callback_url), "google")

    [row] = await connection_rows(user.user_id)
    assert row["account_id"] == "109876543210987654321"
    assert row["account_label"] == "ada@gmail.example"
    first = await stored_credentials(row["id"])
    assert first["refresh_token"]
    assert peer.token_requests[0]["has_verifier"] is True

    tokens_seen = {first["access_token"]}
    for _ in range(2):
        await expire_token(row["id"])
        token = await service.get_access_token(owner_id=user.user_id, provider_id="google")
        assert token.token not in tokens_seen
        tokens_seen.add(token.token)
        # The refresh answer carried no refresh token; the first one is still the one kept.
        assert (await stored_credentials(row["id"]))["refresh_token"] == first["refresh_token"]
    assert [r["grant_type"] for r in peer.token_requests] == [
        "authorization_code",
        "refresh_token",
        "refresh_token",
    ]


async def test_a_missing_google_scope_is_refused_by_name_and_the_grant_handed_back(api, oauth_env):
    peer = oauth_env.state
    plan = peer.consent["google"]
    plan.granted_scopes = [
        "openid",
        "https://www.googleapis.com/auth/userinfo.email",
        "https://www.googleapis.com/auth/userinfo.profile",
        "https://www.googleapis.com/auth/gmail.modify",
        "https://www.googleapis.com/auth/calendar",
    ]
    user = await sign_up()
    code, message = failure_of(await connect(api, user, "google"))
    assert code == "missing_scope"
    assert "https://www.googleapis.com/auth/drive" in message
    assert "gmail" not in message
    assert await connection_rows(user.user_id) == []
    assert await events_of(user.user_id) == []
    # The partial grant is not left valid at the provider.
    assert [provider for provider, _ in peer.revoked] == ["google"]


async def test_access_denied_gives_a_friendly_message_and_never_echoes_the_description(
    api, oauth_env
):
    oauth_env.state.consent["google"].deny = True
    user = await sign_up()
    response = await connect(api, user, "google")
    code, message = failure_of(response)
    assert code == "access_denied"
    assert message == (
        "You did not allow Carmenta to use your Google account, so nothing was connected."
    )
    assert "script" not in location(response)
    assert await connection_rows(user.user_id) == []
    assert await pending_states(user.user_id) == []


# -- GitHub --------------------------------------------------------------------------


async def test_github_verifies_pkce_and_rotates_refresh_tokens(api, oauth_env):
    peer = oauth_env.state
    user = await sign_up()
    authorization_url = await start(api, user, "github")
    asked = query_of(authorization_url)
    assert asked["code_challenge_method"] == "S256" and len(asked["code_challenge"]) == 43
    _connected_to(await finish(api, user, await consent(authorization_url)), "github")

    [row] = await connection_rows(user.user_id)
    assert (row["account_id"], row["account_label"]) == ("583231", "octo-ada")
    first = await stored_credentials(row["id"])
    assert first["access_token"].startswith("ghu_")

    refresh_tokens = [first["refresh_token"]]
    for _ in range(2):
        await expire_token(row["id"])
        token = await service.get_access_token(owner_id=user.user_id, provider_id="github")
        stored = await stored_credentials(row["id"])
        assert stored["access_token"] == token.token
        assert stored["refresh_token"] not in refresh_tokens
        # The previous refresh token no longer works at GitHub; the new one does.
        assert refresh_tokens[-1] not in peer.refresh_tokens
        assert stored["refresh_token"] in peer.refresh_tokens
        refresh_tokens.append(stored["refresh_token"])

    await _revoke_access_token("github", token.token)
    assert peer.revoked == [("github", token.token)]
    # Deleting the grant ends every token of the user for the app.
    assert not any(t.provider == "github" for t in peer.access_tokens.values())
    assert not any(t.provider == "github" for t in peer.refresh_tokens.values())
    await _disconnect(user, row["id"])


# -- Dropbox -------------------------------------------------------------------------


async def test_dropbox_asks_for_offline_access_with_pkce(api, oauth_env):
    peer = oauth_env.state
    user = await sign_up()
    authorization_url = await start(api, user, "dropbox")
    asked = query_of(authorization_url)
    assert asked["token_access_type"] == "offline"
    assert asked["code_challenge_method"] == "S256"
    _connected_to(await finish(api, user, await consent(authorization_url)), "dropbox")

    [row] = await connection_rows(user.user_id)
    assert row["account_id"].startswith("dbid:")
    assert row["account_label"] == "ada@dropbox.example"
    first = await stored_credentials(row["id"])
    assert first["refresh_token"]

    await expire_token(row["id"])
    token = await service.get_access_token(owner_id=user.user_id, provider_id="dropbox")
    assert token.token != first["access_token"]
    assert (await stored_credentials(row["id"]))["refresh_token"] == first["refresh_token"]

    await _revoke_access_token("dropbox", token.token)
    assert peer.revoked == [("dropbox", token.token)]
    await _disconnect(user, row["id"])


# -- the routes around the flow ------------------------------------------------------


async def test_authorize_sends_signed_out_visitors_to_sign_in_and_back(api):
    response = await api.get("/connections/slack/authorize?return=/connections")
    assert response.status_code == 303
    assert response.headers["location"] == (
        "/sign-in?next=%2Fconnections%2Fslack%2Fauthorize%3Freturn%3D%2Fconnections"
    )


@pytest.mark.parametrize(
    ("provider_id", "reason"),
    [
        ("myspace", "does not know"),
        ("anthropic", "API key"),
        ("openai_compatible", "API key"),
    ],
)
async def test_authorize_refuses_what_cannot_be_connected_by_sign_in(api, provider_id, reason):
    user = await sign_up()
    response = await api.get(
        f"/connections/{provider_id}/authorize", headers={"Cookie": user.cookie}
    )
    assert response.status_code == 404
    assert reason in response.json()["error"]
    assert await pending_states(user.user_id) == []


async def test_a_provider_the_operator_has_not_set_up_is_not_found(api, monkeypatch):
    monkeypatch.delenv("DROPBOX_CLIENT_SECRET")
    oauth_support.reset_caches()
    user = await sign_up()
    response = await api.get(
        "/connections/dropbox/authorize",
        headers={"Cookie": user.cookie, "Accept": "text/html"},
    )
    assert response.status_code == 404
    assert "Dropbox is not set up" in response.text
    assert response.headers["cache-control"] == "no-store"


async def test_the_return_path_is_kept_and_connected_is_added(api, oauth_env):
    user = await sign_up()
    response = await connect(api, user, "slack", return_path="/chat/42?tab=tools#top")
    assert location(response) == "/chat/42?tab=tools&connected=slack#top"


@pytest.mark.parametrize("provider_id", ["slack", "notion", "google", "github", "dropbox"])
async def test_disconnecting_revokes_the_grant_at_the_provider(api, oauth_env, provider_id):
    user = await sign_up()
    _connected_to(await connect(api, user, provider_id), provider_id)
    [row] = await connection_rows(user.user_id)
    await _disconnect(user, row["id"])
    assert [provider for provider, _ in oauth_env.state.revoked] == [provider_id]


# -- the registry --------------------------------------------------------------------


def test_every_provider_is_found_in_display_order():
    settings = Settings(_env_file=None)
    ids = [provider.id for provider in registry.all_providers(settings)]
    assert ids == [
        "google",
        "slack",
        "notion",
        "github",
        "dropbox",
        "oidc",
        "anthropic",
        "openai_compatible",
    ]
    configured = {
        p.id for p in registry.all_providers(settings) if registry.is_configured(p, settings)
    }
    assert configured == {"anthropic", "openai_compatible"}


def test_an_unknown_provider_is_named_clearly():
    with pytest.raises(registry.UnknownProvider) as unknown:
        registry.get_provider("myspace", Settings(_env_file=None))
    assert str(unknown.value) == "No service called 'myspace' is known to Carmenta."
    assert isinstance(unknown.value, KeyError)


def test_endpoint_overrides_move_a_provider_and_its_api_calls():
    settings = Settings(
        _env_file=None,
        github_client_id="id",
        github_client_secret="secret",
        oauth_endpoint_overrides=json.dumps(
            {
                "github": {
                    "api_base": "https://ghe.example/api/v3/",
                    "token_url": "https://ghe.example/login/oauth/access_token",
                }
            }
        ),
    )
    github = registry.get_provider("github", settings)
    assert github.endpoints.api_base == "https://ghe.example/api/v3"
    assert github.endpoints.token_url == "https://ghe.example/login/oauth/access_token"
    assert github.endpoints.authorize_url == "https://github.com/login/oauth/authorize"
    assert registry.is_configured(github, settings)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("{not json", "not valid JSON"),
        ("[]", "must be a JSON object"),
        ('{"github": {"api_bsae": "https://x"}}', "unknown keys"),
        ('{"github": {"api_base": "ftp://x"}}', "must be an http(s) URL"),
    ],
)
def test_broken_endpoint_overrides_are_a_configuration_error(raw, expected):
    settings = Settings(_env_file=None, oauth_endpoint_overrides=raw)
    with pytest.raises(ConfigurationError) as broken:
        registry.get_provider("github", settings)
    assert expected in str(broken.value)
