"""Connection events: the audit trail of every service connection.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 01:36:01.392394+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "connection_events",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("connection_id", sa.Uuid(), nullable=True),
        sa.Column("provider", sa.Text(), nullable=False),
        sa.Column("account_id", sa.Text(), nullable=True),
        sa.Column("event", sa.Text(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "source IN ('user', 'system', 'provider')", name=op.f("ck_connection_events_source")
        ),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["service_connections.id"],
            name=op.f("fk_connection_events_connection_id_service_connections"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["owner_id"],
            ["users.id"],
            name=op.f("fk_connection_events_owner_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_connection_events")),
    )
    op.create_index(
        op.f("ix_connection_events_connection_id"),
        "connection_events",
        ["connection_id"],
        unique=False,
    )
    op.create_index(
        "ix_connection_events_owner_created",
        "connection_events",
        ["owner_id", "created_at"],
        unique=False,
    )
    op.create_index(
        op.f("ix_connection_events_owner_id"), "connection_events", ["owner_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_connection_events_owner_id"), table_name="connection_events")
    op.drop_index("ix_connection_events_owner_created", table_name="connection_events")
    op.drop_index(op.f("ix_connection_events_connection_id"), table_name="connection_events")
    op.drop_table("connection_events")
