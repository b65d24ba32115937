"""The path's GiST index leads with the owner: a subtree is read from one user's rows.

The index on `path` alone held every user's paths; most people's trees share the same
folder names ("knowledge.projects"…), so listing one person's subtree walked everyone's
matching paths and filtered them, and the planner, unable to tell, sometimes preferred
it to the (owner_id, path) b-tree. With btree_gist the owner's id is part of the key.

Revision ID: 0014
Revises: 0011
Create Date: 2026-11-28 07:50:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0014"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("create extension if not exists btree_gist")
    op.drop_index("ix_documents_path_gist", table_name="documents", postgresql_using="gist")
    op.create_index(
        "ix_documents_owner_path_gist",
        "documents",
        ["owner_id", "path"],
        unique=False,
        postgresql_using="gist",
    )


def downgrade() -> None:
    op.drop_index("ix_documents_owner_path_gist", table_name="documents", postgresql_using="gist")
    op.create_index(
        "ix_documents_path_gist", "documents", ["path"], unique=False, postgresql_using="gist"
    )
