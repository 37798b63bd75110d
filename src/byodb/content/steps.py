"""Version steps: the frozen SQL that takes a content schema from version N-1 to N.

Why frozen SQL and not "diff the metadata": a step is applied to many databases over a
long time (by the fleet runner, or by a user running the manual-deploy package with
psql), so what it does must never change after release — even when the table modules,
SQLAlchemy or pgvector change later. The table modules always describe the *latest*
version; the steps are the history that brings an older database there. Version 1 itself
is frozen too: ``frozen/v1.sql`` is ``content_schema_sql()`` as released with version 1.

**Expand, then contract.** During a rollout the fleet holds databases at several versions
at once, and the code must work against every one of them, from
``MIN_SUPPORTED_SCHEMA_VERSION`` to the latest, so a user still at N-1 keeps working (no
503) while their database waits for its turn. Therefore:

- A step only *expands*: it adds tables, nullable columns (or columns with a default),
  indexes and constraints, and may fix data so a new constraint holds (merging
  duplicates, never dropping a user's content). It never drops or renames a table or
  column, narrows a type, or adds a constraint the previous release's code could
  violate.
- The code of version N reads only what every supported version has, and writes what
  version N added only where the database has it (``byodb.content.version.has_column``,
  from ``COLUMNS_ADDED``; the services ask the route's version once).
- A destructive change (*contract*: dropping what version N replaced) comes only in a
  later version M, released after the whole fleet reached N and
  ``MIN_SUPPORTED_SCHEMA_VERSION`` was raised to N; the code stopped using what M drops
  in a release before M.

How to add version N (N = CONTENT_SCHEMA_VERSION + 1):

1. Change the table modules so that they describe version N (new deploys create N
   directly from the metadata). A new column goes last in its table (``ALTER TABLE ...
   ADD COLUMN`` appends, and a fresh deploy must give the same column order).
2. Bump ``CONTENT_SCHEMA_VERSION`` to N in ``version.py``, add ``SCHEMA_CHANGELOG[N]``,
   one line saying what changed, and list added columns in ``COLUMNS_ADDED[N]``.
3. Add ``VERSION_STEPS[N]``: a tuple of SQL statements, each a string literal written
   out in full (schema-qualified names ``byodb.<table>``, the explicit constraint and
   index names of the metadata). Do not generate it at import time.
4. Never edit or remove an existing step; a mistake in a released step is fixed by a
   new step.
5. Record the new DDL fingerprint in ``tests/test_content_schema.py`` (its test fails on
   any table change until the version is bumped).

Rules for a step's statements: they run in order inside one transaction (PostgreSQL
DDL is transactional) together with the runner's update of ``byodb.byodb_meta``, so they
must not touch ``byodb_meta`` themselves and must not use statements that cannot run in a
transaction block (``CREATE INDEX CONCURRENTLY``, ``ALTER TYPE ... ADD VALUE`` on older
servers). They must work on every PostgreSQL version we accept for user databases (14+).
They run with ``search_path`` pinned to ``pg_catalog, byodb`` (the user database's own
functions cannot stand in for a built-in one). A step must succeed on any database of
version N-1 that the app could have written, including data the previous version only
guarded in code (duplicates written by concurrent requests): it repairs such data
instead of failing.

Applying the steps to a version N-1 database must give the same catalog as a fresh
deploy of version N. ``tests/test_content_steps.py`` builds a version-1 database from the
frozen DDL, applies ``steps_between(1, N)`` and compares the catalogs.
"""

from __future__ import annotations

from collections.abc import Mapping

