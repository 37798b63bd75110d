"""The content schema's versions: the latest, the oldest the code still works with, the
target new deploys and fleet runs aim for, the changelog, and which columns each version has.

A database's version is the ``schema_version`` in its ``byodb.byodb_meta`` row. The latest
version is created from the table metadata (``byodb.content.ddl``); version 1 also exists
as frozen SQL (``frozen/v1.sql``); every later version N is reached from N-1 by the frozen
SQL of ``byodb.content.steps.VERSION_STEPS[N]``.

Expand, then contract: the code works against every version from
``MIN_SUPPORTED_SCHEMA_VERSION`` to the latest (see ``byodb.content.steps``). What a newer
version added is written down here (``COLUMNS_ADDED``), so reads use only what every
supported version has and a write of a newer column asks :func:`has_column` once.
"""

from __future__ import annotations

from collections.abc import Mapping

from byodb.errors import ConfigurationError

CONTENT_SCHEMA_VERSION = 2
"""The latest version: what the table modules describe."""

MIN_SUPPORTED_SCHEMA_VERSION = 1
"""The oldest version the code still reads and writes correctly. A database below it must be
migrated before the app may use it. Raised only after the whole fleet is at a newer version
(and then destructive changes of the versions below it become possible)."""

SCHEMA_CHANGELOG: dict[int, str] = {
    1: (
        "Initial content schema: 29 tables in schema byodb (conversations and participants; "
        "messages with tool calls, sources and attachments; memories; files and chunks; "
        "projects and their junctions; notes; bookmarks and snippets; tasks; tags and their "
        "junctions; usage records and TTS cache; presentations with slides, outline items, "
        "design templates and sessions; activity events) plus byodb_meta. "
        "activity_events is new here (id, user_id, event_type, subject_type, subject_id, "
        "data, created_at). File and TTS bytes are stored in bytea columns. "
        "vector(1536) HNSW cosine indexes on messages, memories, file_chunks; generated "
        "tsvector columns with GIN indexes on conversations, messages, memories, notes."
    ),
    2: (
        "Uniqueness the app enforced only in code, now also in the database: a tag name is "
        "unique per user ignoring case (uq_tags_user_lower_name), a TTS hash per user "
        "(uq_tts_cache_user_hash), at most one default design template per user "
        "(uq_design_templates_user_default); existing duplicates are merged (tag links "
        "follow the kept tag, the newest TTS entry and default template are kept). "
        "embedding_model text (nullable) on messages, memories and file_chunks: the model "
        "that made the row's embedding."
    ),
}
"""One line per version: what it changed, for operators and the manual-deploy package."""

COLUMNS_ADDED: Mapping[int, Mapping[str, tuple[str, ...]]] = {
    2: {
        "messages": ("embedding_model",),
        "memories": ("embedding_model",),
        "file_chunks": ("embedding_model",),
    },
}
"""Version -> table -> the columns that version added. A database below that version lacks
them, so the code reads them nowhere and writes them only where :func:`has_column` says."""


def latest_schema_version() -> int:
    """The newest content schema version this code knows."""
    return CONTENT_SCHEMA_VERSION


def supported_schema_versions() -> range:
    """Every version the code works with, oldest first."""
    return range(MIN_SUPPORTED_SCHEMA_VERSION, CONTENT_SCHEMA_VERSION + 1)


def has_column(version: int, table: str, column: str) -> bool:
    """Whether a database at schema ``version`` has ``table.column`` (a column that no
    version added is one every version has)."""
    for added_in, tables in COLUMNS_ADDED.items():
        if column in tables.get(table, ()):
            return version >= added_in
    return True


def columns_added_after(version: int) -> frozenset[tuple[str, str]]:
    """``(table, column)`` of every column a database at ``version`` does not have yet."""
    return frozenset((table, column)
                     for added_in, tables in COLUMNS_ADDED.items() if added_in > version
                     for table, columns in tables.items() for column in columns)


def resolve_schema_target(configured: int | None) -> int:
    """The version new deploys create and fleet runs bring databases to.

    ``configured`` is ``BYODB_SCHEMA_TARGET`` (``Settings.schema_target``); unset means the
    latest. Lowering it below the latest holds a rollout; it can never be below
    ``MIN_SUPPORTED_SCHEMA_VERSION`` (the code could not use such a database) nor above the
    latest (no step leads there). Raises :class:`ConfigurationError` otherwise.
    """
    if configured is None:
        return CONTENT_SCHEMA_VERSION
    if isinstance(configured, bool) or not isinstance(configured, int) or not (
            MIN_SUPPORTED_SCHEMA_VERSION <= configured <= CONTENT_SCHEMA_VERSION):
        raise ConfigurationError(
            f"BYODB_SCHEMA_TARGET={configured!r} is not a schema version this release can "
            f"deploy: it must be between {MIN_SUPPORTED_SCHEMA_VERSION} (the oldest supported) "
            f"and {CONTENT_SCHEMA_VERSION} (the latest), or unset for the latest")
    return configured
