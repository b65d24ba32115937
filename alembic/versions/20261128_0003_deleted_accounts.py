"""Deleted accounts: auth ids that must never be recreated by a late token or webhook.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 00:59:56.786789+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "deleted_accounts",
        sa.Column("external_auth_id", sa.Text(), nullable=False),
        sa.Column(
            "deleted_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("external_auth_id", name=op.f("pk_deleted_accounts")),
    )


def downgrade() -> None:
    op.drop_table("deleted_accounts")
