"""Connections in the browser: OAuth through a real authorization server, API keys, disconnect."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg
import pytest
from playwright.sync_api import expect

GOOD_KEY = "sk-e2e-good-key-0123456789abcdef"


class _ModelsHandler(BaseHTTPRequestHandler):
    """An OpenAI-compatible endpoint that knows one key: GET /v1/models."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        if self.path.rstrip("/") != "/v1/models":
            self.send_response(404)
            self.end_headers()
            return
        if self.headers.get("Authorization") != f"Bearer {GOOD_KEY}":
            body = json.dumps({"error": {"message": "Incorrect API key provided"}}).encode()
            self.send_response(401)
        else:
            body = json.dumps({"object": "list", "data": [{"id": "local-model"}]}).encode()
            self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def models_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ModelsHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/v1"
    server.shutdown()


def _connections_of(app_server, email: str) -> list[tuple]:
    with psycopg.connect(app_server.database_url) as connection:
        return connection.execute(
            "select c.provider, c.account_label, c.encrypted_credentials from service_connections c"
            " join users u on u.id = c.owner_id where u.email = %s order by c.created_at",
            (email,),
        ).fetchall()


def test_connect_through_the_authorization_server_then_disconnect(
    page, account, app_server, oidc_provider
):
    oidc_provider.put_user("ada-e2e", email="ada@acme.example", name="Ada Lovelace")
    page.goto("/connections")
    card = page.get_by_test_id("provider-card").filter(has_text="Acme SSO")
    expect(card).to_be_visible()
    card.get_by_role("link", name="Connect Acme SSO").click()

    # The authorization server's own consent page, on its own origin.
    page.wait_for_url(re.compile(re.escape(oidc_provider.url)))
    page.locator('input[name="sub"]').fill("ada-e2e")
    page.locator('input[name="sub"]').press("Enter")

    page.wait_for_url(re.compile(r"/connections/?\?connected=oidc"))
    expect(page.get_by_role("status").filter(has_text="Connected")).to_be_visible()
    row = card.get_by_test_id("account-row")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("Default")
    expect(card).to_contain_text("Connected")
    stored = _connections_of(app_server, account.email)
    assert [(provider, secret.startswith("v1.")) for provider, _, secret in stored] == [
        ("oidc", True)
    ]

    history = row.get_by_test_id("account-history")
    history.get_by_text("History").click()
    expect(history).to_contain_text("Connected by you")

    row.get_by_role("button", name=re.compile("^Test ")).click()
    expect(page.get_by_role("status").filter(has_text="The connection works.")).to_be_visible()

    row.get_by_role("button", name=re.compile("^Disconnect ")).click()
    dialog = page.get_by_role("alertdialog")
    expect(dialog).to_contain_text("Disconnect this account?")
    dialog.get_by_role("button", name="Disconnect").click()
    expect(card.get_by_test_id("account-row")).to_have_count(0)
    assert [p for p, _, _ in _connections_of(app_server, account.email)] == []


def test_add_an_api_key_checked_against_the_provider(page, account, app_server, models_server):
    # Everything the server sends to the browser, to prove the key never comes back.
    received: list[str] = []
    page.on(
        "websocket",
        lambda socket: socket.on("framereceived", lambda payload: received.append(str(payload))),
    )
    page.goto("/connections")
    card = page.get_by_test_id("provider-card").filter(has_text="OpenAI-compatible")
    card.get_by_role("button", name=re.compile("^Add a key for")).click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()

    dialog.get_by_label("API key", exact=True).fill("has spaces in it")
    expect(dialog.get_by_test_id("api-key-problem")).to_contain_text("no spaces")

    dialog.get_by_label("API key", exact=True).fill("sk-e2e-wrong-key-000000000000")
    dialog.get_by_label("Base URL").fill(models_server)
    dialog.get_by_role("button", name="Check and save").click()
    expect(dialog.get_by_test_id("form-error")).to_contain_text("did not accept")
    assert [p for p, _, _ in _connections_of(app_server, account.email)] == []

    dialog.get_by_label("API key", exact=True).fill(GOOD_KEY)
    dialog.get_by_role("button", name="Check and save").click()
    expect(dialog).to_be_hidden()
    row = card.get_by_test_id("account-row")
    expect(row).to_have_count(1)
    stored = _connections_of(app_server, account.email)
    assert [provider for provider, _, _ in stored] == ["openai_compatible"]
    assert GOOD_KEY not in stored[0][2]
    assert received, "no websocket traffic was observed"
    assert not any(GOOD_KEY in frame for frame in received)
