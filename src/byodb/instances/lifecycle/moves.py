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

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import AsyncConnection, sql
from sqlalchemy import Integer, LargeBinary, Numeric, String, Table, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB

from byodb.content import CONTENT_SCHEMA, CONTENT_SCHEMA_VERSION, content_table_names, has_column
from byodb.content.deploy import deployed_schema
from byodb.content.limits import (
    HASH_PATTERN,
    MAX_INLINE_BYTES,
    MAX_JSON_BYTES,
    STORED_FIELD_LIMITS,
    text_limit,
)
from byodb.content.tables import metadata
from byodb.errors import ByodbError

Progress = Callable[[str], Awaitable[None]]
Conn = AsyncConnection[Any]

_SESSION = ("set local timezone = 'UTC'", "set local datestyle = 'ISO, MDY'",
            "set local extra_float_digits = 3", "set local intervalstyle = 'postgres'")

# Text the API also checks against a pattern (a TTS hash appears in URLs).
_PATTERNS: dict[tuple[str, str], str] = {("tts_cache", "hash"): HASH_PATTERN}

# Natural keys the services enforce in code (schema v1 has no unique index for them; v2
# has, but a version-1 source may still hold duplicates, which merge into one row here).
_CODE_ENFORCED_KEYS: dict[str, tuple[tuple[str, ...], ...]] = {
    "tags": (("user_id", "name"),),
    "tts_cache": (("user_id", "hash"),),
}
# Key columns compared ignoring case, as the services compare them (and as schema version
# 2's unique index on lower(name) does: "Work" and "work" are one tag).
_CASE_FOLDED_KEYS: frozenset[tuple[str, str]] = frozenset({("tags", "name")})
# Tables whose natural-key duplicates are added up instead of keeping the target's row.
_SUMMED_COLUMNS: dict[str, tuple[str, ...]] = {
    "usage_records": ("input_tokens", "output_tokens", "cost", "request_count"),
}

# Bookkeeping column of every staging table: the id of the target row a staged row was
# merged into by natural key (NULL: the staged row stands for itself).
_MERGED_INTO = "byodb_merged_into"
# Whether a row with the staged row's id was on the target before the insert.
_WAS_ON_TARGET = "byodb_was_on_target"


_HINTS: dict[str, str] = {
    "move_foreign_rows": "The byodb schema of the database being moved from holds rows of "
                         "other accounts; remove them, then try again.",
    "move_id_conflict": "Rows of the database being moved from reuse ids of other accounts' "
                        "rows; remove those rows, then try again.",
    "move_invalid_content": "Correct or remove the rows named in the message in the database "
                            "being moved from, then try again.",
}


class MoveRefused(ByodbError):
    """A move that must not happen; nothing was changed on either side. ``code`` is one of
    ``move_foreign_rows``, ``move_id_conflict`` or ``move_invalid_content``."""

    code = "move_refused"
    status = 409

    def __init__(self, message: str, *, code: str, hint: str | None = None) -> None:
        super().__init__(message, code=code, hint=hint or _HINTS.get(code))


class MoveVerificationError(ByodbError):
    code = "move_verification_failed"


@dataclass
class MoveReport:
    rows: dict[str, int] = field(default_factory=dict)
    """Rows read from the source, per table."""
    merged: int = 0
    """Of those, rows combined with a row already on the target (same id or natural key)."""

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())


# --- the tables, as the move sees them --------------------------------------------------


@dataclass(frozen=True)
class _Check:
    """One value rule: ``condition`` (SQL over a staged row ``s``) is true for a bad value."""

    column: str
    condition: sql.Composable
    params: tuple[Any, ...]
    what: str


@dataclass(frozen=True)
class _Plan:
    table: Table
    columns: tuple[str, ...]  # stored columns (generated ones are computed by the target)
    references: tuple[tuple[str, str], ...]  # (column, parent table) per foreign key
    keys: tuple[tuple[str, ...], ...]  # natural keys
    summed: tuple[str, ...]  # counters added up on a natural-key match
    checks: tuple[_Check, ...]

    @property
    def name(self) -> str:
        return self.table.name

    @property
    def has_updated_at(self) -> bool:
        return "updated_at" in self.columns

    @property
    def real(self) -> sql.Identifier:
        return sql.Identifier(CONTENT_SCHEMA, self.name)

    @property
    def staging(self) -> sql.Identifier:
        return _staging_name(self.name)


def content_tables() -> list[Table]:
    """Every content table, parents before children."""
    return [metadata.tables[f"{CONTENT_SCHEMA}.{name}"] for name in content_table_names()]


