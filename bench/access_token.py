"""The access-token function: latency on a valid token, and 50 callers on an expiring one.

Valid token: p50/p95/p99 of get_access_token over --calls calls (one database read
and one AES-GCM decrypt each, through the app's own engine and pool). Refresh: 50
concurrent callers on a token expiring in a minute, end to end (wall time until all
50 hold the new token) and how many times the token endpoint was called, with the
in-process lock and with the database row lock alone (as separate processes would
see it). The token endpoint is a local server on 127.0.0.1 answering at once.
Prints figures only; asserts nothing.

Usage: .venv/bin/python bench/access_token.py [--calls 2000] [--rounds 3]
Uses DATABASE_URL's server when set (a new database on it), else the embedded
PostgreSQL the tests use.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


async def run(calls: int, rounds: int) -> None:
    from carmenta.connections import service
    from carmenta.connections.crypto import credential_aad, get_key_ring
    from carmenta.connections.providers.base import AccountIdentity
    from carmenta.db import dispose_engine, session_scope
    from tests.integration.connections_support import (
        ConnectionTestSettings,
        TokenServer,
        create_user,
        fast_retry,
        provider,
        tokens,
    )

    settings = ConnectionTestSettings()
    database_url = os.environ["DATABASE_URL"]
    owner = create_user(database_url)
    server = TokenServer(rotate=True)
    spec = provider(server, "tokentest")

    async def connect(account: str, expires_in: timedelta) -> None:
        async with session_scope() as session:
            await service.save_oauth_connection(
                session=session,
                owner_id=owner,
                provider=spec,
                identity=AccountIdentity(account_id=account, label=account),
                tokens=tokens(server=server, expires_in=expires_in),
                requested_scopes=["read"],
            )

    try:
        await connect("valid", timedelta(hours=1))
        for _ in range(100):  # warm the pool and the statement caches
            await service.get_access_token(
                owner_id=owner, provider_id=spec.id, account_id="valid", settings=settings
            )
        durations: list[float] = []
        for _ in range(calls):
            started = time.perf_counter()
            await service.get_access_token(
                owner_id=owner, provider_id=spec.id, account_id="valid", settings=settings
            )
            durations.append(time.perf_counter() - started)
        print(f"get_access_token on a valid token ({calls} calls, database read + decrypt):")
        print(
            f"  p50 {ms(percentile(durations, 0.50))}, p95 {ms(percentile(durations, 0.95))}, "
            f"p99 {ms(percentile(durations, 0.99))}, max {ms(max(durations))}, "
            f"mean {ms(statistics.fmean(durations))}"
        )

        ring = get_key_ring(settings)
        aad = credential_aad(owner)
        blob = ring.encrypt(b'{"access_token":"' + b"x" * 200 + b'"}', aad=aad)
        started = time.perf_counter()
        for _ in range(10_000):
            ring.decrypt(blob, aad=aad)
        decrypt = (time.perf_counter() - started) / 10_000
        print(f"  of which the decrypt alone: {decrypt * 1e6:.1f} µs")

        for in_process_lock in (True, False):
            service._SINGLE_FLIGHT_IN_PROCESS = in_process_lock
            label = "in-process lock + row lock" if in_process_lock else "row lock only"
            walls: list[float] = []
            endpoint_calls: list[int] = []
            for round_number in range(rounds):
                account = f"expiring-{in_process_lock}-{round_number}"
                await connect(account, timedelta(minutes=1))
                before = server.token_calls
                started = time.perf_counter()
                results = await asyncio.gather(
                    *(
                        service.get_access_token(
                            owner_id=owner,
                            provider_id=spec.id,
                            account_id=account,
                            settings=settings,
                            provider=spec,
                            retry=fast_retry(),
                        )
                        for _ in range(50)
                    )
                )
                walls.append(time.perf_counter() - started)
                endpoint_calls.append(server.token_calls - before)
                if len({result.token for result in results}) != 1:
                    print("  (callers did not all get the same token)")
            print(
                f"50 concurrent callers on a token expiring in 1 minute ({label}, "
                f"{rounds} rounds): wall median {ms(statistics.median(walls))}, "
                f"max {ms(max(walls))}; token-endpoint calls per round {endpoint_calls}"
            )
        service._SINGLE_FLIGHT_IN_PROCESS = True
    finally:
        server.close()
        await dispose_engine()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    import base64

    from carmenta.settings import reset_settings_cache
    from tests.database import ServerHandle, _replace_database

    admin_url = os.environ.get("DATABASE_URL")
    if admin_url:
        os.environ.setdefault("TEST_DATABASE_ADMIN_URL", _replace_database(admin_url, "postgres"))
    os.environ["ENCRYPTION_KEYS"] = "bench:" + base64.b64encode(os.urandom(32)).decode()
    server = ServerHandle()
    try:
        with server.throwaway_database() as url:
            os.environ["DATABASE_URL"] = url
            reset_settings_cache()
            asyncio.run(run(args.calls, args.rounds))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
