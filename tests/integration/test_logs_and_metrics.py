"""Structured logs and /metrics over a full flow with planted secrets.

The machine routes run behind the same request observer the app uses, with logging set
up exactly as in production (LOG_FORMAT=json, here at debug level so every library's
lines are in). A person signs up with a password, signs in, connects GitHub through
its local stand-in (OAuth code, state, access and refresh tokens), uploads a file and
saves an API key; a bearer token and a password are planted in requests and in log
calls. Not one of them may appear anywhere in the output; request ids and user ids
must.
"""

from __future__ import annotations

import io
import json
import logging
import uuid

import httpx
import pytest

from carmenta import db
from carmenta.api.routes import build_api, observe_requests
from carmenta.auth import builtin
from carmenta.chat.engine import ChatEngine
from carmenta.chat.service import CatalogModels
from carmenta.connections import api_keys
from carmenta.connections.providers import registry
from carmenta.conversations import service as conversations
from carmenta.knowledge.embeddings import get_local_embedder
from carmenta.observability import logs, metrics
from carmenta.observability.logs import configure_logging
from carmenta.settings import get_settings, reset_settings_cache
from tests.integration import oauth_support
from tests.integration.files_support import SignedIn, upload
from tests.integration.oauth_support import ORIGIN, stored_credentials

oauth_env = oauth_support.oauth_env
oidc_peer = oauth_support.oidc_peer
provider_peer = oauth_support.provider_peer

PLANTED_PASSWORD = "planted-Passw0rd-tangerine-zebra"  # noqa: S105 (a test value)
PLANTED_TOKEN = "plantedtoken_" + uuid.uuid4().hex + "Xy9"
METRICS_TOKEN = "metrics-" + uuid.uuid4().hex


@pytest.fixture
def captured_logs(oauth_env, monkeypatch):
    """Everything every logger writes, in production's format, into a buffer."""
    monkeypatch.setenv("LOG_FORMAT", "json")
    monkeypatch.setenv("LOG_LEVEL", "debug")
    monkeypatch.setenv("METRICS_TOKEN", METRICS_TOKEN)
    reset_settings_cache()
    buffer = io.StringIO()
    root = logging.getLogger()
    previous_level = root.level
    handler = configure_logging(get_settings(), stream=buffer)
    yield buffer
    root.removeHandler(handler)
    root.setLevel(previous_level)


@pytest.fixture
async def observed_api(captured_logs):
    api = build_api()
    transport = httpx.ASGITransport(app=observe_requests(api)(api))
    async with httpx.AsyncClient(transport=transport, base_url=ORIGIN) as http:
        yield http


def _records(buffer: io.StringIO) -> list[dict]:
    lines = [line for line in buffer.getvalue().splitlines() if line.strip()]
    assert lines, "nothing was logged"
    return [json.loads(line) for line in lines]  # every line is one JSON object


async def _sign_up_and_sign_in(api: httpx.AsyncClient, email: str) -> SignedIn:
    settings = get_settings()
    async with db.session_scope() as session:
        await builtin.sign_up(
            session=session, settings=settings, email=email, password=PLANTED_PASSWORD
        )
        await session.commit()
    async with db.session_scope() as session:
        result = await builtin.sign_in(
            session=session, settings=settings, email=email, password=PLANTED_PASSWORD
        )
        assert result.outcome is builtin.SignInOutcome.signed_in
        code = await builtin.create_handoff(session=session, session_id=result.session_id)
        await session.commit()
    response = await api.post("/auth/session", json={"code": code}, headers={"Origin": ORIGIN})
    assert response.status_code == 204
    token = response.cookies["carmenta_session"]
    return SignedIn(user_id=result.user_id, token=token)