def _staging_name(table_name: str) -> sql.Identifier:
    # Qualified with pg_temp so no schema on the search path can stand in for it.
    return sql.Identifier("pg_temp", f"byodb_move_{table_name}")


def _stored_columns(table: Table) -> tuple[str, ...]:
    return tuple(c.name for c in table.columns if c.computed is None)


def _natural_keys(table: Table) -> tuple[tuple[str, ...], ...]:
    declared = tuple(tuple(c.name for c in constraint.columns)
                     for constraint in table.constraints
                     if isinstance(constraint, UniqueConstraint))
    return declared + _CODE_ENFORCED_KEYS.get(table.name, ())


def _value_checks(table: Table, columns: Sequence[str]) -> tuple[_Check, ...]:
    """The API's limits on each stored column, as SQL conditions that flag a bad value."""
    checks: list[_Check] = []
    for name in columns:
        col = sql.Identifier("s", name)
        type_ = table.c[name].type
        where = (table.name, name)
        if isinstance(type_, String):
            limit = STORED_FIELD_LIMITS.get(where, text_limit(name))
            checks.append(_Check(name, sql.SQL("char_length({}) > %s").format(col), (limit,),
                                 f"longer than {limit} characters"))
            if where in _PATTERNS:
                checks.append(_Check(name, sql.SQL("{} !~ %s").format(col),
                                     (_PATTERNS[where],), "not in the allowed characters"))
        elif isinstance(type_, JSONB):
            limit = STORED_FIELD_LIMITS.get(where, MAX_JSON_BYTES)
            checks.append(_Check(name, sql.SQL("octet_length({}::text) > %s").format(col),
                                 (limit,), f"larger than {limit} bytes"))
        elif isinstance(type_, LargeBinary):
            limit = STORED_FIELD_LIMITS.get(where, MAX_INLINE_BYTES)
            checks.append(_Check(name, sql.SQL("octet_length({}) > %s").format(col), (limit,),
                                 f"larger than {limit} bytes"))
        elif isinstance(type_, Integer):  # BigInteger too
            checks.append(_Check(name, sql.SQL("{} < 0").format(col), (), "negative"))
        elif isinstance(type_, Numeric):
            # NaN sorts above Infinity in PostgreSQL, so this refuses NaN and ±Infinity too.
            checks.append(_Check(name, sql.SQL("not ({0} >= 0 and {0} < 'Infinity')").format(
                col), (), "negative or not a finite number"))
    return tuple(checks)


def _plan(table: Table, version: int) -> _Plan:
    # Only the columns both databases have: during a schema rollout one side may still be
    # at an older version (what it lacks is left to the target's default, NULL).
    columns = tuple(c for c in _stored_columns(table) if has_column(version, table.name, c))
    references = tuple((fk.parent.name, fk.column.table.name) for fk in table.foreign_keys)
    return _Plan(table=table, columns=columns, references=references,
                 keys=_natural_keys(table), summed=_SUMMED_COLUMNS.get(table.name, ()),
                 checks=_value_checks(table, columns))


def _plans(version: int) -> list[_Plan]:
    return [_plan(table, version) for table in content_tables()]


async def _common_version(source: Conn, target: Conn) -> int:
    """The older of the two databases' schema versions (the latest if neither says)."""
    versions = [schema.version for schema in
                (await deployed_schema(source), await deployed_schema(target)) if schema]
    return min(versions, default=CONTENT_SCHEMA_VERSION)


# --- small SQL helpers -------------------------------------------------------------------


def _names(columns: Sequence[str], alias: str | None = None) -> sql.Composable:
    return sql.SQL(", ").join(
        sql.Identifier(alias, c) if alias else sql.Identifier(c) for c in columns)


def _row_hash(columns: Sequence[str], alias: str) -> sql.Composable:
    """md5 of the row's text: the same under the comparable session settings on any server."""
    return sql.SQL("md5(row({})::text)").format(_names(columns, alias))


def _key_value(table: str, column: str, alias: str) -> sql.Composable:
    value = sql.Identifier(alias, column)
    return sql.SQL("lower({})").format(value) if (table, column) in _CASE_FOLDED_KEYS else value


def _key_match(table: str, key: Sequence[str], left: str, right: str) -> sql.Composable:
    return sql.SQL(" and ").join(
        sql.SQL("{} = {}").format(_key_value(table, c, left), _key_value(table, c, right))
        for c in key)


