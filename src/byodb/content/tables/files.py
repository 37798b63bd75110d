"""Uploaded files and their text chunks for retrieval (seeds: files.ts).

The seeds kept file bytes in Convex storage (storageId). Here the bytes live in the
user's own database, in ``files.content`` (bytea, nullable while uploading or when only an
external ``url`` is known), so leaving the service takes the files along.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Index,
    Integer,
    LargeBinary,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB

from byodb.content.tables._base import (
    created_at_column,
    embedding_column,
    embedding_model_column,
    enum_check,
    fk_column,
    hnsw_cosine_index,
    id_column,
    metadata,
    updated_at_column,
    user_id_column,
)

FILE_STATUSES: tuple[str, ...] = ("uploading", "processing", "ready", "error")

files = Table(
    "files",
    metadata,
    id_column(),
    user_id_column(),
    Column("filename", Text, nullable=False),
    Column("mime_type", Text, nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("url", Text),
    Column("status", Text),
    Column("error", Text),
    Column("metadata", JSONB),
    Column("content", LargeBinary),
    created_at_column(),
    updated_at_column(),
    enum_check("status", FILE_STATUSES),
    CheckConstraint("size >= 0", name="size_not_negative"),
    Index("ix_files_user", "user_id"),
    Index("ix_files_user_status", "user_id", "status"),
)

file_chunks = Table(
    "file_chunks",
    metadata,
    id_column(),
    fk_column("file_id", "files", ondelete="CASCADE"),
    user_id_column(),
    Column("chunk_index", Integer, nullable=False),
    Column("content", Text, nullable=False),
    embedding_column(),
    created_at_column(),
    embedding_model_column(),  # version 2
    # A chunk's position within its file is unique, so re-chunking after a retry
    # cannot duplicate chunks.
    UniqueConstraint("file_id", "chunk_index"),
    Index("ix_file_chunks_file", "file_id"),
    Index("ix_file_chunks_user", "user_id"),
    hnsw_cosine_index("file_chunks"),
)
