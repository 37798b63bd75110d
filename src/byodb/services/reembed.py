"""Re-embedding: stored vectors of another model get one of the current model.

Vectors of different models live in different spaces, so semantic search compares only rows
whose ``embedding_model`` is the current model's name (``byodb.services.search``). When the
model changes (an operator configures an endpoint, or an upgrade changes the offline
default), the rows of the old model are found again by a background job per user, which
embeds their text with the current model and stores the new vector and name. Until then
those rows are simply not found by meaning; they are never compared with a vector of
another model.

The decision order of one user's run (:meth:`Reembedder.run`):

1. The database holding the user's content must record models (schema version 2 or later);
   a version-1 database has no ``embedding_model`` column, so the run records ``waiting``
   and stops. Its migration changes the user's *place* (below), and the next tick runs
   again.
2. Messages, memories and file chunks, one table after the other: a batch of
   :attr:`ReembedLimits.batch_rows` rows that have a vector of another model (or of an
   unknown one: NULL), in id order after the last one handled, is read, embedded (no
   connection held meanwhile), and written back in one transaction, each row only if its
   text is still the one embedded and its vector still of another model — a user's edit in
   between already stored a current vector and wins.
3. After each batch, the progress (rows done, rows still to do) is recorded on main.
4. A run stops after :attr:`ReembedLimits.budget_s` seconds (``running``; the next tick
   queues the rest) or when no table has rows left (``done``). A failure records
   ``failed`` with its code only; the next tick tries again.

Progress is one row per user in main's ``jobs`` table (kind ``reembed``), whose ``detail``
names the model and the user's *place*: where their content is (main, or their database's
instance id and schema version). A ``done`` row for the current model and place means there
is nothing to do; a new model, a move or a migration makes a new place, so the user is due
again. Everything is resumable: the rows still to do are exactly those of another model.

Users' idle databases are left to sleep: the ``done`` row is how the tick knows, on main
alone, that a user has nothing to do (no connection to their database to find out), and a
due user whose database byodb has not used lately waits until it is awake anyway
(:data:`AWAKE_S`). A run's connections are the routed pool's, closed by its idle timeout
(``BYODB_USER_IDLE_TIMEOUT``) like any request's.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Table, and_, bindparam, func, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from byodb.assistant.embeddings import EmbeddingModel, embed_texts, is_zero
from byodb.content import has_column
from byodb.content.tables import file_chunks, memories, messages
from byodb.errors import ByodbError
from byodb.ids import new_id
from byodb.maindb.tables import jobs
from byodb.routing import Router

log = logging.getLogger(__name__)

JOB_KIND = "reembed"
TABLES: tuple[Table, ...] = (memories, messages, file_chunks)
COLUMN = "embedding_model"

PLACE_SQL = (
    "coalesce(c.content_placement, 'main') || case when c.content_placement = 'user' "
    "then '/' || coalesce(c.instance_id::text, '?') || '/v' || coalesce(c.schema_version, 0) "
    "else '' end")
"""Where a user's content is, as text (``c`` is their ``user_database_config`` row, if
any): ``main``, or ``user/<instance id>/v<schema version>``. Shared by the run (which
records it) and the tick (which compares it), so both read it the same way."""


@dataclass(frozen=True)
class ReembedLimits:
    batch_rows: int = 64
    budget_s: float = 30.0
    """One run's time (checked after each batch); the rest waits for the next tick, so one
    user's large history cannot hold a worker (and the user's other jobs, which share its
    lock) for long."""


@dataclass(frozen=True)
class ReembedProgress:
    status: str  # done | running | waiting | failed
    model: str
    done: int
    remaining: int


class Reembedder:
    """Runs one user's re-embedding (see the module docstring) with the process's model."""

    def __init__(self, router: Router, embedder: EmbeddingModel,
                 limits: ReembedLimits | None = None):
        self.router = router
        self.main: AsyncEngine = router.main
        self.embedder = embedder
        self.limits = limits or ReembedLimits()

    async def run(self, user_id: str) -> ReembedProgress:
        model = self.embedder.name
        place = await user_place(self.main, user_id)
        if not has_column(await self.router.content_version(user_id), memories.name, COLUMN):
            progress = ReembedProgress("waiting", model, 0, 0)
            await record(self.main, user_id, progress, place)
            return progress
        try:
            progress = await self._run(user_id, model, place)
        except ByodbError as exc:
            log.warning("re-embedding a user's rows failed (%s)", exc.code)
            progress = ReembedProgress("failed", model, 0, -1)
            await record(self.main, user_id, progress, place, error_code=exc.code)
            return progress
        await record(self.main, user_id, progress, place)
        return progress

    async def _run(self, user_id: str, model: str, place: str) -> ReembedProgress:
        started = time.monotonic()
        remaining = await self.stale_rows(user_id)
        if remaining == 0:  # the common case of a new place: one look, no batch, no recount
            return ReembedProgress("done", model, 0, 0)
        done = 0
        await record(self.main, user_id, ReembedProgress("running", model, 0, remaining),
                     place)
        for table in TABLES:
            after: Any = None
            while True:
                handled, after = await self._batch(user_id, table, model, after)
                if not handled:
                    break
                done += handled
                remaining = max(0, remaining - handled)
                await record(self.main, user_id,
                             ReembedProgress("running", model, done, remaining), place)
                if time.monotonic() - started >= self.limits.budget_s:
                    return ReembedProgress("running", model, done, remaining)
        remaining = await self.stale_rows(user_id)
        return ReembedProgress("done" if remaining == 0 else "running", model, done, remaining)

    async def stale_rows(self, user_id: str) -> int:
        """How many of the user's rows have a vector of another (or an unknown) model."""
        total = 0
        for table in TABLES:
            async with self.router.connect(user_id, table) as conn:
                total += int((await conn.execute(
                    select(func.count()).select_from(table)
                    .where(_stale(table, user_id, self.embedder.name)))).scalar_one())
        return total

    async def _batch(self, user_id: str, table: Table, model: str,
                     after: Any) -> tuple[int, Any]:
        """Re-embed the next batch after id ``after``; (rows read, the last id read)."""
        query = (select(table.c.id, table.c.content)
                 .where(_stale(table, user_id, model))
                 .order_by(table.c.id).limit(self.limits.batch_rows))
        if after is not None:
            query = query.where(table.c.id > after)
        async with self.router.connect(user_id, table) as conn:
            rows = (await conn.execute(query)).all()
        if not rows:
            return 0, after
        vectors = await embed_texts(self.embedder, [r.content for r in rows])
        statement = (update(table)
                     .where(table.c.id == bindparam("row_id"),
                            table.c.user_id == user_id,
                            table.c.content == bindparam("old_content"),
                            _of_another_model(table, model))
                     .values(embedding=bindparam("new_embedding"),
                             embedding_model=bindparam("new_model")))
        params = [{"row_id": r.id, "old_content": r.content,
                   "new_embedding": None if is_zero(v) else v,
                   "new_model": None if is_zero(v) else model}
                  for r, v in zip(rows, vectors, strict=True)]
        async with self.router.connect(user_id, table) as conn:
            await conn.execute(statement, params)
        return len(rows), rows[-1].id


