"""Attacks on the OAuth callback: each is refused, and nothing is stored.

Each test also checks what happened to the pending authorization: spent when the
callback proved it belonged to this user and provider, untouched otherwise.
"""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlencode

import pytest
from sqlalchemy import text

from carmenta import db
from carmenta.connections.oauth import hash_state
from tests.integration import oauth_support
from tests.integration.oauth_support import (
    STATE_SHAPE,
    connection_rows,
    consent,
    failure_of,
    finish,
    location,
    pending_states,
    query_of,
    random_state,
    sign_up,
    start,
)

oauth_env = oauth_support.oauth_env
api = oauth_support.api
oidc_peer = oauth_support.oidc_peer
provider_peer = oauth_support.provider_peer


def _callback(provider_id: str, **params: str) -> str:
    return f"/connections/{provider_id}/callback?{urlencode(params)}"


async def _assert_nothing_stored(*users) -> None:
    for user in users:
        assert await connection_rows(user.user_id) == []


async def test_a_callback_without_state_is_refused_and_the_pending_one_kept(api, oauth_env):
    user = await sign_up()
    callback_url = await consent(await start(api, user, "github"))
    code = query_of(callback_url)["code"]
    response = await api.get(_callback("github", code=code), headers={"Cookie": user.cookie})
    assert failure_of(response)[0] == "invalid_state"
    await _assert_nothing_stored(user)
    assert len(await pending_states(user.user_id)) == 1
    assert oauth_env.state.token_requests == []


async def test_a_forged_state_is_refused(api, oauth_env):
    user = await sign_up()
    callback_url = await consent(await start(api, user, "github"))
    code = query_of(callback_url)["code"]
    response = await api.get(
        _callback("github", code=code, state=random_state()), headers={"Cookie": user.cookie}
    )
    assert failure_of(response)[0] == "invalid_state"
    await _assert_nothing_stored(user)
    assert len(await pending_states(user.user_id)) == 1
    assert oauth_env.state.token_requests == []


async def test_an_expired_state_is_refused(api, oauth_env):
    user = await sign_up()
    callback_url = await consent(await start(api, user, "slack"))
    async with db.session_scope() as session:
        await session.execute(
            text(
                "update oauth_states set expires_at = now() - interval '1 second'"
                " where owner_id = :owner"
            ),
            {"owner": user.user_id},
        )
    code, message = failure_of(await finish(api, user, callback_url))
    assert code == "invalid_state"
    assert "expired" in message
    await _assert_nothing_stored(user)
    assert oauth_env.state.token_requests == []
    # Left for the sweep at the next authorization, which removes it.
    assert len(await pending_states(user.user_id)) == 1
    await start(api, user, "slack")
    [fresh] = await pending_states(user.user_id)
    assert fresh["expires_at"] - fresh["created_at"] == pytest.approx(
        timedelta(minutes=10), abs=timedelta(seconds=5)
    )


async def test_a_replayed_state_is_refused_and_the_code_not_exchanged_twice(api, oauth_env):
    user = await sign_up()
    callback_url = await consent(await start(api, user, "google"))
    first = await finish(api, user, callback_url)
    assert query_of(location(first))["connected"] == "google"
    replay = await finish(api, user, callback_url)
    assert failure_of(replay)[0] == "invalid_state"
    assert len(await connection_rows(user.user_id)) == 1
    assert [r["grant_type"] for r in oauth_env.state.token_requests] == ["authorization_code"]


async def test_another_users_state_is_refused_and_stays_theirs(api, oauth_env):
    victim = await sign_up()
    attacker = await sign_up()
    callback_url = await consent(await start(api, victim, "slack"))
    # The attacker's browser delivers the victim's callback (or the other way round).
    response = await finish(api, attacker, callback_url)
    assert failure_of(response)[0] == "invalid_state"
    await _assert_nothing_stored(victim, attacker)
    assert len(await pending_states(victim.user_id)) == 1
    assert oauth_env.state.token_requests == []
    # The authorization still completes for the person who started it.
    assert query_of(location(await finish(api, victim, callback_url)))["connected"] == "slack"
    assert len(await connection_rows(victim.user_id)) == 1
    await _assert_nothing_stored(attacker)


async def test_a_code_for_one_provider_delivered_to_another_providers_callback(api, oauth_env):
    user = await sign_up()
    github_callback = await consent(await start(api, user, "github"))
    # The same code and state, at Slack's callback (the mix-up attack).
    response = await finish(api, user, github_callback, provider_id="slack")
    assert failure_of(response)[0] == "invalid_state"
    await _assert_nothing_stored(user)
    assert oauth_env.state.token_requests == []
    [pending] = await pending_states(user.user_id)
    assert pending["provider"] == "github"


