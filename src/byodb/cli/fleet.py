"""``byodb migrate-all`` and ``byodb migrations status``: fleet schema runs from a shell.

``migrate-all`` starts a run and follows it with a progress bar until it settles (or halts);
when no worker is alive on main it runs the work itself (a worker for the migrate queue in
this process), so it works on a fresh install as on a fleet with workers on many machines.
With ``--json`` the last stdout line is the summary; the exit code is 0 when every reachable
instance reached the target (1 otherwise, 2 for a bad option).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from byodb.cli.common import (
    OperatorSession,
    checked_settings,
    err,
    fail,
    main_database,
    operator_session,
    shown,
)
from byodb.content.version import supported_schema_versions
from byodb.errors import ByodbError
from byodb.instances import fleet_runs
from byodb.instances.fleet_jobs import MIGRATE_QUEUE, FleetScheduler
from byodb.instances.fleet_runs import RETRYING_CODES, UNREACHABLE_CODES, RunOptions
from byodb.jobs.queue import queue_worker, run_until_stopped
from byodb.settings import Settings

migrations_app = typer.Typer(help="Fleet schema runs.", no_args_is_help=True)

POLL_S = 0.25
MAX_FOLLOWED = 5
"""Tries of a locked or busy instance the command waits for before it reports."""
WORKER_ALIVE_S = 30
"""A worker whose heartbeat is younger than this serves the queue (procrastinate beats
every 10 s)."""


def migrate_all(
    to: Annotated[int | None, typer.Option("--to", help="Target version (default: the "
                                           "configured BYODB_SCHEMA_TARGET, else latest).")]
    = None,
    concurrency: Annotated[int, typer.Option(help="Instances migrated at once, in all.")] = 20,
    per_host: Annotated[int, typer.Option("--per-host", help="At once on any one host.")] = 4,
    canary: Annotated[int, typer.Option(help="Migrate this many first; the rest only if "
                                        "they pass.")] = 0,
    max_failure_ratio: Annotated[float, typer.Option(
        "--max-failure-ratio", help="Halt when a wave's failures pass this share.")] = 0.1,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Apply each step and roll it "
                                          "back: report what would fail, change nothing.")]
    = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON "
                                          "(last line).")] = False,
) -> None:
    """Bring every user database to the target schema version (canary first if asked)."""
    settings = checked_settings()
    with main_database(settings) as url:
        try:
            summary = asyncio.run(_migrate_all(settings, url, to, concurrency, per_host,
                                               canary, max_failure_ratio, dry_run, as_json))
        except ByodbError as exc:
            fail(exc.message)
    reached = summary.pop("_reached")
    if as_json:
        typer.echo(json.dumps(summary))
    raise typer.Exit(0 if reached else 1)


async def _migrate_all(settings: Settings, url: str, to: int | None, concurrency: int,
                       per_host: int, canary: int, max_failure_ratio: float, dry_run: bool,
                       as_json: bool) -> dict[str, Any]:
    async with operator_session(settings, url) as session:
        runtime = session.runtime
        options = RunOptions(to_version=to if to is not None
                             else runtime.lifecycle.limits.schema_target,
                             canary=canary, concurrency=concurrency, per_host=per_host,
                             max_failure_ratio=max_failure_ratio, dry_run=dry_run,
                             started_by="cli")
        options.check(supported_schema_versions())
        started = time.monotonic()
        run_id = await FleetScheduler(session.job_app, runtime.main).start(options)
        assert run_id is not None  # only automatic runs are deduplicated
        async with _worker_unless_one_is_alive(session, concurrency):
            run = await _follow(runtime.main, run_id, quiet=as_json)
        return _summary(run, time.monotonic() - started)


@contextlib.asynccontextmanager
async def _worker_unless_one_is_alive(session: OperatorSession, concurrency: int
                                      ) -> Any:
    if await _workers_alive(session.runtime.main):
        yield
        return
    err.print("no worker is running: migrating from this process", soft_wrap=True)
    worker = queue_worker(session.job_app, MIGRATE_QUEUE, concurrency=max(1, concurrency),
                          name=f"migrate-all-{uuid.uuid4().hex[:6]}",
                          context={"lifecycle": session.runtime.lifecycle}, polling_s=0.5)
    task = asyncio.create_task(run_until_stopped([worker]))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


async def _workers_alive(main: AsyncEngine) -> bool:
    async with main.connect() as conn:
        alive = (await conn.execute(text(
            "select count(*) from procrastinate_workers where last_heartbeat > "
            "now() - make_interval(secs => :s)"), {"s": WORKER_ALIVE_S})).scalar_one()
    return bool(alive)


async def _follow(main: AsyncEngine, run_id: uuid.UUID, *, quiet: bool) -> dict[str, Any]:
    """Poll the run until it is no longer running, with a progress bar on stderr."""
    progress = Progress(TextColumn("[bold]schema v{task.fields[to]}[/]"), BarColumn(),
                        MofNCompleteColumn(), TextColumn("{task.fields[detail]}"),
                        TimeElapsedColumn(), console=err, disable=quiet, transient=False)
    with progress:
        bar = None
        while True:
            run = await fleet_runs.describe_run(main, run_id)
            detail = (f"failed {run['failed']} · pending {run['pending']} · "
                      f"wave {run['wave']}")
            if bar is None:
                bar = progress.add_task("run", total=max(run["total"], 1),
                                        to=run["to_version"], detail=detail)
            progress.update(bar, completed=run["completed"] + run["failed"], detail=detail)
            if run["status"] != "running" and not await _retrying_soon(main, run_id):
                break
            await asyncio.sleep(POLL_S)
    run = await fleet_runs.describe_run(main, run_id, with_instances=True, limit=1_000_000)
    if not quiet:
        _print_outcome(run)
    return run


async def _retrying_soon(main: AsyncEngine, run_id: uuid.UUID) -> bool:
    """Whether instances of the run wait only for a lock or a busy database (their next
    try is seconds away), a few tries at most: worth waiting for before the summary."""
    run = await fleet_runs.describe_run(main, run_id, with_instances=True, limit=1_000_000)
    return any(item["status"] in ("pending", "running") and item["attempts"] < MAX_FOLLOWED
               and (item["status"] == "running" or item["error_code"] in RETRYING_CODES)
               for item in run["instances"])


def _print_outcome(run: dict[str, Any]) -> None:
    err.print(f"run {run['id']}: {run['status']}"
              + (f" ({run['halted_reason']})" if run["halted_reason"] else ""),
              soft_wrap=True)
    for item in run["instances"]:
        if item["status"] == "failed":
            err.print(f"  failed  {shown(item['user_id'])} at step {item['step']}: "
                      f"{item['error_code']}: {item['error']}", soft_wrap=True, markup=False)
        elif item["status"] == "pending" and item["error_code"]:
            err.print(f"  pending {shown(item['user_id'])}: {item['error_code']}",
                      soft_wrap=True, markup=False)


def _summary(run: dict[str, Any], seconds: float) -> dict[str, Any]:
    unreachable = sum(1 for item in run["instances"] if item["status"] == "pending"
                      and item["error_code"] in UNREACHABLE_CODES)
    reached = (run["status"] != "halted" and run["failed"] == 0
               and run["pending"] == unreachable and run["running"] == 0)
    return {"run_id": run["id"], "to_version": run["to_version"], "total": run["total"],
            "completed": run["completed"], "failed": run["failed"],
            "pending": run["pending"], "already_current": run["already_current"],
            "seconds": round(seconds, 3), "_reached": reached}


@migrations_app.command("status")
def status(as_json: Annotated[bool, typer.Option("--json", help="Print as JSON (last "
                                                 "line).")] = False) -> None:
    """The latest runs and the instances' records by state."""
    settings = checked_settings()
    with main_database(settings) as url:
        report = asyncio.run(_status(settings, url))
    if as_json:
        typer.echo(json.dumps(report))
        return
    table = Table("run", "target", "status", "by", "total", "done", "failed", "pending",
                  "current", "started")
    for run in report["runs"]:
        table.add_row(run["id"][:8], str(run["to_version"]),
                      run["status"] + (" (dry run)" if run["dry_run"] else ""),
                      str(run["started_by"]), str(run["total"]), str(run["completed"]),
                      str(run["failed"]), str(run["pending"]), str(run["already_current"]),
                      run["created_at"][:19])
    err.print(table)
    by_state = ", ".join(f"{k} {v}" for k, v in sorted(report["instances_by_state"].items()))
    typer.echo(f"target version {report['target_version']}; records: {by_state or 'none'}")


async def _status(settings: Settings, url: str) -> dict[str, Any]:
    async with operator_session(settings, url) as session:
        main = session.runtime.main
        behind, current = await fleet_runs.count_behind(
            main, session.runtime.lifecycle.limits.schema_target)
        return {"target_version": session.runtime.lifecycle.limits.schema_target,
                "behind": behind, "current": current,
                "runs": await fleet_runs.latest_runs(main, limit=10),
                "instances_by_state": await fleet_runs.instances_by_state(main)}
