"""Typos are matched against a document's name: its title and its own path label.

Two trigram indexes covered the title and the path's full text. A query resembling a
folder's name matched every document under that folder through the path: thousands of
rows for a large knowledge base, each read and compared, and ranked above better
matches by a similarity that said nothing about them. Each folder is a document with
its own title and label, so it is still found by a misspelt name; what lies under it is
found by its own words. The title and the last label go into one index, so a search
makes one trigram scan instead of two.

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-28 22:20:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_documents_path_text_trgm", table_name="documents")
    op.drop_index("ix_documents_title_trgm", table_name="documents")
    op.create_index(
        "ix_documents_name_trgm",
        "documents",
        ["owner_id", sa.text("((title || ' ' || subpath(path, -1)::text)) gin_trgm_ops")],
        unique=False,
        postgresql_using="gin",
    )


def downgrade() -> None:
    op.drop_index("ix_documents_name_trgm", table_name="documents")
    op.create_index(
        "ix_documents_title_trgm",
        "documents",
        ["owner_id", "title"],
        unique=False,
        postgresql_using="gin",
        postgresql_ops={"title": "gin_trgm_ops"},
    )
    op.create_index(
        "ix_documents_path_text_trgm",
        "documents",
        ["owner_id", sa.text("(path::text) gin_trgm_ops")],
        unique=False,
        postgresql_using="gin",
    )
