from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from pgvector.sqlalchemy import Vector
from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Computed,
    ForeignKey,
    Index,
    Integer,
    PrimaryKeyConstraint,
    Text,
    Uuid,
    literal_column,
    text,
)
from sqlalchemy.dialects.postgresql import TSVECTOR
from sqlmodel import Field, SQLModel

from carmenta.db import Ltree
from carmenta.model_fields import (
    created_at_field,
    defaulted,
    optional_timestamp,
    owner_key,
    updated_at_field,
    uuid_primary_key,
)


class DocumentSource(StrEnum):
    manual = "manual"
    file = "file"
    conversation = "conversation"
    import_ = "import"


# Title weighs most, then the path's labels, then the body. An explicit text search
# configuration keeps the expression immutable, as a generated column requires.
DOCUMENT_SEARCH_VECTOR_SQL = (
    "setweight(to_tsvector('english'::regconfig, coalesce(title, '')), 'A') || "
    "setweight(to_tsvector('english'::regconfig, "
    "replace(replace(path::text, '.', ' '), '_', ' ')), 'B') || "
    "setweight(to_tsvector('english'::regconfig, coalesce(content, '')), 'C')"
)


class Document(SQLModel, table=True):
    """A Markdown document at a path in the user's knowledge tree."""

    __tablename__ = "documents"
    __table_args__ = (
        CheckConstraint(
            "source IN ('manual', 'file', 'conversation', 'import')",
            name="source",
        ),
        Index("uq_documents_owner_path", "owner_id", "path", unique=True),
        # GiST leads with the owner too (btree_gist): a subtree is one user's range.
        Index("ix_documents_owner_path_gist", "owner_id", "path", postgresql_using="gist"),
        # GIN indexes lead with the owner (btree_gin), so a search reads one user's entries.
        Index("ix_documents_search_vector", "owner_id", "search_vector", postgresql_using="gin"),
    )

    id: uuid.UUID = uuid_primary_key()
    owner_id: uuid.UUID = owner_key()
    path: str = Field(sa_column=Column(Ltree(), nullable=False))
    title: str = Field(sa_type=Text, nullable=False)
    content: str = defaulted("", sa_type=Text)
    source: str = defaulted(DocumentSource.manual.value, sa_type=Text)
    # The file this document was made from; deleting the file removes the document.
    source_file_id: uuid.UUID | None = Field(
        default=None, foreign_key="files.id", ondelete="CASCADE", index=True
    )
    search_vector: str | None = Field(
        default=None,
        sa_column=Column(TSVECTOR, Computed(DOCUMENT_SEARCH_VECTOR_SQL, persisted=True)),
    )
    created_at: datetime = created_at_field()
    updated_at: datetime = updated_at_field()


class DocumentLink(SQLModel, table=True):
    """A `[[wiki link]]` from one document to another (or to one not written yet)."""

    __tablename__ = "document_links"
    __table_args__ = (
        Index("uq_document_links_source_text", "source_document_id", "link_text", unique=True),
    )

    id: uuid.UUID = uuid_primary_key()
    owner_id: uuid.UUID = owner_key()
    source_document_id: uuid.UUID = Field(
        foreign_key="documents.id", ondelete="CASCADE", nullable=False
    )
    target_document_id: uuid.UUID | None = Field(
        default=None, foreign_key="documents.id", ondelete="SET NULL", index=True
    )
    link_text: str = Field(sa_type=Text, nullable=False)
    created_at: datetime = created_at_field()


# Trigram index over a document's name, its title and its own path label (not the
# whole path: a folder's name would match everything under it), so a misspelt name
# still finds the document. search.py compares the same expression.
Index(
    "ix_documents_name_trgm",
    Document.__table__.c.owner_id,  # type: ignore[attr-defined]
    # Written as PostgreSQL shows it back, so that schema comparisons see no change.
    literal_column("((title || ' '::text) || subpath(path, '-1'::integer)::text)").label(
        "document_name"
    ),
    postgresql_using="gin",
    postgresql_ops={"document_name": "gin_trgm_ops"},
)


# Dimensions of the local embedding model; the same as memories use.
CHUNK_EMBEDDING_DIMENSIONS = 384


class DocumentChunk(SQLModel, table=True):
    """A passage of a document, embedded for semantic search.

    A chunk without an embedding is waiting for the embedding job. The table is
    partitioned by a hash of the owner (32 parts, migration 0015), so each
    part has its own HNSW graph and one person's search reads one part; every key
    therefore holds the owner.
    """

    __tablename__ = "document_chunks"
    __table_args__ = (
        PrimaryKeyConstraint("owner_id", "id", name="pk_document_chunks"),
        Index(
            "uq_document_chunks_document_ordinal",
            "document_id",
            "ordinal",
            "owner_id",
            unique=True,
        ),
        # The embedding job's queue: only the chunks still waiting, oldest first.
        Index(
            "ix_document_chunks_unembedded",
            "created_at",
            postgresql_where=text("embedding IS NULL"),
        ),
        Index(
            "ix_document_chunks_embedding_hnsw",
            "embedding",
            postgresql_using="hnsw",
            postgresql_ops={"embedding": "vector_cosine_ops"},
        ),
        {"postgresql_partition_by": "HASH (owner_id)"},
    )

    id: uuid.UUID = uuid_primary_key()
    owner_id: uuid.UUID = Field(
        foreign_key="users.id", ondelete="CASCADE", primary_key=True, nullable=False
    )
    document_id: uuid.UUID = Field(foreign_key="documents.id", ondelete="CASCADE", nullable=False)
    ordinal: int = Field(sa_type=Integer, nullable=False)
    content: str = Field(sa_type=Text, nullable=False)
    embedding: list[float] | None = Field(
        default=None, sa_column=Column(Vector(CHUNK_EMBEDDING_DIMENSIONS), nullable=True)
    )
    embedded_at: datetime | None = optional_timestamp()
    created_at: datetime = created_at_field()


class FileKnowledgeStatus(StrEnum):
    # The file is still being read; it is added once processing finishes.
    waiting = "waiting"
    # An ingest job is queued or running.
    adding = "adding"
    ready = "ready"
    failed = "failed"


class FileKnowledge(SQLModel, table=True):
    """A file its owner asked to keep in the knowledge base, and how that went.

    The documents themselves point at the file through `documents.source_file_id`;
    this row records the wish (so a replaced file is added again) and its progress.
    """

    __tablename__ = "file_knowledge"
    __table_args__ = (
        CheckConstraint(
            "status IN ('waiting', 'adding', 'ready', 'failed')",
            name="status",
        ),
    )

    file_id: uuid.UUID = Field(
        sa_column=Column(
            Uuid(), ForeignKey("files.id", ondelete="CASCADE"), primary_key=True, nullable=False
        )
    )
    owner_id: uuid.UUID = owner_key()
    status: str = defaulted(FileKnowledgeStatus.waiting.value, sa_type=Text)
    error: str | None = Field(default=None, sa_type=Text)
    job_id: int | None = Field(default=None, sa_type=BigInteger, nullable=True)
    # The document holding the text (the first part when the text is split).
    document_id: uuid.UUID | None = Field(
        default=None, foreign_key="documents.id", ondelete="SET NULL", nullable=True
    )
    # Which content of the file the documents hold; a different one needs adding again.
    ingested_sha256: str | None = Field(default=None, sa_type=Text)
    created_at: datetime = created_at_field()
    updated_at: datetime = updated_at_field()