async def _value(conn: Conn, query: sql.Composed,
                 params: Sequence[Any] | dict[str, Any] = ()) -> Any:
    cursor = await conn.execute(query, params)
    row = await cursor.fetchone()
    return row[0] if row else None


async def _count(conn: Conn, query: sql.Composed,
                 params: Sequence[Any] | dict[str, Any] = ()) -> int:
    return int(await _value(conn, query, params) or 0)


async def _rowcount(conn: Conn, query: sql.Composed,
                    params: Sequence[Any] | dict[str, Any] = ()) -> int:
    cursor = await conn.execute(query, params)
    return max(cursor.rowcount, 0)


async def set_comparable_session(conn: Conn) -> None:
    """Session settings under which row text is identical on any server (in a transaction)."""
    for statement in _SESSION:
        await conn.execute(statement)


async def _say(progress: Progress | None, message: str) -> None:
    if progress is not None:
        await progress(message)


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


# --- 2. staging --------------------------------------------------------------------------


async def _create_staging(target: Conn, plan: _Plan) -> None:
    await target.execute(sql.SQL(
        "create temp table {} (like {} including defaults including constraints, "
        "{} uuid, {} boolean) on commit drop").format(
        plan.staging, plan.real, sql.Identifier(_MERGED_INTO), sql.Identifier(_WAS_ON_TARGET)))


async def _staged_count(target: Conn, plan: _Plan) -> int:
    # Temporary tables are never auto-analysed; the checks and merges below join on them.
    await target.execute(sql.SQL("analyze {}").format(plan.staging))
    return await _count(target, sql.SQL("select count(*) from {}").format(plan.staging))


async def _stage(source: Conn, target: Conn, plan: _Plan, user_id: str) -> int:
    """COPY the user's rows of one table into a temporary table on the target."""
    await _create_staging(target, plan)
    columns = _names(plan.columns)
    # This filter runs on the source, where its owner can make `=` mean anything: it only
    # saves copying other rows; _validate checks every staged row again on the target.
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
    return await _staged_count(target, plan)


# --- 3. validation -----------------------------------------------------------------------


async def _validate(target: Conn, plan: _Plan, user_id: str) -> None:
    """Refuse the move unless every staged row of ``plan`` may be written to the target."""
    await _refuse_foreign_rows(target, plan, user_id)
    await _refuse_repeated_ids(target, plan)
    await _refuse_values_beyond_limits(target, plan)
    await _refuse_ids_of_others(target, plan, user_id)
    for column, parent in plan.references:
        await _refuse_foreign_references(target, plan, column, parent, user_id)
    if plan.summed:
        await _refuse_repeated_keys(target, plan)


async def _refuse_foreign_rows(target: Conn, plan: _Plan, user_id: str) -> None:
    foreign = await _count(target, sql.SQL(
        "select count(*) from {} s where s.user_id is distinct from %s").format(plan.staging),
        (user_id,))
    if foreign:
        raise MoveRefused(f"{foreign} rows of {plan.name} belong to another account; "
                          "nothing was moved", code="move_foreign_rows")


async def _refuse_repeated_ids(target: Conn, plan: _Plan) -> None:
    # The staging table has no primary key (an index would slow every COPY down).
    repeated = await _count(target, sql.SQL(
        "select count(*) - count(distinct id) from {}").format(plan.staging))
    if repeated:
        raise MoveRefused(f"{repeated} rows of {plan.name} repeat an id; nothing was moved",
                          code="move_invalid_content")


async def _refuse_values_beyond_limits(target: Conn, plan: _Plan) -> None:
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


async def _refuse_ids_of_others(target: Conn, plan: _Plan, user_id: str) -> None:
    taken = await _count(target, sql.SQL(
        "select count(*) from {} s join {} t on t.id = s.id "
        "where t.user_id is distinct from %s").format(plan.staging, plan.real), (user_id,))
    if taken:
        raise MoveRefused(f"{taken} rows of {plan.name} use ids that belong to other rows on "
                          "the target; nothing was moved", code="move_id_conflict")


async def _refuse_foreign_references(target: Conn, plan: _Plan, column: str, parent: str,
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
        staged=_staging_name(parent), ref=ref, staging=plan.staging,
        parent=sql.Identifier(CONTENT_SCHEMA, parent)), (user_id,))
    others, missing = await cursor.fetchone() or (0, 0)
    if others:
        raise MoveRefused(f"{others} rows of {plan.name} refer through {column} to rows of "
                          "another account on the target; nothing was moved",
                          code="move_id_conflict")
    if missing:
        raise MoveRefused(f"{missing} rows of {plan.name} refer through {column} to rows "
                          "that exist nowhere; nothing was moved", code="move_invalid_content")


