"""Slowing down repeated failed sign-ins, per account and per network address.

The first few failures in a window cost nothing; after that each failure doubles the
wait before the next attempt is considered, up to a ceiling. The same keys are used
whether or not the account exists, so the wait reveals nothing about it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import text
from sqlmodel.ext.asyncio.session import AsyncSession

FREE_FAILURES = 5
WINDOW = timedelta(minutes=15)
MAX_DELAY_SECONDS = 15 * 60


def account_key(email: str) -> str:
    return f"email:{email}"


def address_key(ip_address: str | None) -> str | None:
    return f"ip:{ip_address}" if ip_address else None


def delay_after(failures: int) -> float:
    """Seconds to wait after `failures` failures within the window."""
    if failures <= FREE_FAILURES:
        return 0.0
    return float(min(2 ** (failures - FREE_FAILURES - 1), MAX_DELAY_SECONDS))


async def seconds_to_wait(*, session: AsyncSession, keys: list[str], now: datetime) -> float:
    if not keys:
        return 0.0
    result = await session.execute(
        text(
            "select max(blocked_until) from login_throttles"
            " where key = any(:keys) and blocked_until > :now"
        ),
        {"keys": keys, "now": now},
    )
    blocked_until = result.scalar()
    return max(0.0, (blocked_until - now).total_seconds()) if blocked_until else 0.0


async def record_failure(*, session: AsyncSession, keys: list[str], now: datetime) -> None:
    for key in keys:
        result = await session.execute(
            text(
                """
                insert into login_throttles (key, failures, first_failure_at)
                values (:key, 1, :now)
                on conflict (key) do update set
                    failures = case when login_throttles.first_failure_at < :window_start
                                    then 1 else login_throttles.failures + 1 end,
                    first_failure_at = case when login_throttles.first_failure_at < :window_start
                                            then :now else login_throttles.first_failure_at end
                returning failures
                """
            ),
            {"key": key, "now": now, "window_start": now - WINDOW},
        )
        failures = result.scalar_one()
        delay = delay_after(failures)
        if delay:
            await session.execute(
                text("update login_throttles set blocked_until = :until where key = :key"),
                {"key": key, "until": now + timedelta(seconds=delay)},
            )


async def clear(*, session: AsyncSession, keys: list[str]) -> None:
    if keys:
        await session.execute(
            text("delete from login_throttles where key = any(:keys)"), {"keys": keys}
        )
