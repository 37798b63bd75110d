"""``byodb_meta``: the single row that says which schema version a database holds.

Deploy inserts the row (with a fresh ``instance_id``) in the same transaction as the
tables, and version steps update ``schema_version`` in the transaction of the step, so
the row is the truth about the database's schema. It is not a content table: it has no
``user_id`` and is never copied by data moves.
"""

from __future__ import annotations

from sqlalchemy import CheckConstraint, Column, Integer, SmallInteger, Table, Uuid

from byodb.content.tables._base import metadata, timestamp_column

byodb_meta = Table(
    "byodb_meta",
    metadata,
    Column("id", SmallInteger, primary_key=True, autoincrement=False),
    Column("schema_version", Integer, nullable=False),
    timestamp_column("deployed_at"),
    timestamp_column("updated_at"),
    # Identifies this database across URL changes (the same database reached by a new
    # host name) and tells two databases apart that a user might confuse.
    Column("instance_id", Uuid(as_uuid=True), nullable=False),
    CheckConstraint("id = 1", name="single_row"),
    CheckConstraint("schema_version >= 1", name="schema_version_positive"),
)