async def _refuse_repeated_keys(target: Conn, plan: _Plan) -> None:
    # Summing is only idempotent if each staged row matches at most one target row and
    # vice versa; the source's own UNIQUE constraint guarantees it unless it was removed.
    for key in plan.keys:
        repeated = await _count(target, sql.SQL(
            "select count(*) from (select from {} group by {} having count(*) > 1) d").format(
            plan.staging, _names(key)))
        if repeated:
            raise MoveRefused(f"rows of {plan.name} repeat a unique key; nothing was moved",
                              code="move_invalid_content")


# --- 4. merging --------------------------------------------------------------------------


async def _merge(target: Conn, plan: _Plan, children: Sequence[_Plan], user_id: str) -> int:
    """Write one table's staged rows into the real table; returns how many were combined
    with a row already there (by id or by natural key)."""
    for key in plan.keys:
        if plan.summed:
            await _add_up_by_key(target, plan, key, user_id)
        else:
            await _keep_target_by_key(target, plan, key, user_id)
    await _repoint_children(target, plan, children)
    await target.execute(sql.SQL(
        "update {s} s set {flag} = exists (select from {t} t where t.id = s.id)").format(
        s=plan.staging, flag=sql.Identifier(_WAS_ON_TARGET), t=plan.real))
    if plan.has_updated_at:
        await _take_newer(target, plan, user_id)
    inserted = await _rowcount(target, sql.SQL(
        "insert into {t} ({cols}) select {s_cols} from {s} s "
        "where s.{merged} is null and not s.{flag}").format(
        t=plan.real, cols=_names(plan.columns), s_cols=_names(plan.columns, "s"),
        s=plan.staging, merged=sql.Identifier(_MERGED_INTO),
        flag=sql.Identifier(_WAS_ON_TARGET)))
    staged = await _count(target, sql.SQL("select count(*) from {}").format(plan.staging))
    return staged - inserted


async def _keep_target_by_key(target: Conn, plan: _Plan, key: Sequence[str],
                              user_id: str) -> None:
    """Staged rows whose natural key is taken are merged into the row that holds it: the
    target's row of this user, else the first staged row with that key (by id)."""
    await target.execute(sql.SQL(
        "with candidates as ("
        "  select s.id, {s_key},"
        "         (select t.id from {t} t where t.user_id = %(u)s and {match}"
        "          order by t.id limit 1) as target_id"
        "  from {s} s"
        "  where s.{merged} is null and not exists (select from {t} x where x.id = s.id)"
        "), chosen as ("
        "  select id, coalesce(target_id, first_value(id) over (partition by {key}"
        "                                                      order by id)) as keep_id"
        "  from candidates"
        ") "
        "update {s} s set {merged} = c.keep_id from chosen c "
        "where c.id = s.id and c.keep_id <> s.id").format(
        s_key=sql.SQL(", ").join(
            sql.SQL("{} as {}").format(_key_value(plan.name, c, "s"), sql.Identifier(c))
            for c in key),
        key=_names(key), t=plan.real, s=plan.staging,
        match=_key_match(plan.name, key, "t", "s"), merged=sql.Identifier(_MERGED_INTO)),
        {"u": user_id})


async def _add_up_by_key(target: Conn, plan: _Plan, key: Sequence[str], user_id: str) -> None:
    """The target's row with the staged row's natural key absorbs the staged counters and
    takes the staged row's id, so running the move again finds that id and adds nothing."""
    sums = sql.SQL(", ").join(
        sql.SQL("{0} = t.{0} + s.{0}").format(sql.Identifier(c)) for c in plan.summed)
    await target.execute(sql.SQL(
        "with absorbed as ("
        "  update {t} t set id = s.id, {sums} from {s} s"
        "  where t.user_id = %(u)s and {match} and t.id <> s.id and s.{merged} is null"
        "    and not exists (select from {t} x where x.id = s.id)"
        "  returning s.id"
        ") "
        "update {s} s set {merged} = s.id from absorbed a where a.id = s.id").format(
        t=plan.real, sums=sums, s=plan.staging, match=_key_match(plan.name, key, "t", "s"),
        merged=sql.Identifier(_MERGED_INTO)), {"u": user_id})


