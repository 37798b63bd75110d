"""Moving one user's content between two databases that hold the content schema.

One function moves in both directions (main → the user's database on connect, the user's
database → main on "migrate back"). The **target** is where every check runs, in SQL,
because the source may be a user's database: its owner can put any rows, functions,
operators and settings in it (DESIGN.md §6), so the ``user_id`` filter that runs there is
only an optimisation, never a guarantee.

The order of a move, step by step:

1. Open a source transaction (repeatable read, so the delete at the end removes exactly the
   rows that were copied; on a user's database its content tables are taken IN EXCLUSIVE
   MODE: reads go on, writes wait) and a target transaction. Both get the same session
   settings, so a row's text is identical on either server.
2. Stage: each content table (parents first) is streamed with COPY, block by block, into a
   temporary table on the target that has the real table's columns, defaults, NOT NULL and
   CHECK constraints. Generated columns (tsvector) are not copied; the target computes them.
   During a schema rollout the two sides may be at different versions: only the columns
   the older of the two has are copied (``byodb.content.has_column``).
3. Validate the staged rows before anything is written; a failure raises
   :class:`MoveRefused` (409) and changes nothing on either side:
   ``move_foreign_rows`` — a staged row's ``user_id`` is not the moving user's;
   ``move_invalid_content`` — a value the API would not accept (text longer than
   ``text_limit(column)``, JSON larger than ``MAX_JSON_BYTES``, bytes larger than
   ``MAX_INLINE_BYTES``, unless ``STORED_FIELD_LIMITS`` names the column's own bound, as
   for a file's bytes; negative numbers, a TTS hash outside ``HASH_PATTERN``, a value
   outside a CHECK, a repeated id) or a reference to a row that exists nowhere;
   ``move_id_conflict`` — a staged id that is another account's row on the target, or a
   reference (foreign key) to another account's row on the target.
4. Merge into the real tables, in the one target transaction, by these rules:
   - Same id, same row. A table with ``updated_at``: the newer ``updated_at`` wins (a tie
     keeps the target's row). A table without it: the target's row is kept.
   - Same natural key, one row. Keys are every UNIQUE constraint of a table plus the ones
     the services enforce in code (a tag's name ignoring case, a TTS hash, per user). The
     target's row is kept and the staged row is dropped; rows that referred to the dropped
     row (a tag's links) are pointed at the kept one. Usage records are the exception:
     the counters of the staged row are added to the target's row, which takes the staged
     row's id, so a move that is run again recognises that row as already merged and adds
     nothing twice.
   - Everything else is inserted as it is (ids are kept across databases).
   Then, in the same transaction, every staged row is verified to be on the target: the
   same id with an identical row hash, or a target row that won by the rules above, or the
   row it was merged into. A mismatch raises :class:`MoveVerificationError` and rolls back.
5. Commit the target, then delete the user's rows from the source (children first) in the
   still-open source transaction and commit it (unless the caller keeps a copy there).

An interruption anywhere leaves either nothing changed or the rows on both sides; running
the move again merges idempotently (nothing is duplicated, nothing lost).

Error messages name tables, columns and counts, never a value: content must not reach logs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import psycopg
from psycopg import sql
from sqlalchemy import Table

from byodb.content import CONTENT_SCHEMA
from byodb.instances.lifecycle.move_checks import create_staging, stage, staged_count, validate
from byodb.instances.lifecycle.move_merge import merge_all
from byodb.instances.lifecycle.move_plan import (
    Conn,
    MoveRefused,
    MoveReport,
    Progress,
    common_version,
    content_tables,
    names,
    plans_for,
    row_hash,
    rowcount_of,
    say,
    scalar,
    set_comparable_session,
    stored_columns,
)

# --- 1. the two transactions -------------------------------------------------------------


async def _begin_source(source: Conn, lock_tables: bool) -> None:
    # SET and LOCK take no snapshot, so on main the locks are held before the copy's
    # snapshot is taken. On a user's database the settings query at BEGIN takes it first:
    # a row committed before the locks were granted is then neither copied nor deleted —
    # it stays on the source, never lost.
    await set_comparable_session(source)
    if lock_tables:
        tables = sql.SQL(", ").join(sql.Identifier(CONTENT_SCHEMA, t.name)
                                    for t in content_tables())
        await source.execute(sql.SQL("lock table {} in exclusive mode").format(tables))


# --- 5. deleting -------------------------------------------------------------------------


async def _delete_in_transaction(conn: Conn, user_id: str) -> int:
    deleted = 0
    for table in reversed(content_tables()):
        deleted += await rowcount_of(conn, sql.SQL("delete from {} where user_id = %s").format(
            sql.Identifier(CONTENT_SCHEMA, table.name)), (user_id,))
    return deleted


# --- the public interface ----------------------------------------------------------------


async def move_user_content(source: Conn, target: Conn, user_id: str, *,
                            lock_source_tables: bool,
                            progress: Progress | None = None,
                            delete_source: bool = True) -> MoveReport:
    """Move every content row of ``user_id`` from ``source`` to ``target`` (see the module
    docstring for the order and the rules). Safe to run again after any interruption.

    Both connections are in autocommit mode, with ``search_path`` pinned by the caller.
    ``lock_source_tables``: True when the source is a user's database (its content tables
    are locked for the move); False when it is main, where the caller already holds the
    user's writes (locking main's tables would block every user). ``delete_source=False``
    copies without deleting (switching databases while keeping a copy on the old one).
    """
    plans = plans_for(await common_version(source, target))
    report = MoveReport()
    # Repeatable read: the delete at the end sees the snapshot the copy saw, so a row
    # written in between (if anything slipped past the locks) stays instead of being lost.
    # Set before BEGIN (a user database's transaction starts with its settings query).
    await source.set_isolation_level(psycopg.IsolationLevel.REPEATABLE_READ)
    try:
        async with source.transaction():
            await _begin_source(source, lock_source_tables)
            async with target.transaction():
                await set_comparable_session(target)
                for plan in plans:
                    await say(progress, f"Copying {plan.name}")
                    report.rows[plan.name] = await stage(source, target, plan, user_id)
                    await validate(target, plan, user_id)
                await say(progress, "Merging and verifying the copied rows")
                report.merged = await merge_all(target, plans, user_id)
            if delete_source:
                await say(progress, "Removing the moved rows from the source")
                await _delete_in_transaction(source, user_id)
    finally:
        if not source.closed:
            await source.set_isolation_level(None)
    return report


RowFeed = Callable[[str, tuple[str, ...]], AsyncIterator[Sequence[Any]]]
"""(table name, its columns) → that table's rows, each as values in the order of the columns,
or ``bytes``: whole rows in COPY's text format, in those columns."""


