"""Handlers decide the user on the server: direct websocket calls cannot borrow a session.

Reflex event handlers can be called by anyone who opens the websocket. These tests
call the account page's data handlers directly, without a session and with one
user's valid session against another user's objects, and check that nothing changes
and nothing of the other user comes back.
"""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from carmenta.state.account import AccountState
from tests.e2e.event_client import call_handler
from tests.e2e.pages import SignUpPage

STATE = AccountState.get_full_name()


def _call(**kwargs) -> list[dict]:
    # The browser tests keep an event loop running in this thread; use another.
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, call_handler(**kwargs)).result()


def _session_cookie(storage_state_path) -> str:
    state = json.loads(open(storage_state_path).read())
    cookie = next(c for c in state["cookies"] if c["name"] == "carmenta_session")
    return f"carmenta_session={cookie['value']}"


@pytest.fixture(scope="module")
def victim(browser, app_server, tmp_path_factory) -> dict:
    """A second person, signed up in their own browser."""
    context = browser.new_context(base_url=app_server.url)
    page = context.new_page()
    page.set_default_timeout(20_000)
    email = f"victim-{tmp_path_factory.mktemp('v').name[-6:]}@example.com"
    SignUpPage(page).open().sign_up(email=email, password="victim's long passphrase", name="Vic")
    page.wait_for_url(f"{app_server.url}/")
    context.close()
    with psycopg.connect(app_server.database_url) as connection:
        user_id, session_id, name = connection.execute(
            "select u.id, s.id, u.display_name from users u join auth_sessions s"
            " on s.user_id = u.id where u.email = %s",
            (email,),
        ).fetchone()
    return {"email": email, "user_id": user_id, "session_id": str(session_id), "name": name}


def _victim_now(app_server, victim) -> tuple:
    with psycopg.connect(app_server.database_url) as connection:
        return connection.execute(
            "select s.revoked_at, u.display_name from auth_sessions s join users u"
            " on u.id = s.user_id where s.id = %s",
            (victim["session_id"],),
        ).fetchone()


def _everything_sent(updates: list[dict]) -> str:
    return json.dumps(updates)


def _values_sent(updates: list[dict], field: str) -> list:
    """Every value the server sent for a state field (delta keys carry a suffix)."""
    values = []
    for update in updates:
        for substate in (update.get("delta") or {}).values():
            for key, value in substate.items():
                if key == field or key.startswith(field + "_rx_state"):
                    values.append(value)
    return values


def test_revoking_a_session_without_a_session_changes_and_returns_nothing(app_server, victim):
    updates = _call(
        base_url=app_server.url,
        handler=f"{STATE}.revoke_session",
        payload={"session_id": victim["session_id"]},
    )
    assert updates, "the server answered nothing at all"
    assert _victim_now(app_server, victim) == (None, victim["name"])
    sent = _everything_sent(updates)
    assert victim["session_id"] not in sent
    assert victim["email"] not in sent


def test_revoking_another_users_session_with_a_valid_session_changes_nothing(
    app_server, account, victim
):
    updates = _call(
        base_url=app_server.url,
        handler=f"{STATE}.revoke_session",
        payload={"session_id": victim["session_id"]},
        cookie=_session_cookie(account.storage_state),
    )
    assert _victim_now(app_server, victim) == (None, victim["name"])
    sent = _everything_sent(updates)
    assert victim["session_id"] not in sent
    assert victim["email"] not in sent
    # The caller is recognised as themselves, and only as themselves.
    assert account.email in sent


def test_loading_sessions_without_a_session_returns_none(app_server, victim):
    updates = _call(base_url=app_server.url, handler=f"{STATE}.load", payload={})
    sent = _everything_sent(updates)
    assert victim["session_id"] not in sent
    assert victim["email"] not in sent
    assert all(value == [] for value in _values_sent(updates, "sessions"))
    assert all(value is False for value in _values_sent(updates, "signed_in"))
    assert _values_sent(updates, "signed_in"), "the handler did not report the signed-out state"


def test_saving_a_profile_without_a_session_changes_nobody(app_server, victim):
    _call(
        base_url=app_server.url,
        handler=f"{STATE}.save_profile",
        payload={"form_data": {"display_name": "Mallory was here"}},
    )
    with psycopg.connect(app_server.database_url) as connection:
        renamed = connection.execute(
            "select count(*) from users where display_name = 'Mallory was here'"
        ).fetchone()[0]
    assert renamed == 0
    assert _victim_now(app_server, victim) == (None, victim["name"])


def test_a_forged_cookie_is_treated_as_signed_out(app_server, victim):
    updates = _call(
        base_url=app_server.url,
        handler=f"{STATE}.revoke_session",
        payload={"session_id": victim["session_id"]},
        cookie="carmenta_session=eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.",
    )
    assert _victim_now(app_server, victim) == (None, victim["name"])
    assert victim["email"] not in _everything_sent(updates)