async def _repoint_children(target: Conn, plan: _Plan, children: Sequence[_Plan]) -> None:
    """Staged rows that refer to a merged-away row now refer to the row it merged into."""
    for child in children:
        for column, parent in child.references:
            if parent != plan.name:
                continue
            await target.execute(sql.SQL(
                "update {c} c set {col} = s.{merged} from {s} s "
                "where c.{col} = s.id and s.{merged} is not null and s.{merged} <> s.id").format(
                c=child.staging, col=sql.Identifier(column), s=plan.staging,
                merged=sql.Identifier(_MERGED_INTO)))


async def _take_newer(target: Conn, plan: _Plan, user_id: str) -> None:
    """Same id on both sides: the staged row replaces the target's only if it is newer."""
    assignments = sql.SQL(", ").join(
        sql.SQL("{0} = s.{0}").format(sql.Identifier(c)) for c in plan.columns if c != "id")
    await target.execute(sql.SQL(
        "update {t} t set {assignments} from {s} s "
        "where t.id = s.id and t.user_id = %s and s.{merged} is null "
        "  and s.updated_at > t.updated_at").format(
        t=plan.real, assignments=assignments, s=plan.staging,
        merged=sql.Identifier(_MERGED_INTO)), (user_id,))


async def _verify(target: Conn, plan: _Plan, user_id: str) -> None:
    """Every staged row is on the target: identical, or kept by the target by the rules, or
    merged into a row of this user."""
    target_may_win = (sql.SQL("t.updated_at >= s.updated_at") if plan.has_updated_at
                      else sql.SQL("true"))
    missing = await _count(target, sql.SQL(
        "select count(*) from {s} s where not case"
        " when s.{merged} is not null then exists ("
        "   select from {t} t where t.id = s.{merged} and t.user_id = %(u)s)"
        " else exists ("
        "   select from {t} t where t.id = s.id and t.user_id = %(u)s"
        "   and ({t_hash} = {s_hash} or (s.{flag} and {target_may_win})))"
        " end").format(
        s=plan.staging, t=plan.real, merged=sql.Identifier(_MERGED_INTO),
        flag=sql.Identifier(_WAS_ON_TARGET), t_hash=_row_hash(plan.columns, "t"),
        s_hash=_row_hash(plan.columns, "s"), target_may_win=target_may_win), {"u": user_id})
    if missing:
        raise MoveVerificationError(f"{missing} rows of {plan.name} did not arrive intact; "
                                    "nothing was moved")


async def _merge_all(target: Conn, plans: Sequence[_Plan], user_id: str) -> int:
    merged = 0
    for index, plan in enumerate(plans):
        try:
            merged += await _merge(target, plan, plans[index:], user_id)
        except (psycopg.errors.DataError, psycopg.errors.IntegrityError) as exc:
            # E.g. counters that overflow when added up; the server's detail may quote values.
            raise MoveRefused(f"rows of {plan.name} cannot be merged with the target's "
                              f"(SQLSTATE {exc.sqlstate}); nothing was moved",
                              code="move_invalid_content") from None
    for plan in plans:
        await _verify(target, plan, user_id)
    return merged


# --- 5. deleting -------------------------------------------------------------------------


async def _delete_in_transaction(conn: Conn, user_id: str) -> int:
    deleted = 0
    for table in reversed(content_tables()):
        deleted += await _rowcount(conn, sql.SQL("delete from {} where user_id = %s").format(
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
    plans = _plans(await _common_version(source, target))
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
                    await _say(progress, f"Copying {plan.name}")
                    report.rows[plan.name] = await _stage(source, target, plan, user_id)
                    await _validate(target, plan, user_id)
                await _say(progress, "Merging and verifying the copied rows")
                report.merged = await _merge_all(target, plans, user_id)
            if delete_source:
                await _say(progress, "Removing the moved rows from the source")
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
    plans = _plans(version)
    report = MoveReport()
    await set_comparable_session(target)
    for plan in plans:
        await _say(progress, f"Writing {plan.name}")
        await _create_staging(target, plan)
        query = sql.SQL("copy {} ({}) from stdin").format(plan.staging, _names(plan.columns))
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
        report.rows[plan.name] = await _staged_count(target, plan)
        await _validate(target, plan, user_id)
    await _say(progress, "Merging and verifying the rows")
    report.merged = await _merge_all(target, plans, user_id)
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
            if await _value(conn, sql.SQL("select exists (select from {})").format(table)):
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
            _row_hash(_stored_columns(table), "t"), sql.Identifier(CONTENT_SCHEMA, table.name)),
            (user_id,))
        return {row[0]: row[1] for row in await cursor.fetchall()}
