"""Per-day usage totals and the text-to-speech audio cache (seeds: usage.ts)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Date,
    Index,
    LargeBinary,
    Numeric,
    Table,
    Text,
    UniqueConstraint,
    text,
)

from byodb.content.tables._base import (
    counter_column,
    created_at_column,
    id_column,
    metadata,
    timestamp_column,
    user_id_column,
)

# One row per user, day and model, so a request's usage is added with
# INSERT ... ON CONFLICT (user_id, date, model) DO UPDATE.
usage_records = Table(
    "usage_records",
    metadata,
    id_column(),
    user_id_column(),
    Column("date", Date, nullable=False),
    Column("model", Text, nullable=False),
    # bigint: daily totals of a busy user can pass 2^31 tokens over a long-lived row.
    counter_column("input_tokens", BigInteger),
    counter_column("output_tokens", BigInteger),
    # numeric: exact sums of many small per-request costs.
    Column("cost", Numeric, nullable=False, server_default=text("0")),
    counter_column("request_count"),
    UniqueConstraint("user_id", "date", "model"),
    Index("ix_usage_records_user", "user_id"),
    Index("ix_usage_records_user_date", "user_id", "date"),
    Index("ix_usage_records_user_model", "user_id", "model"),
)

# The seeds' storageId pointed at Convex storage; the audio bytes now live in the row.
tts_cache = Table(
    "tts_cache",
    metadata,
    id_column(),
    user_id_column(),
    Column("hash", Text, nullable=False),  # hash of text + voice + settings
    Column("audio", LargeBinary, nullable=False),
    Column("text", Text, nullable=False),
    Column("voice", Text, nullable=False),
    created_at_column(),
    timestamp_column("expires_at", default_now=False),
    Index("ix_tts_cache_user", "user_id"),
    Index("ix_tts_cache_hash", "hash"),
    Index("ix_tts_cache_expires", "expires_at"),
    # Version 2: one entry per user and hash (storing again replaces, see the service).
    Index("uq_tts_cache_user_hash", "user_id", "hash", unique=True),
)
