"""Figures for operators: storage per user."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession


@dataclass(frozen=True, slots=True)
class StorageUse:
    user_id: uuid.UUID
    email: str | None
    display_name: str | None
    file_count: int
    size_bytes: int
    quota_bytes: int

    @property
    def used(self) -> str:
        return human_size(self.size_bytes)

    @property
    def percent_of_quota(self) -> float:
        return round(100 * self.size_bytes / self.quota_bytes, 1) if self.quota_bytes else 0.0


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


async def storage_per_user(
    *, session: AsyncSession, quota_bytes: int, limit: int = 500
) -> list[StorageUse]:
    """Users who store files, most storage first."""
    result = await session.execute(
        text(
            "select u.id, u.email, u.display_name, count(f.id) as file_count,"
            " coalesce(sum(f.size_bytes), 0) as size_bytes"
            " from users u join files f on f.owner_id = u.id"
            " group by u.id order by size_bytes desc, u.id limit :limit"
        ),
        {"limit": limit},
    )
    return [
        StorageUse(
            user_id=row.id,
            email=row.email,
            display_name=row.display_name,
            file_count=row.file_count,
            size_bytes=int(row.size_bytes),
            quota_bytes=quota_bytes,
        )
        for row in result
    ]
