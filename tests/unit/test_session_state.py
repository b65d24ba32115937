"""The browser cannot set who it is: no setter for the signed-in user's fields."""

from carmenta.state.account import AccountState
from carmenta.state.session import SessionState


def test_session_fields_have_no_setters_the_browser_could_call():
    handlers = set(SessionState.event_handlers)
    for field in ("signed_in", "user_email", "user_name", "is_admin", "auth_checked"):
        assert f"set_{field}" not in handlers
    assert "set_sessions" not in set(AccountState.event_handlers)


def test_the_clerk_token_never_reaches_the_browser():
    # A field whose name starts with "_" is backend-only: kept in the state, never sent.
    assert "_clerk_token" in SessionState.get_fields()
    assert "_clerk_token" not in SessionState.vars
    assert not any("clerk_token" in name for name in SessionState.vars)
