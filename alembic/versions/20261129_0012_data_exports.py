"""Data exports: a person's zip of all their data, built by a job, kept for a while.

Revision ID: 0012
Revises: 0013
Create Date: 2026-11-29 09:00:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "data_exports",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("job_id", sa.BigInteger(), nullable=True),
        sa.Column("status", sa.Text(), server_default=sa.text("'building'"), nullable=False),
        sa.Column("object_key", sa.Text(), nullable=True),
        sa.Column("size_bytes", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "status IN ('building', 'ready', 'failed')", name=op.f("ck_data_exports_status")
        ),
        sa.CheckConstraint("size_bytes >= 0", name=op.f("ck_data_exports_size_not_negative")),
        sa.ForeignKeyConstraint(
            ["owner_id"],
            ["users.id"],
            name=op.f("fk_data_exports_owner_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_data_exports")),
    )
    op.create_index(op.f("ix_data_exports_owner_id"), "data_exports", ["owner_id"], unique=False)
    op.create_index(
        op.f("ix_data_exports_expires_at"), "data_exports", ["expires_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_data_exports_expires_at"), table_name="data_exports")
    op.drop_index(op.f("ix_data_exports_owner_id"), table_name="data_exports")
    op.drop_table("data_exports")