VERSION_STEPS: dict[int, tuple[str, ...]] = {
    # Version 2: uniqueness that version 1 enforced only in code, made to hold in the
    # database (existing duplicates merged first), and the embedding model of each vector.
    2: (
        # Duplicate tag names of a user (ignoring case) are merged into the oldest tag
        # (created_at, then id). Per junction: the links that would repeat on (subject,
        # kept tag) are dropped first, keeping the one already on the kept tag, else the
        # oldest; then the remaining links of duplicates are pointed at the kept tag.
        "WITH keeper AS (SELECT id AS tag_id, first_value(id) OVER (PARTITION BY "
        "user_id, lower(name) ORDER BY created_at, id) AS keeper_id FROM byodb.tags), "
        "ranked AS (SELECT link.id, row_number() OVER (PARTITION BY "
        "link.conversation_id, keeper.keeper_id ORDER BY (link.tag_id = "
        "keeper.keeper_id) DESC, link.created_at, link.id) AS n FROM "
        "byodb.conversation_tags link JOIN keeper ON keeper.tag_id = link.tag_id) "
        "DELETE FROM byodb.conversation_tags link USING ranked WHERE link.id = "
        "ranked.id AND ranked.n > 1",
        "WITH keeper AS (SELECT id AS tag_id, first_value(id) OVER (PARTITION BY "
        "user_id, lower(name) ORDER BY created_at, id) AS keeper_id FROM byodb.tags) "
        "UPDATE byodb.conversation_tags link SET tag_id = keeper.keeper_id FROM keeper "
        "WHERE link.tag_id = keeper.tag_id AND keeper.tag_id <> keeper.keeper_id",
        "WITH keeper AS (SELECT id AS tag_id, first_value(id) OVER (PARTITION BY "
        "user_id, lower(name) ORDER BY created_at, id) AS keeper_id FROM byodb.tags), "
        "ranked AS (SELECT link.id, row_number() OVER (PARTITION BY link.note_id, "
        "keeper.keeper_id ORDER BY (link.tag_id = keeper.keeper_id) DESC, "
        "link.created_at, link.id) AS n FROM byodb.note_tags link JOIN keeper ON "
        "keeper.tag_id = link.tag_id) DELETE FROM byodb.note_tags link USING ranked "
        "WHERE link.id = ranked.id AND ranked.n > 1",
        "WITH keeper AS (SELECT id AS tag_id, first_value(id) OVER (PARTITION BY "
        "user_id, lower(name) ORDER BY created_at, id) AS keeper_id FROM byodb.tags) "
        "UPDATE byodb.note_tags link SET tag_id = keeper.keeper_id FROM keeper WHERE "
        "link.tag_id = keeper.tag_id AND keeper.tag_id <> keeper.keeper_id",
        "WITH keeper AS (SELECT id AS tag_id, first_value(id) OVER (PARTITION BY "
        "user_id, lower(name) ORDER BY created_at, id) AS keeper_id FROM byodb.tags), "
        "ranked AS (SELECT link.id, row_number() OVER (PARTITION BY link.task_id, "
        "keeper.keeper_id ORDER BY (link.tag_id = keeper.keeper_id) DESC, "
        "link.created_at, link.id) AS n FROM byodb.task_tags link JOIN keeper ON "
        "keeper.tag_id = link.tag_id) DELETE FROM byodb.task_tags link USING ranked "
        "WHERE link.id = ranked.id AND ranked.n > 1",
        "WITH keeper AS (SELECT id AS tag_id, first_value(id) OVER (PARTITION BY "
        "user_id, lower(name) ORDER BY created_at, id) AS keeper_id FROM byodb.tags) "
        "UPDATE byodb.task_tags link SET tag_id = keeper.keeper_id FROM keeper WHERE "
        "link.tag_id = keeper.tag_id AND keeper.tag_id <> keeper.keeper_id",
        # Then the duplicates, now without links, are deleted and the index can exist.
        "WITH keeper AS (SELECT id AS tag_id, first_value(id) OVER (PARTITION BY "
        "user_id, lower(name) ORDER BY created_at, id) AS keeper_id FROM byodb.tags) "
        "DELETE FROM byodb.tags tag USING keeper WHERE tag.id = keeper.tag_id AND "
        "keeper.tag_id <> keeper.keeper_id",
        "CREATE UNIQUE INDEX uq_tags_user_lower_name ON byodb.tags (user_id, "
        "lower(name))",
        # Duplicate TTS entries of a user and hash: the one a lookup returns is kept (a
        # live one before an expired one, then the newest).
        "WITH ranked AS (SELECT id, row_number() OVER (PARTITION BY user_id, hash ORDER "
        "BY (expires_at > now()) DESC, created_at DESC, id DESC) AS n FROM "
        "byodb.tts_cache) DELETE FROM byodb.tts_cache entry USING ranked WHERE entry.id "
        "= ranked.id AND ranked.n > 1",
        "CREATE UNIQUE INDEX uq_tts_cache_user_hash ON byodb.tts_cache (user_id, hash)",
        # More than one default design template of a user: the most recently updated
        # one stays the default (no template is deleted).
        "WITH ranked AS (SELECT id, row_number() OVER (PARTITION BY user_id ORDER BY "
        "updated_at DESC, id DESC) AS n FROM byodb.design_templates WHERE is_default) "
        "UPDATE byodb.design_templates template SET is_default = false FROM ranked "
        "WHERE template.id = ranked.id AND ranked.n > 1",
        "CREATE UNIQUE INDEX uq_design_templates_user_default ON byodb.design_templates "
        "(user_id) WHERE is_default",
        # Nullable, no default: adding it rewrites nothing (a brief lock on each table).
        "ALTER TABLE byodb.messages ADD COLUMN embedding_model TEXT",
        "ALTER TABLE byodb.memories ADD COLUMN embedding_model TEXT",
        "ALTER TABLE byodb.file_chunks ADD COLUMN embedding_model TEXT",
    ),
}
"""Target version N (>= 2) -> the SQL statements that take a database from N-1 to N."""


def steps_between(
    current: int,
    target: int,
    *,
    steps: Mapping[int, tuple[str, ...]] | None = None,
) -> list[tuple[int, tuple[str, ...]]]:
    """The steps to apply, in order, to bring a database from ``current`` to ``target``.

    Returns ``[(N, statements), ...]`` for N = current+1 .. target; an empty list when the
    database is already at ``target``. ``steps`` defaults to ``VERSION_STEPS``.

    Raises ``ValueError`` when ``current`` is below 1 (version 1 is created from the
    metadata, not by a step), for a downgrade (steps only go forward), and when a step
    in the range is missing, which includes a ``target`` newer than this code knows.
    """
    known = VERSION_STEPS if steps is None else steps
    if current < 1:
        raise ValueError(
            f"schema version {current} is not a deployed version; "
            "version 1 is created by deploying the schema, not by a step"
        )
    if target < current:
        raise ValueError(
            f"cannot go from schema version {current} down to {target}: "
            "version steps only go forward"
        )
    missing = [version for version in range(current + 1, target + 1) if version not in known]
    if missing:
        raise ValueError(
            f"no version step to schema version {missing[0]}, "
            f"so {current} cannot be brought to {target}"
        )
    return [(version, known[version]) for version in range(current + 1, target + 1)]
