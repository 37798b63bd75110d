"""The content schema package: tables, version, changelog, version steps and DDL.

The same schema lives in PostgreSQL schema ``byodb`` on the main database (users without
their own database) and in every user's database. See docs/content-schema.md for its rules.
"""

from __future__ import annotations

from byodb.content.ddl import (
    content_schema_sql,
    content_schema_statements,
    content_table_names,
    create_content_schema,
    known_schema_versions,
    meta_insert_sql,
)
from byodb.content.steps import VERSION_STEPS, steps_between
from byodb.content.tables import CONTENT_SCHEMA, metadata
from byodb.content.version import (
    COLUMNS_ADDED,
    CONTENT_SCHEMA_VERSION,
    MIN_SUPPORTED_SCHEMA_VERSION,
    SCHEMA_CHANGELOG,
    has_column,
    latest_schema_version,
    resolve_schema_target,
    supported_schema_versions,
)

__all__ = [
    "COLUMNS_ADDED",
    "CONTENT_SCHEMA",
    "CONTENT_SCHEMA_VERSION",
    "MIN_SUPPORTED_SCHEMA_VERSION",
    "SCHEMA_CHANGELOG",
    "VERSION_STEPS",
    "content_schema_sql",
    "content_schema_statements",
    "content_table_names",
    "create_content_schema",
    "has_column",
    "known_schema_versions",
    "latest_schema_version",
    "meta_insert_sql",
    "metadata",
    "resolve_schema_target",
    "steps_between",
    "supported_schema_versions",
]
