"""Document chunks are partitioned by owner: each part has its own, smaller HNSW graph.

pgvector's HNSW index cannot filter by owner while it walks the graph: with one graph
over every user's chunks, a search for one person reads their neighbours among
everyone's and discards the others' (with a million documents, nine in ten for the
person holding a tenth of them). Hashing the owner into 32 parts gives each person a
graph shared with about a 32nd of the others; a search reads one part only.

A partitioned table's keys must hold the partition key, so the primary key becomes
(owner_id, id), which also serves the owner lookups the separate owner index did, and
the per-document ordinal stays unique with the owner added to it.

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-28 13:00:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PARTS = 32
COPY_ROWS = """
    insert into document_chunks
           (id, owner_id, document_id, ordinal, content, embedding, embedded_at, created_at)
    select id, owner_id, document_id, ordinal, content, embedding, embedded_at, created_at
      from document_chunks_before
"""
COLUMN_DEFINITIONS = """
    id uuid not null default gen_random_uuid(),
    owner_id uuid not null,
    document_id uuid not null,
    ordinal integer not null,
    content text not null,
    embedding vector(384),
    embedded_at timestamp with time zone,
    created_at timestamp with time zone not null default now()
"""
FOREIGN_KEYS = """
    alter table document_chunks
      add constraint fk_document_chunks_document_id_documents
          foreign key (document_id) references documents (id) on delete cascade,
      add constraint fk_document_chunks_owner_id_users
          foreign key (owner_id) references users (id) on delete cascade
"""
HNSW_INDEX = (
    "create index ix_document_chunks_embedding_hnsw on document_chunks"
    " using hnsw (embedding vector_cosine_ops)"
)


def _set_aside_old_table() -> None:
    # Indexes and constraints go first so their names are free for the new table.
    op.execute("drop index ix_document_chunks_embedding_hnsw")
    op.execute("drop index if exists ix_document_chunks_owner_id")
    op.execute("drop index uq_document_chunks_document_ordinal")
    op.execute(
        "alter table document_chunks"
        " drop constraint fk_document_chunks_document_id_documents,"
        " drop constraint fk_document_chunks_owner_id_users,"
        " drop constraint pk_document_chunks"
    )
    op.execute("alter table document_chunks rename to document_chunks_before")


def _copy_and_drop_old_table() -> None:
    op.execute(COPY_ROWS)
    op.execute("drop table document_chunks_before")


def upgrade() -> None:
    _set_aside_old_table()
    op.execute(f"create table document_chunks ({COLUMN_DEFINITIONS}) partition by hash (owner_id)")
    for remainder in range(PARTS):
        op.execute(
            f"create table document_chunks_part_{remainder:02d} partition of document_chunks"
            f" for values with (modulus {PARTS}, remainder {remainder})"
        )
    # Rows first, then keys and indexes: building an index once is far faster than
    # maintaining it row by row.
    _copy_and_drop_old_table()
    op.execute(
        "alter table document_chunks add constraint pk_document_chunks primary key (owner_id, id)"
    )
    op.execute(FOREIGN_KEYS)
    # Led by the document: deleting a document finds its chunks in every part.
    op.execute(
        "create unique index uq_document_chunks_document_ordinal"
        " on document_chunks (document_id, ordinal, owner_id)"
    )
    op.execute(HNSW_INDEX)


def downgrade() -> None:
    _set_aside_old_table()
    op.execute(f"create table document_chunks ({COLUMN_DEFINITIONS})")
    _copy_and_drop_old_table()
    op.execute("alter table document_chunks add constraint pk_document_chunks primary key (id)")
    op.execute(FOREIGN_KEYS)
    op.execute("create index ix_document_chunks_owner_id on document_chunks (owner_id)")
    op.execute(
        "create unique index uq_document_chunks_document_ordinal"
        " on document_chunks (document_id, ordinal)"
    )
    op.execute(HNSW_INDEX)