def _of_another_model(table: Table, model: str) -> Any:
    return or_(table.c.embedding_model.is_(None), table.c.embedding_model != model)


def _stale(table: Table, user_id: str, model: str) -> Any:
    return and_(table.c.user_id == user_id, table.c.embedding.is_not(None),
                _of_another_model(table, model))


async def user_place(main: AsyncEngine, user_id: str) -> str:
    """:data:`PLACE_SQL` of one user."""
    async with main.connect() as conn:
        row = (await conn.execute(text(
            f"select {PLACE_SQL} from (select :u as user_id) u "
            "left join user_database_config c on c.user_id = u.user_id"),
            {"u": user_id})).scalar_one()
    return str(row)


async def record(main: AsyncEngine, user_id: str, progress: ReembedProgress, place: str, *,
                 error_code: str | None = None) -> None:
    """The user's one ``jobs`` row of kind ``reembed``, created or replaced."""
    detail = json.dumps({"model": progress.model, "place": place, "done": progress.done,
                         "remaining": progress.remaining, "error_code": error_code})
    now = datetime.now(UTC)
    async with main.begin() as conn:
        changed = (await conn.execute(
            update(jobs).where(jobs.c.user_id == user_id, jobs.c.kind == JOB_KIND)
            .values(status=progress.status, detail=detail, updated_at=now)
            .returning(jobs.c.id))).first()
        if changed is None:
            await conn.execute(jobs.insert().values(
                id=new_id(), kind=JOB_KIND, user_id=user_id, status=progress.status,
                detail=detail))


