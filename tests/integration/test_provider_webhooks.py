"""POST /webhooks/slack and /webhooks/github: signed, deduplicated, disconnecting.

Requests are signed the way Slack (v0 HMAC-SHA256 over `v0:{timestamp}:{body}`) and
GitHub (X-Hub-Signature-256 over the body) document it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from typing import Any

import pytest
from sqlalchemy import text

from carmenta import db
from carmenta.connections import service
from carmenta.connections.providers import registry
from carmenta.connections.providers.base import AccountIdentity, TokenSet
from carmenta.settings import get_settings
from tests.integration import oauth_support
from tests.integration.oauth_support import (
    GITHUB_WEBHOOK_SECRET,
    SLACK_SIGNING_SECRET,
    connection_rows,
    events_of,
    sign_up,
)

oauth_env = oauth_support.oauth_env
api = oauth_support.api
oidc_peer = oauth_support.oidc_peer
provider_peer = oauth_support.provider_peer

# Everything these tests record carries this prefix, so it can be removed after.
_EVENT_PREFIX = "EvTestWh"


@pytest.fixture(autouse=True)
async def _forget_deliveries(oauth_env):
    yield
    async with db.session_scope() as session:
        await session.execute(
            text(
                "delete from webhook_events where (source = 'slack' and event_id like :slack)"
                " or (source = 'github' and event_id like :github)"
            ),
            {"slack": _EVENT_PREFIX + "%", "github": "gh-test-%"},
        )


def _event_id() -> str:
    return f"{_EVENT_PREFIX}{uuid.uuid4().hex[:12]}"


def _slack_headers(body: bytes, *, at: float | None = None, secret: str = SLACK_SIGNING_SECRET):
    timestamp = str(int(at if at is not None else time.time()))
    digest = hmac.new(secret.encode(), b"v0:" + timestamp.encode() + b":" + body, hashlib.sha256)
    return {
        "Content-Type": "application/json",
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": "v0=" + digest.hexdigest(),
    }


def _slack_callback(team_id: str, event: dict[str, Any], event_id: str | None = None) -> bytes:
    return json.dumps(
        {
            "token": "XXYYZZ",
            "team_id": team_id,
            "api_app_id": "A0APP1",
            "event": event,
            "type": "event_callback",
            "event_id": event_id or _event_id(),
            "event_time": int(time.time()),
        }
    ).encode()


def _tokens_revoked(team_id: str, *user_ids: str, event_id: str | None = None) -> bytes:
    event = {"type": "tokens_revoked", "tokens": {"oauth": list(user_ids), "bot": ["B0BOT"]}}
    return _slack_callback(team_id, event, event_id)


def _app_uninstalled(team_id: str, event_id: str | None = None) -> bytes:
    return _slack_callback(team_id, {"type": "app_uninstalled"}, event_id)


async def _post_slack(api, body: bytes, **signing: Any):
    return await api.post("/webhooks/slack", content=body, headers=_slack_headers(body, **signing))


def _github_headers(body: bytes, *, event: str, delivery: str, secret=GITHUB_WEBHOOK_SECRET):
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {
        "Content-Type": "application/json",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery,
        "X-Hub-Signature-256": f"sha256={digest}",
    }


def _revoked_by(user_id: int) -> bytes:
    return json.dumps(
        {
            "action": "revoked",
            "sender": {"login": "octo-ada", "id": user_id, "type": "User"},
        }
    ).encode()


async def _connect(owner_id: uuid.UUID, provider_id: str, account_id: str) -> None:
    """A stored connection, as a completed authorization leaves it."""
    provider = registry.get_provider(provider_id, get_settings())
    async with db.session_scope() as session:
        await service.save_oauth_connection(
            session=session,
            owner_id=owner_id,
            provider=provider,
            identity=AccountIdentity(account_id=account_id, label=account_id),
            tokens=TokenSet(access_token=f"token-{uuid.uuid4().hex}"),
            requested_scopes=list(provider.scopes),
        )


async def _accounts(user) -> list[str]:
    return sorted(row["account_id"] for row in await connection_rows(user.user_id))


# -- Slack ---------------------------------------------------------------------------


async def test_slack_url_verification_echoes_the_challenge_once_signed(api):
    body = json.dumps(
        {
            "token": "XXYYZZ",
            "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P",
            "type": "url_verification",
        }
    ).encode()
    response = await _post_slack(api, body)
    assert response.status_code == 200
    assert response.json() == {"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}
    unsigned = await api.post("/webhooks/slack", content=body)
    assert unsigned.status_code == 401


async def test_slack_tokens_revoked_disconnects_exactly_those_users(api):
    ada, grace, other = await sign_up(), await sign_up(), await sign_up()
    await _connect(ada.user_id, "slack", "T1:U1")
    await _connect(ada.user_id, "slack", "T2:U1")  # same user id, another workspace
    await _connect(grace.user_id, "slack", "T1:U2")
    await _connect(other.user_id, "slack", "T1:U1")  # another Carmenta user, same Slack user
    await _connect(ada.user_id, "github", "T1:U1")  # another provider

    started = time.monotonic()
    response = await _post_slack(api, _tokens_revoked("T1", "U1"))
    assert time.monotonic() - started < 3
    assert response.status_code == 200
    assert response.json() == {"status": "processed"}
    assert await _accounts(ada) == ["T1:U1", "T2:U1"]  # github's T1:U1 and slack's T2:U1
    assert [row["provider"] for row in await connection_rows(ada.user_id)] == ["github", "slack"]
    assert await _accounts(grace) == ["T1:U2"]
    assert await _accounts(other) == []
    events = await events_of(other.user_id)
    assert [(e["event"], e["source"]) for e in events][-2:] == [
        ("revoked", "provider"),
        ("disconnected", "provider"),
    ]


async def test_slack_app_uninstalled_disconnects_the_whole_team(api):
    ada, grace = await sign_up(), await sign_up()
    await _connect(ada.user_id, "slack", "T1:U1")
    await _connect(grace.user_id, "slack", "T1:U2")
    await _connect(grace.user_id, "slack", "T10:U3")  # a team id that merely starts alike
    response = await _post_slack(api, _app_uninstalled("T1"))
    assert response.json() == {"status": "processed"}
    assert await _accounts(ada) == []
    assert await _accounts(grace) == ["T10:U3"]


@pytest.mark.parametrize("order", ["uninstalled_first", "revoked_first"])
async def test_slack_events_in_either_order_leave_the_same_result(api, order):
    ada, grace = await sign_up(), await sign_up()
    await _connect(ada.user_id, "slack", "T7:U1")
    await _connect(grace.user_id, "slack", "T7:U2")
    await _connect(grace.user_id, "slack", "T8:U2")
    bodies = [_app_uninstalled("T7"), _tokens_revoked("T7", "U1", "U2")]
    if order == "revoked_first":
        bodies.reverse()
    for body in bodies:
        response = await _post_slack(api, body)
        assert response.status_code == 200
        assert response.json() == {"status": "processed"}
    assert await _accounts(ada) == []
    assert await _accounts(grace) == ["T8:U2"]


async def test_a_redelivered_slack_event_is_answered_but_applied_once(api):
    ada = await sign_up()
    await _connect(ada.user_id, "slack", "T3:U1")
    event_id = _event_id()
    body = _tokens_revoked("T3", "U1", event_id=event_id)
    assert (await _post_slack(api, body)).json() == {"status": "processed"}
    # Reconnected since; a replay (freshly signed, as Slack's retries are) changes nothing.
    await _connect(ada.user_id, "slack", "T3:U1")
    replay = await _post_slack(api, body)
    assert replay.status_code == 200
    assert replay.json() == {"status": "duplicate"}
    assert await _accounts(ada) == ["T3:U1"]


async def test_slack_requests_with_a_wrong_or_missing_signature_are_refused(api):
    ada = await sign_up()
    await _connect(ada.user_id, "slack", "T4:U1")
    body = _tokens_revoked("T4", "U1")
    wrong_secret = await _post_slack(api, body, secret="not-the-secret")
    assert wrong_secret.status_code == 401
    tampered_headers = _slack_headers(body)
    tampered = await api.post(
        "/webhooks/slack", content=body.replace(b"U1", b"U9"), headers=tampered_headers
    )
    assert tampered.status_code == 401
    no_signature = await api.post(
        "/webhooks/slack",
        content=body,
        headers={"X-Slack-Request-Timestamp": str(int(time.time()))},
    )
    assert no_signature.status_code == 401
    assert await _accounts(ada) == ["T4:U1"]


# Well clear of the edge: the header holds whole seconds and the request takes time to
# arrive; the exact boundary is checked with a fixed clock in the unit tests.
@pytest.mark.parametrize("offset", [-330, -3600, 330])
async def test_slack_requests_outside_the_five_minute_window_are_refused(api, offset):
    ada = await sign_up()
    await _connect(ada.user_id, "slack", "T5:U1")
    response = await _post_slack(api, _tokens_revoked("T5", "U1"), at=time.time() + offset)
    assert response.status_code == 401
    assert await _accounts(ada) == ["T5:U1"]


async def test_a_slack_request_replayed_after_five_minutes_is_refused(api):
    ada = await sign_up()
    body = _tokens_revoked("T6", "U1")
    # Near the end of the window, with room for the steps below on a busy machine.
    headers = _slack_headers(body, at=time.time() - 280)
    assert (await api.post("/webhooks/slack", content=body, headers=headers)).status_code == 200
    await _connect(ada.user_id, "slack", "T6:U1")
    # The same signed request, captured and sent again: its own event id makes it a
    # duplicate inside the window, and its age refuses it after.
    again = await api.post("/webhooks/slack", content=body, headers=headers)
    assert again.json() == {"status": "duplicate"}
    stale = _slack_headers(body, at=time.time() - 301)
    assert (await api.post("/webhooks/slack", content=body, headers=stale)).status_code == 401
    assert await _accounts(ada) == ["T6:U1"]


async def test_slack_webhooks_without_a_signing_secret_are_unavailable(api, monkeypatch):
    monkeypatch.delenv("SLACK_SIGNING_SECRET")
    oauth_support.reset_caches()
    response = await _post_slack(api, _app_uninstalled("T1"))
    assert response.status_code == 503


async def test_a_signed_slack_body_that_is_not_an_event_is_a_bad_request(api):
    response = await _post_slack(api, b"not json")
    assert response.status_code == 400
    missing_team = json.dumps(
        {"type": "event_callback", "event_id": _event_id(), "event": {"type": "tokens_revoked"}}
    ).encode()
    assert (await _post_slack(api, missing_team)).status_code == 400


async def test_slack_events_of_no_interest_are_acknowledged(api):
    body = _slack_callback("T1", {"type": "member_joined_channel", "user": "U1"})
    response = await _post_slack(api, body)
    assert response.json() == {"status": "ignored"}


# -- GitHub --------------------------------------------------------------------------


async def test_github_authorization_revoked_disconnects_that_account(api):
    ada, grace = await sign_up(), await sign_up()
    await _connect(ada.user_id, "github", "583231")
    await _connect(grace.user_id, "github", "583231")
    await _connect(grace.user_id, "github", "5832310")
    body = _revoked_by(583231)
    delivery = f"gh-test-{uuid.uuid4()}"
    started = time.monotonic()
    response = await api.post(
        "/webhooks/github",
        content=body,
        headers=_github_headers(body, event="github_app_authorization", delivery=delivery),
    )
    assert time.monotonic() - started < 3
    assert response.status_code == 200
    assert response.json() == {"status": "processed"}
    assert await _accounts(ada) == []
    assert await _accounts(grace) == ["5832310"]


async def test_a_github_delivery_with_a_wrong_signature_is_refused(api):
    ada = await sign_up()
    await _connect(ada.user_id, "github", "424242")
    body = _revoked_by(424242)
    headers = _github_headers(
        body,
        event="github_app_authorization",
        delivery=f"gh-test-{uuid.uuid4()}",
        secret="wrong",
    )
    assert (await api.post("/webhooks/github", content=body, headers=headers)).status_code == 401
    headers.pop("X-Hub-Signature-256")
    assert (await api.post("/webhooks/github", content=body, headers=headers)).status_code == 401
    assert await _accounts(ada) == ["424242"]


async def test_a_replayed_github_delivery_is_applied_once(api):
    ada = await sign_up()
    await _connect(ada.user_id, "github", "777")
    body = _revoked_by(777)
    headers = _github_headers(
        body, event="github_app_authorization", delivery=f"gh-test-{uuid.uuid4()}"
    )
    first = await api.post("/webhooks/github", content=body, headers=headers)
    assert first.json() == {"status": "processed"}
    await _connect(ada.user_id, "github", "777")
    replay = await api.post("/webhooks/github", content=body, headers=headers)
    assert replay.json() == {"status": "duplicate"}
    assert await _accounts(ada) == ["777"]


async def test_other_github_events_are_acknowledged_and_change_nothing(api):
    ada = await sign_up()
    await _connect(ada.user_id, "github", "888")
    body = json.dumps({"zen": "Keep it logically awesome.", "hook_id": 1}).encode()
    headers = _github_headers(body, event="ping", delivery=f"gh-test-{uuid.uuid4()}")
    response = await api.post("/webhooks/github", content=body, headers=headers)
    assert response.json() == {"status": "ignored"}
    assert await _accounts(ada) == ["888"]


async def test_github_deliveries_need_a_delivery_id_and_a_secret(api, monkeypatch):
    body = _revoked_by(1)
    headers = _github_headers(body, event="github_app_authorization", delivery="")
    headers.pop("X-GitHub-Delivery")
    assert (await api.post("/webhooks/github", content=body, headers=headers)).status_code == 400
    monkeypatch.delenv("GITHUB_WEBHOOK_SECRET")
    oauth_support.reset_caches()
    headers["X-GitHub-Delivery"] = f"gh-test-{uuid.uuid4()}"
    assert (await api.post("/webhooks/github", content=body, headers=headers)).status_code == 503
