"""Audit entries for changes made in the admin console, in the caller's transaction."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any

from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import AsyncSession

from carmenta.admin.models import AdminAuditLog
from carmenta.admin.secrets import visible_columns


def json_value(value: Any) -> Any:
    """A column value as JSON can hold it."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, uuid.UUID | Decimal):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Enum):
        return json_value(value.value)
    if isinstance(value, dict):
        return {str(key): json_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set):
        return [json_value(item) for item in value]
    return str(value)


def snapshot(row: Any) -> dict[str, Any]:
    """The row's visible columns (never a secret one) as JSON values."""
    table = inspect(row).mapper.local_table
    mapper = inspect(row).mapper
    values: dict[str, Any] = {}
    for column in visible_columns(table):
        attribute = mapper.get_property_by_column(column).key
        values[column.name] = json_value(getattr(row, attribute))
    return values


def changes(before: dict[str, Any], after: dict[str, Any]) -> tuple[dict, dict]:
    """Only what differs, as (before, after)."""
    changed = sorted(name for name in after if before.get(name) != after[name])
    return {name: before.get(name) for name in changed}, {name: after[name] for name in changed}


def owner_of(table_name: str, values: dict[str, Any]) -> uuid.UUID | None:
    """Whose data a row is: the user itself for `users`, else its owner column."""
    raw = values.get("id") if table_name == "users" else values.get("owner_id")
    if raw is None:
        raw = values.get("user_id")
    try:
        return uuid.UUID(str(raw)) if raw is not None else None
    except ValueError:
        return None


async def record(
    *,
    session: AsyncSession,
    admin_user_id: uuid.UUID,
    table_name: str,
    row_id: str,
    action: str,
    before: dict[str, Any],
    after: dict[str, Any],
    owner_id: uuid.UUID | None = None,
) -> AdminAuditLog:
    entry = AdminAuditLog(
        admin_user_id=admin_user_id,
        owner_id=owner_id,
        table_name=table_name,
        row_id=row_id,
        action=action,
        before=before,
        after=after,
    )
    session.add(entry)
    await session.flush()
    return entry
