"""Version steps: the frozen SQL that takes a content schema from version N-1 to N.

Why frozen SQL and not "diff the metadata": a step is applied to many databases over a
long time (by the fleet runner, or by a user running the manual-deploy package with
psql), so what it does must never change after release — even when the table modules,
SQLAlchemy or pgvector change later. The table modules always describe the *latest*
version; the steps are the history that brings an older database there.

How to add version N (N = CONTENT_SCHEMA_VERSION + 1):

1. Change the table modules so that they describe version N (new deploys create N
   directly from the metadata).
2. Bump ``CONTENT_SCHEMA_VERSION`` to N in ``version.py`` and add ``SCHEMA_CHANGELOG[N]``,
   one line saying what changed.
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

Applying the steps to a version N-1 database must give the same catalog as a fresh
deploy of version N. To test that, the first step's author freezes the version-1 DDL
(``content_schema_sql()`` as released with version 1) next to the steps, builds a
version-1 database from it, applies ``steps_between(1, N)`` and compares the catalogs.
"""

from __future__ import annotations

from collections.abc import Mapping

VERSION_STEPS: dict[int, tuple[str, ...]] = {}
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