async def test_a_full_flow_logs_ids_and_timings_and_never_a_secret(
    observed_api, captured_logs, oauth_env
):
    api = observed_api
    email = f"planted-{uuid.uuid4().hex[:8]}@example.com"
    user = await _sign_up_and_sign_in(api, email)

    # OAuth: code and state travel in URLs, tokens come back from the provider.
    connected = await oauth_support.connect(api, user, "github")
    assert connected.status_code == 303
    [connection] = [
        row
        for row in await oauth_support.connection_rows(user.user_id)
        if row["provider"] == "github"
    ]
    github_tokens = await stored_credentials(connection["id"])

    uploaded = await upload(api, user, "notes.txt", b"hello from the log test\n")
    assert uploaded.status_code in (200, 201), uploaded.text

    settings = get_settings()
    openai_key = oauth_env.state.openai_key
    async with db.session_scope() as session:
        await api_keys.add_api_key(
            session=session,
            owner_id=user.user_id,
            provider=registry.get_provider("openai_compatible", settings),
            api_key=openai_key,
            base_url=f"{oauth_env.url}/openai/v1",
            settings=settings,
        )
        await session.commit()

    # Planted: a bearer token and the password in headers, query and careless log calls.
    refused = await api.get(
        f"/connections/github/callback?code={PLANTED_TOKEN}&state={PLANTED_TOKEN}"
        f"&token={PLANTED_TOKEN}&password={PLANTED_PASSWORD}",
        headers={"Authorization": f"Bearer {PLANTED_TOKEN}", "X-Request-ID": "lb-req-0001"},
    )
    assert refused.headers["x-request-id"] == "lb-req-0001"
    careless = logging.getLogger("carmenta.careless")
    careless.warning("calling the API with Authorization: Bearer %s", PLANTED_TOKEN)
    careless.info("form was %s", {"email_ok": True, "password": PLANTED_PASSWORD})
    careless.info("got %s", json.dumps({"access_token": github_tokens["access_token"]}))
    try:
        raise RuntimeError(f"provider said no to api_key={openai_key}")
    except RuntimeError:
        careless.exception("a failure with a key in its message")

    output = captured_logs.getvalue()
    secrets = {
        "password": PLANTED_PASSWORD,
        "planted token": PLANTED_TOKEN,
        "session token": user.token,
        "API key": openai_key,
        "email": email,
        **{f"github {name}": value for name, value in github_tokens.items() if value},
    }
    leaked = [name for name, value in secrets.items() if value in output]
    assert leaked == []

    records = _records(captured_logs)
    requests = [r for r in records if r["logger"] == "carmenta.http"]
    by_route = {(r["method"], r["route"]): r for r in requests}
    for expected in [
        ("POST", "/auth/session"),
        ("GET", "/connections/{provider}/authorize"),
        ("GET", "/connections/{provider}/callback"),
        ("POST", "/files/upload"),
    ]:
        assert expected in by_route, f"no log line for {expected}"
    for record in requests:
        assert len(record["request_id"]) >= 8
        assert isinstance(record["duration_ms"], float | int) and record["duration_ms"] >= 0
        assert isinstance(record["status"], int)
        assert "?" not in record["path"]
    assert len({r["request_id"] for r in requests}) == len(requests), "ids must be unique"
    # Requests of the signed-in person carry their id, and only their id.
    upload_line = by_route[("POST", "/files/upload")]
    assert upload_line["user_id"] == str(user.user_id)
    assert by_route[("GET", "/connections/{provider}/authorize")]["user_id"] == str(user.user_id)
    planted = [r for r in requests if r["request_id"] == "lb-req-0001"]
    assert planted and "[redacted]" in planted[0]["query"]
    # Lines logged while serving a request carry its id: the token exchange the callback
    # makes with the provider is logged by httpx under the callback's request id.
    callback_ids = {
        r["request_id"]
        for r in requests
        if r["route"] == "/connections/{provider}/callback" and r["status"] == 303
    }
    assert any(r["logger"] == "httpx" and r.get("request_id") in callback_ids for r in records)
    [failure] = [r for r in records if r["message"] == "a failure with a key in its message"]
    assert "RuntimeError" in failure["exception"] and "[redacted]" in failure["exception"]


