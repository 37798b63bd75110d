"""Steps 2 and 3 of a data move (:mod:`byodb.instances.lifecycle.moves`): stage each table's
rows on the target (COPY into a temporary table), then refuse the move unless every staged row
may be written there."""

from __future__ import annotations

import psycopg
from psycopg import sql

from byodb.content import CONTENT_SCHEMA
from byodb.instances.lifecycle.move_plan import (
    MERGED_INTO,
    WAS_ON_TARGET,
    Conn,
    MoveRefused,
    Plan,
    count_of,
    names,
    staging_name,
)

# --- 2. staging --------------------------------------------------------------------------


async def create_staging(target: Conn, plan: Plan) -> None:
    await target.execute(sql.SQL(
        "create temp table {} (like {} including defaults including constraints, "
        "{} uuid, {} boolean) on commit drop").format(
        plan.staging, plan.real, sql.Identifier(MERGED_INTO), sql.Identifier(WAS_ON_TARGET)))


async def staged_count(target: Conn, plan: Plan) -> int:
    # Temporary tables are never auto-analysed; the checks and merges below join on them.
    await target.execute(sql.SQL("analyze {}").format(plan.staging))
    return await count_of(target, sql.SQL("select count(*) from {}").format(plan.staging))


async def stage(source: Conn, target: Conn, plan: Plan, user_id: str) -> int:
    """COPY the user's rows of one table into a temporary table on the target."""
    await create_staging(target, plan)
    columns = names(plan.columns)
    # This filter runs on the source, where its owner can make `=` mean anything: it only
    # saves copying other rows; validate checks every staged row again on the target.
    out_query = sql.SQL("copy (select {} from {} where user_id = %s) to stdout").format(
        columns, plan.real)
    in_query = sql.SQL("copy {} ({}) from stdin").format(plan.staging, columns)
    try:
        async with source.cursor() as out_cursor, target.cursor() as in_cursor, \
                out_cursor.copy(out_query, (user_id,)) as out, in_cursor.copy(in_query) as into:
            async for block in out:
                await into.write(block)
    except (psycopg.errors.DataError, psycopg.errors.IntegrityError) as exc:
        # The server's message may quote the value; only the column is named.
        name = exc.diag.column_name or exc.diag.constraint_name
        where = f" ({name})" if name else ""
        raise MoveRefused(
            f"rows of {plan.name} do not fit the content schema{where}; nothing was moved",
            code="move_invalid_content") from None
    return await staged_count(target, plan)


# --- 3. validation -----------------------------------------------------------------------


async def validate(target: Conn, plan: Plan, user_id: str) -> None:
    """Refuse the move unless every staged row of ``plan`` may be written to the target."""
    await _refuse_foreign_rows(target, plan, user_id)
    await _refuse_repeated_ids(target, plan)
    await _refuse_values_beyond_limits(target, plan)
    await _refuse_ids_of_others(target, plan, user_id)
    for column, parent in plan.references:
        await _refuse_foreign_references(target, plan, column, parent, user_id)
    if plan.summed:
        await _refuse_repeated_keys(target, plan)


async def _refuse_foreign_rows(target: Conn, plan: Plan, user_id: str) -> None:
    foreign = await count_of(target, sql.SQL(
        "select count(*) from {} s where s.user_id is distinct from %s").format(plan.staging),
        (user_id,))
    if foreign:
        raise MoveRefused(f"{foreign} rows of {plan.name} belong to another account; "
                          "nothing was moved", code="move_foreign_rows")


async def _refuse_repeated_ids(target: Conn, plan: Plan) -> None:
    # The staging table has no primary key (an index would slow every COPY down).
    repeated = await count_of(target, sql.SQL(
        "select count(*) - count(distinct id) from {}").format(plan.staging))
    if repeated:
        raise MoveRefused(f"{repeated} rows of {plan.name} repeat an id; nothing was moved",
                          code="move_invalid_content")


async def _refuse_values_beyond_limits(target: Conn, plan: Plan) -> None:
    if not plan.checks:
        return
    counts = sql.SQL(", ").join(sql.SQL("count(*) filter (where {})").format(check.condition)
                                for check in plan.checks)
    params = tuple(p for check in plan.checks for p in check.params)
    cursor = await target.execute(
        sql.SQL("select {} from {} s").format(counts, plan.staging), params)
    row = await cursor.fetchone()
    for check, bad in zip(plan.checks, row or (), strict=True):
        if bad:
            raise MoveRefused(
                f"{bad} rows of {plan.name} have a {check.column} {check.what}, beyond what "
                "the app accepts; nothing was moved", code="move_invalid_content")


async def _refuse_ids_of_others(target: Conn, plan: Plan, user_id: str) -> None:
    taken = await count_of(target, sql.SQL(
        "select count(*) from {} s join {} t on t.id = s.id "
        "where t.user_id is distinct from %s").format(plan.staging, plan.real), (user_id,))
    if taken:
        raise MoveRefused(f"{taken} rows of {plan.name} use ids that belong to other rows on "
                          "the target; nothing was moved", code="move_id_conflict")


async def _refuse_foreign_references(target: Conn, plan: Plan, column: str, parent: str,
                                     user_id: str) -> None:
    """A reference must point at a staged row (all this user's, checked before, parents come
    first) or at this user's row on the target: a foreign key on the target would otherwise
    happily attach the row to another account's parent."""
    ref = sql.Identifier("s", column)
    # Joins rather than correlated subqueries, so large tables get hash joins. Staged ids
    # are unique by now (checked before), so the join to the staged parents adds no rows.
    cursor = await target.execute(sql.SQL(
        "select count(*) filter (where q.id is null and p.id is not null"
        "                          and p.user_id is distinct from %s),"
        "       count(*) filter (where q.id is null and p.id is null) "
        "from {staging} s left join {staged} q on q.id = {ref}"
        " left join {parent} p on p.id = {ref} "
        "where {ref} is not null").format(
        staged=staging_name(parent), ref=ref, staging=plan.staging,
        parent=sql.Identifier(CONTENT_SCHEMA, parent)), (user_id,))
    others, missing = await cursor.fetchone() or (0, 0)
    if others:
        raise MoveRefused(f"{others} rows of {plan.name} refer through {column} to rows of "
                          "another account on the target; nothing was moved",
                          code="move_id_conflict")
    if missing:
        raise MoveRefused(f"{missing} rows of {plan.name} refer through {column} to rows "
                          "that exist nowhere; nothing was moved", code="move_invalid_content")


async def _refuse_repeated_keys(target: Conn, plan: Plan) -> None:
    # Summing is only idempotent if each staged row matches at most one target row and
    # vice versa; the source's own UNIQUE constraint guarantees it unless it was removed.
    for key in plan.keys:
        repeated = await count_of(target, sql.SQL(
            "select count(*) from (select from {} group by {} having count(*) > 1) d").format(
            plan.staging, names(key)))
        if repeated:
            raise MoveRefused(f"rows of {plan.name} repeat a unique key; nothing was moved",
                              code="move_invalid_content")