async def merge_rows(target: Conn, user_id: str, feed: RowFeed, *, version: int,
                     progress: Progress | None = None) -> MoveReport:
    """Write rows that come from elsewhere than a database (an imported file) into
    ``target`` by the rules of a move: staged (COPY), validated (step 3), merged and
    verified (step 4), all in the caller's transaction on ``target``; a refusal raises
    :class:`MoveRefused` and, the caller's transaction rolled back, nothing is written.
    Merging the same rows again changes nothing (same id, same row).

    ``version``: the target's schema version (only the columns it has are written);
    ``feed`` is asked for every content table, parents first, in those columns.
    """
    plans = plans_for(version)
    report = MoveReport()
    await set_comparable_session(target)
    for plan in plans:
        await say(progress, f"Writing {plan.name}")
        await create_staging(target, plan)
        query = sql.SQL("copy {} ({}) from stdin").format(plan.staging, names(plan.columns))
        try:
            async with target.cursor() as cursor, cursor.copy(query) as copy:
                async for values in feed(plan.name, plan.columns):
                    if isinstance(values, bytes):  # rows already in COPY's text format
                        await copy.write(values)
                    else:
                        await copy.write_row(values)
        except (psycopg.errors.DataError, psycopg.errors.IntegrityError) as exc:
            name = exc.diag.column_name or exc.diag.constraint_name
            where = f" ({name})" if name else ""
            raise MoveRefused(f"rows of {plan.name} do not fit the content schema{where}; "
                              "nothing was moved", code="move_invalid_content") from None
        report.rows[plan.name] = await staged_count(target, plan)
        await validate(target, plan, user_id)
    await say(progress, "Merging and verifying the rows")
    report.merged = await merge_all(target, plans, user_id)
    return report


async def delete_user_rows(conn: Conn, user_id: str) -> int:
    """Delete every content row of ``user_id`` (children first), in one transaction."""
    async with conn.transaction():
        return await _delete_in_transaction(conn, user_id)


async def drop_schema_if_empty(conn: Conn) -> bool:
    """Drop the ``byodb`` schema when no content of anyone is left in it.

    The content tables are locked first, so no row can arrive between the check and the drop.
    """
    async with conn.transaction():
        tables = [sql.Identifier(CONTENT_SCHEMA, t.name) for t in content_tables()]
        await conn.execute(sql.SQL("lock table {} in exclusive mode").format(
            sql.SQL(", ").join(tables)))
        for table in tables:
            if await scalar(conn, sql.SQL("select exists (select from {})").format(table)):
                return False
        await conn.execute(sql.SQL("drop schema {} cascade").format(
            sql.Identifier(CONTENT_SCHEMA)))
    return True


async def row_hashes(conn: Conn, table: Table, user_id: str) -> dict[str, str]:
    """id → hash of every stored column, for the user's rows of ``table``."""
    async with conn.transaction():
        await set_comparable_session(conn)
        cursor = await conn.execute(sql.SQL(
            "select t.id::text, {} from {} t where t.user_id = %s").format(
            row_hash(stored_columns(table), "t"), sql.Identifier(CONTENT_SCHEMA, table.name)),
            (user_id,))
        return {row[0]: row[1] for row in await cursor.fetchall()}
