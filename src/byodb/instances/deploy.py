"""Deploying the content schema to a database (a user's, or main for users without BYOD).

A deploy is one transaction (PostgreSQL DDL is transactional): it dies leaving the database
as it was, or commits complete; re-running on a deployed database is a no-op, and a database
at an older version gets the missing version steps. An advisory lock inside the transaction
keeps two deploys of one database from racing.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Connection, text

from byodb.content import (
    CONTENT_SCHEMA,
    CONTENT_SCHEMA_VERSION,
    content_schema_statements,
    steps_between,
)
from byodb.errors import ByodbError

# pg_advisory_xact_lock key for "deploying/migrating the byodb schema of this database".
DEPLOY_LOCK_KEY = 0x6279_6F64_6462  # "byoddb"

Progress = Callable[[int, int, str], None]


class DeployError(ByodbError):
    code = "deploy_failed"
    status = 500


@dataclass(frozen=True)
class DeployOutcome:
    action: str  # "created" | "upgraded" | "unchanged"
    from_version: int | None
    version: int
    instance_id: uuid.UUID


def _deployed_version(conn: Connection) -> int | None:
    meta = conn.execute(text("select to_regclass('byodb.byodb_meta') is not null")).scalar()
    if meta:
        version = conn.execute(
            text("select schema_version from byodb.byodb_meta where id = 1")
        ).scalar()
        if version is None:
            raise DeployError("byodb.byodb_meta exists but records no version",
                              code="schema_conflict")
        return int(version)
    others = conn.execute(
        text("select count(*) from pg_class c join pg_namespace n on n.oid = c.relnamespace "
             "where n.nspname = :s"), {"s": CONTENT_SCHEMA}
    ).scalar()
    if others:
        raise DeployError("the database has a 'byodb' schema that byodb did not create",
                          hint="use a dedicated database or drop that schema",
                          code="schema_conflict")
    return None


def deploy_content_schema_on(
    conn: Connection,
    *,
    progress: Progress | None = None,
    timeout_s: float | None = None,
    target_version: int = CONTENT_SCHEMA_VERSION,
) -> DeployOutcome:
    """Bring ``conn``'s database to ``target_version`` in one transaction.

    ``conn`` must not be inside a transaction. ``progress(step, total, label)`` is called
    as statements run (best effort, for the user's progress bar).
    """
    started = time.monotonic()
    report = progress or (lambda step, total, label: None)
    with conn.begin():
        if timeout_s is not None:
            conn.execute(text(f"set local statement_timeout = {int(timeout_s * 1000)}"))
            conn.execute(text(f"set local lock_timeout = {int(timeout_s * 1000)}"))
        conn.execute(text("select pg_advisory_xact_lock(:k)"), {"k": DEPLOY_LOCK_KEY})
        current = _deployed_version(conn)
        if current is None:
            creation = content_schema_statements()
            total = len(creation) + 1
            for number, statement in enumerate(creation, start=1):
                report(number, total, _label(statement))
                conn.exec_driver_sql(statement)
            instance_id = uuid.uuid4()
            conn.execute(
                text("insert into byodb.byodb_meta (id, schema_version, instance_id) "
                     "values (1, :v, :i)"), {"v": target_version, "i": instance_id}
            )
            action = "created"
        else:
            if current > target_version:
                raise DeployError(
                    f"the database is at schema version {current}, newer than {target_version}",
                    code="unsupported_version")
            steps = steps_between(current, target_version)
            total = sum(len(s) for _, s in steps) + 1
            number = 0
            for version, statements in steps:
                for statement in statements:
                    number += 1
                    report(number, total, f"Version {version}: {_label(statement)}")
                    conn.exec_driver_sql(statement)
            if steps:
                conn.execute(text("update byodb.byodb_meta set schema_version = :v, "
                                  "updated_at = now() where id = 1"), {"v": target_version})
            instance_id = conn.execute(
                text("select instance_id from byodb.byodb_meta where id = 1")).scalar_one()
            action = "upgraded" if steps else "unchanged"
        if timeout_s is not None and time.monotonic() - started > timeout_s:
            # Too late: roll back rather than commit after the caller gave up on us.
            raise DeployError(f"deployment timed out after {timeout_s:.0f} s", code="timeout")
        report(total, total, "Recording schema version")
    return DeployOutcome(action, current, target_version, instance_id)


def _label(statement: str) -> str:
    """A short, content-free description of a DDL statement for progress display."""
    words = statement.split()
    if words[:2] == ["CREATE", "TABLE"]:
        return f"Creating table {words[2]}"
    if words[:2] in (["CREATE", "INDEX"], ["CREATE", "UNIQUE"]):
        return "Creating indexes"
    if words[:2] == ["CREATE", "EXTENSION"]:
        return "Enabling pgvector"
    if words[:2] == ["CREATE", "SCHEMA"]:
        return "Creating schema byodb"
    return "Applying schema change"
