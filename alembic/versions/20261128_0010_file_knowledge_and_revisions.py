"""Files kept in the knowledge base, and file revisions for replaced content.

Revision ID: 0010
Revises: 0007
Create Date: 2026-11-28 03:30:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "files",
        sa.Column("revision", sa.Integer(), server_default=sa.text("0"), nullable=False),
    )
    op.create_check_constraint(op.f("ck_files_revision_not_negative"), "files", "revision >= 0")
    op.create_table(
        "file_knowledge",
        sa.Column("file_id", sa.Uuid(), nullable=False),
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("status", sa.Text(), server_default=sa.text("'waiting'"), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("job_id", sa.BigInteger(), nullable=True),
        sa.Column("document_id", sa.Uuid(), nullable=True),
        sa.Column("ingested_sha256", sa.Text(), nullable=True),
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
            "status IN ('waiting', 'adding', 'ready', 'failed')",
            name=op.f("ck_file_knowledge_status"),
        ),
        sa.ForeignKeyConstraint(
            ["document_id"],
            ["documents.id"],
            name=op.f("fk_file_knowledge_document_id_documents"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["file_id"],
            ["files.id"],
            name=op.f("fk_file_knowledge_file_id_files"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["owner_id"],
            ["users.id"],
            name=op.f("fk_file_knowledge_owner_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("file_id", name=op.f("pk_file_knowledge")),
    )
    op.create_index(
        op.f("ix_file_knowledge_owner_id"), "file_knowledge", ["owner_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_file_knowledge_owner_id"), table_name="file_knowledge")
    op.drop_table("file_knowledge")
    op.drop_constraint(op.f("ck_files_revision_not_negative"), "files", type_="check")
    op.drop_column("files", "revision")
