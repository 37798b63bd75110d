"""Step 4 of a data move (:mod:`byodb.instances.lifecycle.moves`): merge the staged rows into
the real tables by the rules of a move, then verify that every staged row arrived."""

from __future__ import annotations

from collections.abc import Sequence

import psycopg
from psycopg import sql

from byodb.instances.lifecycle.move_plan import (
    MERGED_INTO,
    WAS_ON_TARGET,
    Conn,
    MoveRefused,
    MoveVerificationError,
    Plan,
    count_of,
    key_match,
    key_value,
    names,
    row_hash,
    rowcount_of,
)

# --- 4. merging --------------------------------------------------------------------------


async def _merge(target: Conn, plan: Plan, children: Sequence[Plan], user_id: str) -> int:
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
        s=plan.staging, flag=sql.Identifier(WAS_ON_TARGET), t=plan.real))
    if plan.has_updated_at:
        await _take_newer(target, plan, user_id)
    inserted = await rowcount_of(target, sql.SQL(
        "insert into {t} ({cols}) select {s_cols} from {s} s "
        "where s.{merged} is null and not s.{flag}").format(
        t=plan.real, cols=names(plan.columns), s_cols=names(plan.columns, "s"),
        s=plan.staging, merged=sql.Identifier(MERGED_INTO),
        flag=sql.Identifier(WAS_ON_TARGET)))
    staged = await count_of(target, sql.SQL("select count(*) from {}").format(plan.staging))
    return staged - inserted


async def _keep_target_by_key(target: Conn, plan: Plan, key: Sequence[str],
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
            sql.SQL("{} as {}").format(key_value(plan.name, c, "s"), sql.Identifier(c))
            for c in key),
        key=names(key), t=plan.real, s=plan.staging,
        match=key_match(plan.name, key, "t", "s"), merged=sql.Identifier(MERGED_INTO)),
        {"u": user_id})


async def _add_up_by_key(target: Conn, plan: Plan, key: Sequence[str], user_id: str) -> None:
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
        t=plan.real, sums=sums, s=plan.staging, match=key_match(plan.name, key, "t", "s"),
        merged=sql.Identifier(MERGED_INTO)), {"u": user_id})


async def _repoint_children(target: Conn, plan: Plan, children: Sequence[Plan]) -> None:
    """Staged rows that refer to a merged-away row now refer to the row it merged into."""
    for child in children:
        for column, parent in child.references:
            if parent != plan.name:
                continue
            await target.execute(sql.SQL(
                "update {c} c set {col} = s.{merged} from {s} s "
                "where c.{col} = s.id and s.{merged} is not null and s.{merged} <> s.id").format(
                c=child.staging, col=sql.Identifier(column), s=plan.staging,
                merged=sql.Identifier(MERGED_INTO)))


async def _take_newer(target: Conn, plan: Plan, user_id: str) -> None:
    """Same id on both sides: the staged row replaces the target's only if it is newer."""
    assignments = sql.SQL(", ").join(
        sql.SQL("{0} = s.{0}").format(sql.Identifier(c)) for c in plan.columns if c != "id")
    await target.execute(sql.SQL(
        "update {t} t set {assignments} from {s} s "
        "where t.id = s.id and t.user_id = %s and s.{merged} is null "
        "  and s.updated_at > t.updated_at").format(
        t=plan.real, assignments=assignments, s=plan.staging,
        merged=sql.Identifier(MERGED_INTO)), (user_id,))


async def _verify(target: Conn, plan: Plan, user_id: str) -> None:
    """Every staged row is on the target: identical, or kept by the target by the rules, or
    merged into a row of this user."""
    target_may_win = (sql.SQL("t.updated_at >= s.updated_at") if plan.has_updated_at
                      else sql.SQL("true"))
    missing = await count_of(target, sql.SQL(
        "select count(*) from {s} s where not case"
        " when s.{merged} is not null then exists ("
        "   select from {t} t where t.id = s.{merged} and t.user_id = %(u)s)"
        " else exists ("
        "   select from {t} t where t.id = s.id and t.user_id = %(u)s"
        "   and ({t_hash} = {s_hash} or (s.{flag} and {target_may_win})))"
        " end").format(
        s=plan.staging, t=plan.real, merged=sql.Identifier(MERGED_INTO),
        flag=sql.Identifier(WAS_ON_TARGET), t_hash=row_hash(plan.columns, "t"),
        s_hash=row_hash(plan.columns, "s"), target_may_win=target_may_win), {"u": user_id})
    if missing:
        raise MoveVerificationError(f"{missing} rows of {plan.name} did not arrive intact; "
                                    "nothing was moved")


async def merge_all(target: Conn, plans: Sequence[Plan], user_id: str) -> int:
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

