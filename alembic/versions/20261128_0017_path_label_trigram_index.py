"""Typos are matched against a document's own path label, not its whole path.

The trigram index covered the path's full text, so a query resembling a folder's name
matched every document under that folder: thousands of rows for a large knowledge
base, each read and compared, and ranked above better matches by a similarity that
said nothing about them. Each folder is a document with its own title and label, so it
is still found by a misspelt name; what lies under it is found by its own words.

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
    op.create_index(
        "ix_documents_path_label_trgm",
        "documents",
        ["owner_id", sa.text("(subpath(path, -1)::text) gin_trgm_ops")],
        unique=False,
        postgresql_using="gin",
    )


def downgrade() -> None:
    op.drop_index("ix_documents_path_label_trgm", table_name="documents")
    op.create_index(
        "ix_documents_path_text_trgm",
        "documents",
        ["owner_id", sa.text("(path::text) gin_trgm_ops")],
        unique=False,
        postgresql_using="gin",
    )
