"""The embedding job finds the chunks still waiting for a vector through an index.

Every minute the job asks for the oldest chunks without an embedding. Without an index
that question read every chunk of every part of the table: about 80 ms with 100,000
chunks, all of them embedded, and ten times that with a million. A partial index holds
only the chunks still waiting, by age, so the question costs under a millisecond
however large the knowledge base grows (and the index is nearly empty most of the
time).

Revision ID: 0018
Revises: 0017
Create Date: 2026-11-29 06:00:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_document_chunks_unembedded",
        "document_chunks",
        ["created_at"],
        unique=False,
        postgresql_where=sa.text("embedding IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_document_chunks_unembedded", table_name="document_chunks")
