"""Access tokens against a real PostgreSQL and a local token endpoint: reads, refreshes,
single-flight under concurrency, rotation, failures, and the background refresh."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import timedelta

import pytest
from sqlmodel import select

from carmenta.connections import service
from carmenta.connections.crypto import credential_aad, get_key_ring
from carmenta.connections.models import ServiceConnection
from carmenta.connections.providers.base import AccountIdentity
from carmenta.connections.service import (
    ConnectionNotFound,
    ReauthorizationRequired,
    RefreshRejected,
    TemporaryProviderError,
    get_access_token,
    refresh_expiring_connections,
)
from carmenta.db import dispose_engine, session_scope
from carmenta.model_fields import utcnow
from tests.integration.connections_support import (
    RING_1,
    ConnectionTestSettings,
    TokenServer,
    api_key_provider,
    create_user,
    encryption_keys,
    fast_retry,
    provider,
    tokens,
)


@pytest.fixture(scope="module", autouse=True)
async def _app(database_url):
    with encryption_keys(RING_1):
        yield
        await dispose_engine()


@pytest.fixture
def settings() -> ConnectionTestSettings:
    return ConnectionTestSettings()


@pytest.fixture
def owner(database_url) -> uuid.UUID:
    return create_user(database_url)


@pytest.fixture
def server():
    token_server = TokenServer()
    yield token_server
    token_server.close()


@pytest.fixture
def basic_server():
    token_server = TokenServer(auth_method="basic")
    yield token_server
    token_server.close()


async def connect(owner, spec, token_set, account="account-1") -> uuid.UUID:
    async with session_scope() as session:
        view, _ = await service.save_oauth_connection(
            session=session,
            owner_id=owner,
            provider=spec,
            identity=AccountIdentity(account_id=account, label=f"{account}@example.com"),
            tokens=token_set,
            requested_scopes=["read", "write"],
        )
    return view.id


async def stored(connection_id: uuid.UUID) -> tuple[ServiceConnection, dict]:
    async with session_scope() as session:
        row = (
            await session.exec(
                select(ServiceConnection).where(ServiceConnection.id == connection_id)
            )
        ).one()
    blob = get_key_ring().decrypt(row.encrypted_credentials, aad=credential_aad(row.id))
    return row, json.loads(blob)


async def events(owner, connection_id) -> list[str]:
    async with session_scope() as session:
        found = await service.connection_events(
            session=session, owner_id=owner, connection_id=connection_id
        )
    return [event.event for event in reversed(found)]


async def test_a_valid_token_is_a_read_and_a_decrypt(owner, server, settings):
    spec = provider(server)
    initial = tokens(server=server, extra={"workspace": "w1"})
    connection_id = await connect(owner, spec, initial)

    token = await get_access_token(
        owner_id=owner, provider_id=spec.id, settings=settings, provider=spec
    )
    assert token.token == initial.access_token
    assert token.connection_id == connection_id
    assert token.account_id == "account-1"
    assert token.extra == {"workspace": "w1"}
    assert token.expires_at == initial.expires_at
    assert initial.access_token not in repr(token)
    assert server.token_calls == 0

    row, _ = await stored(connection_id)
    first_use = row.last_used_at
    assert first_use is not None
    await get_access_token(owner_id=owner, provider_id=spec.id, account_id="account-1")
    row, _ = await stored(connection_id)
    assert row.last_used_at == first_use  # not written again within the minute
    assert await events(owner, connection_id) == ["connected"]


async def test_unknown_accounts_and_providers_are_not_found(owner, server):
    spec = provider(server)
    await connect(owner, spec, tokens(server=server))
    with pytest.raises(ConnectionNotFound):
        await get_access_token(owner_id=owner, provider_id=spec.id, account_id="nobody")
    with pytest.raises(ConnectionNotFound):
        await get_access_token(owner_id=owner, provider_id="no-such-provider")
    with pytest.raises(ConnectionNotFound):
        await get_access_token(owner_id=uuid.uuid4(), provider_id=spec.id)


async def test_the_default_account_is_used_when_none_is_named(owner, server, settings):
    spec = provider(server)
    first = tokens(server=server)
    second = tokens(server=server)
    await connect(owner, spec, first, account="first")
    second_id = await connect(owner, spec, second, account="second")
    token = await get_access_token(owner_id=owner, provider_id=spec.id)
    assert token.token == first.access_token
    async with session_scope() as session:
        await service.set_default(session=session, owner_id=owner, connection_id=second_id)
    token = await get_access_token(owner_id=owner, provider_id=spec.id)
    assert token.token == second.access_token


async def test_a_token_expiring_within_five_minutes_is_refreshed(owner, server, settings):
    spec = provider(server)
    initial = tokens(server=server, expires_in=timedelta(minutes=4))
    connection_id = await connect(owner, spec, initial)

    before = utcnow()
    token = await get_access_token(
        owner_id=owner, provider_id=spec.id, settings=settings, provider=spec
    )
    assert token.token != initial.access_token
    assert token.token == server.issued[-1]
    assert server.token_calls == 1
    [request] = server.token_requests
    assert request["form"] == {
        "grant_type": "refresh_token",
        "refresh_token": initial.refresh_token,
        "client_id": "carmenta-test-client",
        "client_secret": "client-secret-for/tests+only",
    }
    assert request["authorization"] is None

    row, credentials = await stored(connection_id)
    assert credentials["access_token"] == token.token
    # No refresh token in the answer (Google): the one held is kept.
    assert credentials["refresh_token"] == initial.refresh_token
    assert row.expires_at > before + timedelta(minutes=59)
    assert token.expires_at == row.expires_at
    assert row.last_refreshed_at >= before
    assert row.scopes == ["read", "write"]
    assert row.status == "connected" and row.last_error is None
    assert await events(owner, connection_id) == ["connected", "refreshed"]

    # Fresh now: the next call does not touch the token endpoint.
    again = await get_access_token(
        owner_id=owner, provider_id=spec.id, settings=settings, provider=spec
    )
    assert again.token == token.token and server.token_calls == 1


async def test_basic_client_authentication(owner, basic_server, settings):
    spec = provider(basic_server, "tokenbasic")
    initial = tokens(server=basic_server, expires_in=timedelta(seconds=30))
    await connect(owner, spec, initial)
    token = await get_access_token(
        owner_id=owner, provider_id=spec.id, settings=settings, provider=spec
    )
    assert token.token == basic_server.issued[-1]
    [request] = basic_server.token_requests
    assert request["authorization"].startswith("Basic ")
    assert "client_secret" not in request["form"] and "client_id" not in request["form"]


@pytest.mark.parametrize("in_process_lock", [True, False], ids=["process", "database-only"])
async def test_fifty_concurrent_callers_cause_one_refresh(
    owner, settings, monkeypatch, in_process_lock
):
    # Without the in-process lock every caller queues on the row lock, as callers in
    # separate processes or machines would.
    monkeypatch.setattr(service, "_SINGLE_FLIGHT_IN_PROCESS", in_process_lock)
    server = TokenServer(rotate=True, delay=0.2)
    try:
        spec = provider(server)
        initial = tokens(server=server, expires_in=timedelta(minutes=1))
        connection_id = await connect(owner, spec, initial)

        results = await asyncio.gather(
            *(
                get_access_token(
                    owner_id=owner, provider_id=spec.id, settings=settings, provider=spec
                )
                for _ in range(50)
            )
        )
        assert server.token_calls == 1
        new_access = server.issued[0]
        assert {result.token for result in results} == {new_access}
        _, credentials = await stored(connection_id)
        assert credentials["access_token"] == new_access
        assert credentials["refresh_token"] == server.issued[1]
        assert await events(owner, connection_id) == ["connected", "refreshed"]
    finally:
        server.close()


async def test_a_rotated_refresh_token_is_saved_with_the_new_access_token(owner, settings):
    server = TokenServer(rotate=True)
    try:
        spec = provider(server)
        initial = tokens(server=server, expires_in=timedelta(minutes=2))
        connection_id = await connect(owner, spec, initial)

        first = await get_access_token(
            owner_id=owner, provider_id=spec.id, settings=settings, provider=spec
        )
        _, credentials = await stored(connection_id)
        rotated = credentials["refresh_token"]
        assert rotated != initial.refresh_token
        assert rotated in server.valid_refresh_tokens
        assert initial.refresh_token not in server.valid_refresh_tokens
        assert credentials["access_token"] == first.token

        # Expire it again: the next refresh must present the rotated token, which the
        # server (retiring each token once used) is the only one it accepts.
        async with session_scope() as session:
            await session.exec(
                ServiceConnection.__table__.update()
                .where(ServiceConnection.__table__.c.id == connection_id)
                .values(expires_at=utcnow() + timedelta(minutes=1))
            )
        second = await get_access_token(
            owner_id=owner, provider_id=spec.id, settings=settings, provider=spec
        )
        assert server.token_requests[1]["form"]["refresh_token"] == rotated
        assert second.token != first.token
        row, credentials = await stored(connection_id)
        assert row.status == "connected"
        assert credentials["refresh_token"] not in (rotated, initial.refresh_token)
        assert await events(owner, connection_id) == ["connected", "refreshed", "refreshed"]
    finally:
        server.close()


async def test_a_cancelled_caller_does_not_lose_a_rotated_token(owner, settings):
    server = TokenServer(rotate=True, delay=0.3)
    try:
        spec = provider(server)
        connection_id = await connect(
            owner, spec, tokens(server=server, expires_in=timedelta(minutes=1))
        )
        caller = asyncio.create_task(
            get_access_token(owner_id=owner, provider_id=spec.id, settings=settings, provider=spec)
        )
        while server.token_calls == 0:
            await asyncio.sleep(0.01)
        caller.cancel()  # e.g. the request that needed the token timed out
        with pytest.raises(asyncio.CancelledError):
            await caller
        for _ in range(200):
            if len(await events(owner, connection_id)) == 2:
                break
            await asyncio.sleep(0.02)
        _, credentials = await stored(connection_id)
        assert credentials["refresh_token"] == server.issued[1]
        assert credentials["refresh_token"] in server.valid_refresh_tokens
        token = await get_access_token(owner_id=owner, provider_id=spec.id, provider=spec)
        assert token.token == server.issued[0] and server.token_calls == 1
    finally:
        server.close()


async def test_invalid_grant_needs_reauthorization_without_retrying(owner, server, settings):
    spec = provider(server)
    connection_id = await connect(owner, spec, tokens(server=server, expires_in=timedelta(0)))
    server.script = ["invalid_grant"]
    sleeps: list[float] = []

    with pytest.raises(ReauthorizationRequired) as caught:
        await get_access_token(
            owner_id=owner,
            provider_id=spec.id,
            settings=settings,
            provider=spec,
            retry=fast_retry(sleeps),
        )
    assert caught.value.connection_id == connection_id
    assert server.token_calls == 1 and sleeps == []
    row, _ = await stored(connection_id)
    assert row.status == "needs_reauth"
    assert "invalid_grant" in row.last_error
    assert await events(owner, connection_id) == ["connected", "needs_reauth"]

    # Until the user reconnects, callers are told so without asking the provider.
    with pytest.raises(ReauthorizationRequired):
        await get_access_token(owner_id=owner, provider_id=spec.id, provider=spec)
    assert server.token_calls == 1

    # Reconnecting brings it back.
    fresh = tokens(server=server)
    await connect(owner, spec, fresh)
    row, _ = await stored(connection_id)
    assert row.status == "connected" and row.last_error is None
    token = await get_access_token(owner_id=owner, provider_id=spec.id, provider=spec)
    assert token.token == fresh.access_token


async def test_a_revoked_refresh_token_is_invalid_grant_too(owner, server, settings):
    spec = provider(server)
    # The server does not know this refresh token (revoked by the user at the provider).
    await connect(owner, spec, tokens(expires_in=timedelta(minutes=-5)))
    with pytest.raises(ReauthorizationRequired):
        await get_access_token(
            owner_id=owner, provider_id=spec.id, settings=settings, provider=spec
        )
    assert server.token_calls == 1


async def test_server_errors_are_retried_with_backoff(owner, server, settings):
    spec = provider(server)
    connection_id = await connect(owner, spec, tokens(server=server, expires_in=timedelta(0)))
    server.script = [503, 503]
    sleeps: list[float] = []
    token = await get_access_token(
        owner_id=owner,
        provider_id=spec.id,
        settings=settings,
        provider=spec,
        retry=fast_retry(sleeps),
    )
    assert server.token_calls == 3
    assert sleeps == [0.5, 1.0]
    assert token.token == server.issued[-1]
    row, _ = await stored(connection_id)
    assert row.status == "connected"
    assert await events(owner, connection_id) == ["connected", "refreshed"]


async def test_a_provider_that_stays_down_does_not_break_the_connection(owner, server, settings):
    spec = provider(server)
    initial = tokens(server=server, expires_in=timedelta(seconds=-10))
    connection_id = await connect(owner, spec, initial)
    server.script = [503, 502, 500, 503]
    sleeps: list[float] = []

    with pytest.raises(TemporaryProviderError):
        await get_access_token(
            owner_id=owner,
            provider_id=spec.id,
            settings=settings,
            provider=spec,
            retry=fast_retry(sleeps),
        )
    assert server.token_calls == 4
    assert sleeps == [0.5, 1.0, 2.0]
    row, credentials = await stored(connection_id)
    assert row.status == "connected"
    assert "HTTP 503" in row.last_error
    assert credentials["refresh_token"] == initial.refresh_token
    assert await events(owner, connection_id) == ["connected", "refresh_failed"]

    # Right after a failure, callers fail fast instead of piling onto the provider.
    with pytest.raises(TemporaryProviderError):
        await get_access_token(
            owner_id=owner,
            provider_id=spec.id,
            settings=settings,
            provider=spec,
            retry=fast_retry(),
        )
    assert server.token_calls == 4

    # Once the cooldown is over, the next caller tries again and succeeds.
    async with session_scope() as session:
        await session.exec(
            ConnectionEventTable.update()
            .where(ConnectionEventTable.c.connection_id == connection_id)
            .values(created_at=utcnow() - timedelta(minutes=5))
        )
    token = await get_access_token(
        owner_id=owner, provider_id=spec.id, settings=settings, provider=spec
    )
    assert token.token == server.issued[-1] and server.token_calls == 5
    row, _ = await stored(connection_id)
    assert row.status == "connected" and row.last_error is None


async def test_a_still_valid_token_is_used_while_the_provider_is_down(owner, server, settings):
    spec = provider(server)
    initial = tokens(server=server, expires_in=timedelta(minutes=3))
    connection_id = await connect(owner, spec, initial)
    server.script = [503, 503, 503, 503]
    token = await get_access_token(
        owner_id=owner,
        provider_id=spec.id,
        settings=settings,
        provider=spec,
        retry=fast_retry(),
    )
    assert token.token == initial.access_token
    assert server.token_calls == 4
    row, _ = await stored(connection_id)
    assert row.status == "connected"
    assert await events(owner, connection_id) == ["connected", "refresh_failed"]


async def test_a_slow_token_endpoint_times_out_and_is_retried(owner, server, settings):
    spec = provider(server)
    connection_id = await connect(owner, spec, tokens(server=server, expires_in=timedelta(0)))
    server.script = [("slow", 1.0)]
    started = time.monotonic()
    token = await get_access_token(
        owner_id=owner,
        provider_id=spec.id,
        settings=settings,
        provider=spec,
        retry=fast_retry(timeout=0.3),
    )
    assert time.monotonic() - started < 1.0
    assert server.token_calls == 2
    # The slow answer was abandoned; the retry's token is the one kept.
    _, credentials = await stored(connection_id)
    assert credentials["access_token"] == token.token

    server.script = [("slow", 1.0)] * 4
    await connect(owner, spec, tokens(server=server, expires_in=timedelta(0)), account="slow")
    with pytest.raises(TemporaryProviderError) as caught:
        await get_access_token(
            owner_id=owner,
            provider_id=spec.id,
            account_id="slow",
            settings=settings,
            provider=spec,
            retry=fast_retry(timeout=0.2),
        )
    assert "in time" in str(caught.value)


async def test_a_refused_client_is_not_the_users_fault(owner, server, settings):
    spec = provider(server)
    connection_id = await connect(owner, spec, tokens(server=server, expires_in=timedelta(0)))
    server.script = ["invalid_client"]
    with pytest.raises(RefreshRejected):
        await get_access_token(
            owner_id=owner, provider_id=spec.id, settings=settings, provider=spec
        )
    assert server.token_calls == 1
    row, _ = await stored(connection_id)
    assert row.status == "connected"
    assert "invalid_client" in row.last_error


async def test_an_expired_token_without_refresh_needs_reauthorization(owner, server, settings):
    spec = provider(server)
    no_refresh = tokens(expires_in=timedelta(minutes=-1))
    no_refresh = type(no_refresh)(
        access_token=no_refresh.access_token, expires_at=no_refresh.expires_at
    )
    connection_id = await connect(owner, spec, no_refresh)
    with pytest.raises(ReauthorizationRequired):
        await get_access_token(
            owner_id=owner, provider_id=spec.id, settings=settings, provider=spec
        )
    assert server.token_calls == 0
    assert await events(owner, connection_id) == ["connected", "needs_reauth"]


async def test_reads_do_not_wait_for_a_background_refresh(owner, settings):
    server = TokenServer(delay=1.0)
    try:
        spec = provider(server, "tokenjob2")
        initial = tokens(server=server, expires_in=timedelta(minutes=10))
        connection_id = await connect(owner, spec, initial, "busy")
        job = asyncio.create_task(
            refresh_expiring_connections(
                settings=settings, providers={"tokenjob2": spec}, retry=fast_retry()
            )
        )
        while server.token_calls == 0:
            await asyncio.sleep(0.01)
        # The job holds the row lock now; a caller with a valid token reads past it
        # (and would record its use, were the row not locked).
        started = time.monotonic()
        token = await get_access_token(
            owner_id=owner, provider_id=spec.id, account_id="busy", settings=settings
        )
        assert time.monotonic() - started < 0.5
        assert token.token == initial.access_token
        assert (await job).refreshed >= 1
        _, credentials = await stored(connection_id)
        assert credentials["access_token"] == server.issued[-1]
    finally:
        server.close()


async def test_api_keys_come_back_with_their_base_url(owner):
    spec = api_key_provider()
    async with session_scope() as session:
        view = await service.save_api_key_connection(
            session=session,
            owner_id=owner,
            provider=spec,
            identity=AccountIdentity(account_id="key-1", label="My key"),
            api_key="sk-test-123456",
            base_url="https://llm.example.com/v1",
        )
    assert view.credential_type == "api_key" and view.expires_at is None
    token = await get_access_token(owner_id=owner, provider_id=spec.id)
    assert token.token == "sk-test-123456"
    assert token.extra == {"base_url": "https://llm.example.com/v1"}
    assert token.expires_at is None


async def test_the_background_job_refreshes_only_what_expires_soon(owner, settings):
    server = TokenServer()
    try:
        spec = provider(server, "tokenjob")
        soon = await connect(
            owner, spec, tokens(server=server, expires_in=timedelta(minutes=10)), "soon"
        )
        expired = await connect(
            owner, spec, tokens(server=server, expires_in=timedelta(minutes=-1)), "expired"
        )
        later = await connect(
            owner, spec, tokens(server=server, expires_in=timedelta(minutes=20)), "later"
        )
        never = await connect(owner, spec, tokens(server=server, expires_in=None), "never")
        broken = await connect(
            owner, spec, tokens(expires_in=timedelta(minutes=5)), "broken"
        )  # a refresh token the server does not know
        other_owner = create_user(database_url_of())
        other = await connect(
            other_owner, spec, tokens(server=server, expires_in=timedelta(minutes=14)), "other"
        )

        summary = await refresh_expiring_connections(
            settings=settings, providers={"tokenjob": spec}, retry=fast_retry()
        )
        assert summary.refreshed == 3
        assert summary.needs_reauth == 1
        assert summary.failed == 0
        assert server.token_calls == 4
        for connection_id in (soon, expired, other):
            row, credentials = await stored(connection_id)
            assert credentials["access_token"] in server.issued
            assert row.expires_at > utcnow() + timedelta(minutes=50)
        for connection_id in (later, never):
            row, credentials = await stored(connection_id)
            assert credentials["access_token"] not in server.issued
        row, _ = await stored(broken)
        assert row.status == "needs_reauth"

        # Nothing left to do: a second run is a no-op.
        again = await refresh_expiring_connections(
            settings=settings, providers={"tokenjob": spec}, retry=fast_retry()
        )
        assert again.refreshed == 0 and server.token_calls == 4
    finally:
        server.close()


async def test_one_failing_refresh_does_not_stop_the_others(owner, settings):
    server = TokenServer()
    try:
        spec = provider(server, "tokenjob2")
        down = tokens(server=server, expires_in=timedelta(minutes=-2))
        server.unavailable_for.add(down.refresh_token)
        failing = await connect(owner, spec, down, "down")
        working = await connect(
            owner, spec, tokens(server=server, expires_in=timedelta(minutes=-1)), "up"
        )
        invalid = await connect(owner, spec, tokens(expires_in=timedelta(minutes=3)), "gone")
        summary = await refresh_expiring_connections(
            settings=settings, providers={"tokenjob2": spec}, retry=fast_retry()
        )
        assert (summary.failed, summary.refreshed, summary.needs_reauth) == (1, 1, 1)
        assert server.token_calls == 4 + 1 + 1
        assert (await stored(failing))[0].status == "connected"
        assert (await stored(working))[1]["access_token"] in server.issued
        assert (await stored(invalid))[0].status == "needs_reauth"
    finally:
        server.close()


def test_the_refresh_job_is_scheduled_every_five_minutes():
    from carmenta.connections import tasks
    from carmenta.jobs.queue import TASK_MODULES, job_app

    assert "carmenta.connections.tasks" in TASK_MODULES
    schedules = {
        name: periodic.cron
        for (name, _), periodic in job_app.periodic_registry.periodic_tasks.items()
    }
    assert schedules[tasks.REFRESH_TOKENS_TASK] == "*/5 * * * *"
    assert job_app.tasks[tasks.REFRESH_TOKENS_TASK].queueing_lock


ConnectionEventTable = service._ev


def database_url_of() -> str:
    import os

    return os.environ["DATABASE_URL"]