AWAKE_S = 180.0
"""A user's database that byodb used this recently (a routed request, a health check, a
connection test or a schema deploy, as main records them) is taken to be awake; the
re-embedding tick leaves the others alone (see :data:`DUE_USERS_SQL`). Passive health
writes a request's success to main up to about a minute late, and the tick runs every
minute: three minutes covers both, and stays under the five idle minutes after which the
common scale-to-zero providers suspend a database."""

LAST_AWAKE_SQL = ("greatest(c.last_health_check_at, c.last_connection_test, "
                  "c.last_schema_deploy)")
"""When byodb last used the user's database, as main knows it (NULLs are ignored)."""

_DUE_SQL = f"""
select u.id from users u
left join user_database_config c on c.user_id = u.id
left join jobs j on j.user_id = u.id and j.kind = '{JOB_KIND}'
where (c.user_id is null or coalesce(c.content_placement, 'main') = 'main'
       or (c.connection_status = 'connected'
           and {LAST_AWAKE_SQL} >= now() - make_interval(secs => :awake_s)))
  and not coalesce(j.status in ('done', 'waiting')
                    and (j.detail::jsonb ->> 'model') = :model
                    and (j.detail::jsonb ->> 'place') = {PLACE_SQL}, false)
"""
"""Users whose rows may hold vectors of another model: no ``done`` (or ``waiting``, for a
version-1 database) record for the current model at their current place. Users whose
database is not usable now are left for later, and so are those whose database byodb has
not used for :data:`AWAKE_S`: the re-embedding never wakes a database that may be asleep
(a scale-to-zero provider bills it awake). Its turn comes when it is awake anyway — the
user's next request, or the health sweep's check, which visits an idle user once per idle
interval (``BYODB_HEALTH_IDLE_INTERVAL``, an hour by default). A new place is always
awake: a connection, a move or a migration just used the database."""

DUE_USERS_SQL = _DUE_SQL + "order by j.updated_at nulls first, u.id\nlimit :limit\n"
"""Up to ``:limit`` due users, the least recently handled first, so a few failing users
cannot starve the rest."""

USER_DUE_SQL = _DUE_SQL + "and u.id = :user\n"
"""The one user ``:user`` if still due: a queued run asks again when it starts, since by
then the database may have gone to sleep, or another run may have done the work."""


async def due_users(main: AsyncEngine, model: str, limit: int) -> list[str]:
    async with main.connect() as conn:
        rows = (await conn.execute(text(DUE_USERS_SQL),
                                   {"model": model, "limit": limit,
                                    "awake_s": AWAKE_S})).all()
    return [str(r[0]) for r in rows]


async def is_due(main: AsyncEngine, model: str, user_id: str) -> bool:
    """Whether the user is still due (see :data:`USER_DUE_SQL`)."""
    async with main.connect() as conn:
        row = (await conn.execute(text(USER_DUE_SQL), {"model": model, "user": user_id,
                                                       "awake_s": AWAKE_S})).first()
    return row is not None


async def progress_summary(main: AsyncEngine) -> dict[str, Any]:
    """For the operator (``byodb status``, the admin dashboard): users by status and model,
    and the rows done and still to do."""
    async with main.connect() as conn:
        rows = (await conn.execute(text(
            "select status, detail::jsonb ->> 'model' as model, count(*) as users, "
            "coalesce(sum(greatest((detail::jsonb ->> 'done')::bigint, 0)), 0) as done, "
            "coalesce(sum(greatest((detail::jsonb ->> 'remaining')::bigint, 0)), 0) "
            "as remaining from jobs where kind = :kind group by 1, 2 order by 2, 1"),
            {"kind": JOB_KIND})).all()
    return {"by_status": [{"status": r.status, "model": r.model, "users": int(r.users),
                           "rows_done": int(r.done), "rows_remaining": int(r.remaining)}
                          for r in rows]}
