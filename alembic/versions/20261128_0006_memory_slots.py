"""Memory slots: one current memory per subject, older ones kept as history.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28 02:44:09.045003+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("memories", sa.Column("slot", sa.Text(), nullable=True))
    op.create_index(op.f("ix_memories_slot"), "memories", ["slot"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_memories_slot"), table_name="memories")
    op.drop_column("memories", "slot")