async def test_metrics_are_hidden_without_the_token_and_count_requests_jobs_and_streams(
    observed_api, monkeypatch
):
    api = observed_api
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": METRICS_TOKEN}):
        hidden = await api.get("/metrics", headers=headers)
        assert hidden.status_code == 404 and "carmenta" not in hidden.text

    def value(name: str, **labels: str) -> float:
        return metrics.REGISTRY.get_sample_value(name, labels) or 0.0

    health_before = value(
        "carmenta_http_requests_total", method="GET", route="/health", status="200"
    )
    for _ in range(3):
        assert (await api.get("/health")).status_code == 200
    assert (
        value("carmenta_http_requests_total", method="GET", route="/health", status="200")
        == health_before + 3
    )
    unknown = await api.get("/connections/nope/authorize")
    assert unknown.status_code in (302, 303, 401, 404)

    # A chat reply: started, first text, finished complete, nothing left in flight.
    started = value("carmenta_chat_streams_started_total")
    complete = value("carmenta_chat_streams_finished_total", status="complete")
    first_tokens = value("carmenta_chat_time_to_first_token_seconds_count")
    in_flight = value("carmenta_chat_streams_in_flight")
    owner = (await oauth_support.sign_up()).user_id
    async with db.session_scope() as session:
        conversation = await conversations.create_conversation(session=session, owner_id=owner)
        await session.commit()
    settings = get_settings().model_copy(update={"offline_words_per_second": 2000.0})
    engine = ChatEngine(
        models=CatalogModels(settings), tools=None, settings=settings, embedder=get_local_embedder()
    )
    _, reply = await engine.send(owner_id=owner, conversation_id=conversation.id, content="Hello?")
    async for _ in engine.follow(owner_id=owner, message_id=reply.id):
        pass
    await engine.wait_for_background()
    assert value("carmenta_chat_streams_started_total") == started + 1
    assert value("carmenta_chat_streams_finished_total", status="complete") == complete + 1
    assert value("carmenta_chat_time_to_first_token_seconds_count") == first_tokens + 1
    assert value("carmenta_chat_streams_in_flight") == in_flight

    jobs_before = await metrics.job_counts()
    user = await oauth_support.sign_up()
    assert (await upload(api, user, "more.txt", b"a job for the queue\n")).status_code in (200, 201)
    jobs_after = await metrics.job_counts()
    queued_before = sum(n for (_, status), n in jobs_before.items() if status == "todo")
    queued_after = sum(n for (_, status), n in jobs_after.items() if status == "todo")
    assert queued_after == queued_before + 1

    response = await api.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    body = response.text
    assert 'carmenta_http_requests_total{method="GET",route="/health",status="200"}' in body
    assert 'route="/connections/{provider}/authorize"' in body
    assert "/connections/nope" not in body  # templates, not raw paths
    assert 'carmenta_http_request_duration_seconds_bucket{le="0.005",method="GET"' in body
    assert "carmenta_chat_time_to_first_token_seconds_count" in body
    assert 'carmenta_chat_streams_finished_total{status="complete"}' in body
    for status in ("todo", "doing", "failed"):
        assert f'status="{status}"' in body
    queued_line = next(
        line
        for line in body.splitlines()
        if line.startswith("carmenta_jobs{") and 'status="todo"' in line
    )
    assert float(queued_line.rsplit(" ", 1)[1]) >= 1


def test_redaction_blanks_credential_shapes_and_keeps_ordinary_text():
    samples = {
        "Authorization: Bearer abcDEF123456789xyz": "abcDEF123456789xyz",
        "jwt eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxMjMifQ.c2lnbmF0dXJl here": "eyJzdWIiOiIxMjMifQ",
        "key sk-ant-api03-abcdefghijklmnopqrstuvwx": "abcdefghijklmnopqrstuvwx",
        "slack xoxp-1234567890-abcdefghij": "xoxp-1234567890",
        "gh ghu_abcdefghijklmnopqrstuvwxyz0123": "ghu_abcdefghij",
        '{"password": "hunter2hunter2"}': "hunter2hunter2",
        "client_secret=s3cr3t-value&x=1": "s3cr3t-value",
        "/callback?code=onetimecode123&state=statevalue456": "onetimecode123",
        "postgresql://carmenta:dbpassword@db:5432/carmenta": "dbpassword",
        "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg\n-----END PRIVATE KEY-----": "MIIEvQIBADANBg",
    }
    for text, secret in samples.items():
        redacted = logs.redact(text)
        assert secret not in redacted, text
        assert "[redacted]" in redacted
    ordinary = "GET /files/upload 201 12.5 ms for user 0d3f and 3 tokens counted"
    assert logs.redact(ordinary) == ordinary