async def test_an_answer_naming_another_issuer_is_refused_before_any_exchange(api, oauth_env):
    oauth_env.state.consent["google"].issuer = "https://accounts.evil.example"
    user = await sign_up()
    callback_url = await consent(await start(api, user, "google"))
    code, _ = failure_of(await finish(api, user, callback_url))
    assert code == "issuer_mismatch"
    await _assert_nothing_stored(user)
    assert oauth_env.state.token_requests == []
    assert await pending_states(user.user_id) == []


@pytest.mark.parametrize(
    "return_path",
    [
        "https://evil.example/",
        "//evil.example",
        "/\\evil.example",
        "\\\\evil.example",
        "javascript:alert(1)",
        "/%2F%2Fevil.example",
        "/\tevil",
        "/sign-in?next=//evil.example",
    ],
)
async def test_a_return_path_off_this_site_becomes_the_connections_page(
    api, oauth_env, return_path
):
    user = await sign_up()
    authorization_url = await start(api, user, "slack", return_path=return_path)
    [pending] = await pending_states(user.user_id)
    if return_path == "/%2F%2Fevil.example":
        # Percent-encoded slashes stay a path on this site.
        assert pending["return_path"] == return_path
    else:
        assert pending["return_path"] == "/connections"
    response = await finish(api, user, await consent(authorization_url))
    target = location(response)
    assert target.startswith("/") and not target.startswith(("//", "/\\"))
    assert "evil.example" not in target.split("?")[0].replace("%2F%2Fevil.example", "")


async def test_a_replayed_code_is_refused_by_the_provider_and_nothing_new_is_stored(api, oauth_env):
    user = await sign_up()
    old_callback = await consent(await start(api, user, "github"))
    assert query_of(location(await finish(api, user, old_callback)))["connected"] == "github"
    # A fresh, valid state carrying the already used code.
    new_state = query_of(await start(api, user, "github"))["state"]
    replay = _callback("github", code=query_of(old_callback)["code"], state=new_state)
    response = await api.get(replay, headers={"Cookie": user.cookie})
    assert failure_of(response)[0] == "token_exchange"
    assert len(await connection_rows(user.user_id)) == 1
    # The state that carried the replayed code is spent.
    assert await pending_states(user.user_id) == []


async def test_a_callback_without_a_signed_in_browser_changes_nothing(api, oauth_env):
    user = await sign_up()
    callback_url = await consent(await start(api, user, "dropbox"))
    code, message = failure_of(await finish(api, None, callback_url))
    assert code == "not_signed_in"
    assert "Sign in" in message
    await _assert_nothing_stored(user)
    assert len(await pending_states(user.user_id)) == 1
    assert oauth_env.state.token_requests == []


async def test_a_callback_with_a_parameter_given_twice_is_refused(api, oauth_env):
    user = await sign_up()
    callback_url = await consent(await start(api, user, "slack"))
    query = query_of(callback_url)
    doubled = f"/connections/slack/callback?{urlencode(query)}&state={random_state()}"
    response = await api.get(doubled, headers={"Cookie": user.cookie})
    assert failure_of(response)[0] == "duplicate_parameter"
    await _assert_nothing_stored(user)
    assert len(await pending_states(user.user_id)) == 1


async def test_a_head_request_neither_starts_nor_spends_an_authorization(api, oauth_env):
    user = await sign_up()
    callback_url = await consent(await start(api, user, "slack"))
    response = await api.head(
        "/connections/slack/callback?" + callback_url.split("?", 1)[1],
        headers={"Cookie": user.cookie},
    )
    assert response.status_code == 405
    response = await api.head("/connections/slack/authorize", headers={"Cookie": user.cookie})
    assert response.status_code == 405
    assert len(await pending_states(user.user_id)) == 1
    await _assert_nothing_stored(user)


async def test_the_state_is_random_hashed_and_bound_to_the_configured_address(
    api, oauth_env, monkeypatch
):
    monkeypatch.setenv("PUBLIC_URL", "https://carmenta.example.com")
    oauth_support.reset_caches()
    user = await sign_up()
    cookie = f"__Host-carmenta_session={user.token}"
    response = await api.get(
        "/connections/github/authorize",
        headers={"Cookie": cookie, "Host": "evil.example", "X-Forwarded-Host": "evil.example"},
    )
    asked = query_of(location(response))
    # The redirect URI comes from PUBLIC_URL, never from the request's Host header.
    assert asked["redirect_uri"] == "https://carmenta.example.com/connections/github/callback"
    assert STATE_SHAPE.match(asked["state"])
    [pending] = await pending_states(user.user_id)
    assert pending["state_hash"] == hash_state(asked["state"])
    assert asked["state"] not in str(pending)
    # The PKCE verifier is stored encrypted (AES-GCM, bound to this row).
    assert pending["code_verifier"].startswith("v1.")
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["referrer-policy"] == "no-referrer"


async def test_states_are_never_reused(api, oauth_env):
    user = await sign_up()
    states = {query_of(await start(api, user, "slack"))["state"] for _ in range(20)}
    assert len(states) == 20
