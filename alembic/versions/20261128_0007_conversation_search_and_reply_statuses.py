"""Conversation search (titles and message text) and the stopped / waiting reply statuses.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-28 03:09:31.807372+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_STATUSES = "status IN ('streaming', 'complete', 'interrupted', 'failed')"
NEW_STATUSES = "status IN ('streaming', 'complete', 'stopped', 'waiting', 'interrupted', 'failed')"


def upgrade() -> None:
    op.add_column(
        "conversations",
        sa.Column(
            "search_vector",
            postgresql.TSVECTOR(),
            sa.Computed("to_tsvector('english'::regconfig, coalesce(title, ''))", persisted=True),
            nullable=True,
        ),
    )
    op.create_index(
        "ix_conversations_search_vector",
        "conversations",
        ["search_vector"],
        unique=False,
        postgresql_using="gin",
    )
    op.add_column(
        "messages",
        sa.Column(
            "search_vector",
            postgresql.TSVECTOR(),
            sa.Computed("to_tsvector('english'::regconfig, coalesce(content, ''))", persisted=True),
            nullable=True,
        ),
    )
    op.create_index(
        "ix_messages_search_vector",
        "messages",
        ["search_vector"],
        unique=False,
        postgresql_using="gin",
    )
    op.create_index(
        "ix_messages_streaming",
        "messages",
        ["updated_at"],
        unique=False,
        postgresql_where=sa.text("status = 'streaming'"),
    )
    op.drop_constraint(op.f("ck_messages_status"), "messages", type_="check")
    op.create_check_constraint("status", "messages", NEW_STATUSES)


def downgrade() -> None:
    op.execute("update messages set status = 'complete' where status in ('stopped', 'waiting')")
    op.drop_constraint(op.f("ck_messages_status"), "messages", type_="check")
    op.create_check_constraint("status", "messages", OLD_STATUSES)
    op.drop_index(
        "ix_messages_streaming",
        table_name="messages",
        postgresql_where=sa.text("status = 'streaming'"),
    )
    op.drop_index("ix_messages_search_vector", table_name="messages", postgresql_using="gin")
    op.drop_column("messages", "search_vector")
    op.drop_index(
        "ix_conversations_search_vector", table_name="conversations", postgresql_using="gin"
    )
    op.drop_column("conversations", "search_vector")
