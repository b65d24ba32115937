"""Search indexes lead with the owner: full-text and trigram matching read one user's rows.

The GIN indexes on the search vector, the title and the path's text were global, so a
search for one user collected every user's matches and filtered them afterwards; with
a million documents that is most of the work. With btree_gin the owner's id is a key of
the same index, and GIN skips straight to the owner's entries.

Revision ID: 0013
Revises: 0010
Create Date: 2026-11-28 03:35:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("create extension if not exists btree_gin")
    op.drop_index("ix_documents_search_vector", table_name="documents", postgresql_using="gin")
    op.create_index(
        "ix_documents_search_vector",
        "documents",
        ["owner_id", "search_vector"],
        unique=False,
        postgresql_using="gin",
    )
    op.drop_index("ix_documents_title_trgm", table_name="documents")
    op.create_index(
        "ix_documents_title_trgm",
        "documents",
        ["owner_id", "title"],
        unique=False,
        postgresql_using="gin",
        postgresql_ops={"title": "gin_trgm_ops"},
    )
    op.drop_index("ix_documents_path_text_trgm", table_name="documents")
    op.create_index(
        "ix_documents_path_text_trgm",
        "documents",
        ["owner_id", sa.text("(path::text) gin_trgm_ops")],
        unique=False,
        postgresql_using="gin",
    )


def downgrade() -> None:
    op.drop_index("ix_documents_path_text_trgm", table_name="documents")
    op.create_index(
        "ix_documents_path_text_trgm",
        "documents",
        [sa.text("(path::text) gin_trgm_ops")],
        unique=False,
        postgresql_using="gin",
    )
    op.drop_index("ix_documents_title_trgm", table_name="documents")
    op.create_index(
        "ix_documents_title_trgm",
        "documents",
        ["title"],
        unique=False,
        postgresql_using="gin",
        postgresql_ops={"title": "gin_trgm_ops"},
    )
    op.drop_index("ix_documents_search_vector", table_name="documents", postgresql_using="gin")
    op.create_index(
        "ix_documents_search_vector",
        "documents",
        ["search_vector"],
        unique=False,
        postgresql_using="gin",
    )
    # btree_gin stays: other objects may have come to depend on it.
