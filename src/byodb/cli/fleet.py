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
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from byodb.cli.common import JsonOption, checked_settings, err, fail, main_database, shown
from byodb.cli.tables import Column, out, print_table
from byodb.content.version import supported_schema_versions
from byodb.errors import ByodbError
from byodb.instances.fleet import runs as fleet_runs
from byodb.instances.fleet.jobs import MIGRATE_QUEUE, FleetScheduler
from byodb.instances.fleet.options import RunOptions
from byodb.instances.fleet.runs import RETRYING_CODES, UNREACHABLE_CODES
from byodb.jobs.queue import queue_worker, run_until_stopped
from byodb.runtime import Process, Role, open_process
from byodb.settings import Settings

commands = typer.Typer()
migrations_app = typer.Typer(help="Fleet schema runs.", no_args_is_help=True)
commands.add_typer(migrations_app, name="migrations")

POLL_S = 0.25
MAX_FOLLOWED = 5
"""Tries of a locked or busy instance the command waits for before it reports."""
WORKER_ALIVE_S = 30
"""A worker whose heartbeat is younger than this serves the queue (procrastinate beats
every 10 s)."""


@commands.command("migrate-all")
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
    as_json: JsonOption = False,
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
    else:
        typer.echo(summary_line(summary))
    raise typer.Exit(0 if reached else 1)


def summary_line(summary: dict[str, Any]) -> str:
    """The run's one closing line: what was done, skipped, failed and how long it took; a
    rehearsal says so first and in the verbs."""
    dry = summary["dry_run"]
    done = (f"{summary['completed']} would migrate" if dry else
            f"migrated {summary['completed']}") + f" to v{summary['to_version']}"
    halted = f"; halted: {summary['halted_reason']}" if summary["halted_reason"] else ""
    line = (f"{done}, {summary['already_current']} already current (skipped), "
            f"{summary['failed']} {'would fail' if dry else 'failed'}, "
            f"{summary['pending']} pending, in {summary['seconds']:.1f} s "
            f"(run {str(summary['run_id'])[:8]}){halted}")
    return f"{DRY_RUN}: nothing was changed; {line}" if dry else line


DRY_RUN = "dry run"
"""What starts every line a rehearsal prints."""


async def _migrate_all(settings: Settings, url: str, to: int | None, concurrency: int,
                       per_host: int, canary: int, max_failure_ratio: float, dry_run: bool,
                       as_json: bool) -> dict[str, Any]:
    async with open_process(settings, Role.operator, url) as process:
        core = process.core
        options = RunOptions(to_version=to if to is not None
                             else process.core.migrator.target,
                             canary=canary, concurrency=concurrency, per_host=per_host,
                             max_failure_ratio=max_failure_ratio, dry_run=dry_run,
                             started_by="cli")
        options.check(supported_schema_versions())
        started = time.monotonic()
        run_id = await FleetScheduler(process.job_app, core.main).start(options)
        assert run_id is not None  # only automatic runs are deduplicated
        async with _worker_unless_one_is_alive(process, concurrency, dry_run):
            run = await _follow(core.main, run_id, quiet=as_json, dry_run=dry_run)
        return _summary(run, time.monotonic() - started)


@contextlib.asynccontextmanager
async def _worker_unless_one_is_alive(process: Process, concurrency: int,
                                      dry_run: bool) -> Any:
    if await _workers_alive(process.core.main):
        yield
        return
    err.print(f"{DRY_RUN}: " * dry_run + "no worker is running: "
              + ("rehearsing" if dry_run else "migrating") + " from this process",
              soft_wrap=True)
    worker = queue_worker(process.job_app, MIGRATE_QUEUE, concurrency=max(1, concurrency),
                          name=f"migrate-all-{uuid.uuid4().hex[:6]}",
                          context={"lifecycle": process.core.lifecycle,
                                   "fleet": process.core.migrator}, polling_s=0.5)
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


async def _follow(main: AsyncEngine, run_id: uuid.UUID, *, quiet: bool, dry_run: bool
                  ) -> dict[str, Any]:
    """Poll the run until it is no longer running, with a progress bar on stderr."""
    label = f"{DRY_RUN}: " * dry_run + "schema v{task.fields[to]}"
    progress = Progress(TextColumn(f"[bold]{label}[/]"), BarColumn(),
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
        _print_outcome(run, dry_run=dry_run)
    return run


async def _retrying_soon(main: AsyncEngine, run_id: uuid.UUID) -> bool:
    """Whether instances of the run wait only for a lock or a busy database (their next
    try is seconds away), a few tries at most: worth waiting for before the summary."""
    run = await fleet_runs.describe_run(main, run_id, with_instances=True, limit=1_000_000)
    return any(item["status"] in ("pending", "running") and item["attempts"] < MAX_FOLLOWED
               and (item["status"] == "running" or item["error_code"] in RETRYING_CODES)
               for item in run["instances"])


def _print_outcome(run: dict[str, Any], *, dry_run: bool) -> None:
    """Each instance that failed or waits, one line on stdout (results, like the summary)."""
    prefix = f"{DRY_RUN}: " * dry_run
    for item in run["instances"]:
        if item["status"] == "failed":
            verb = "would fail" if dry_run else "failed"
            out.print(f"{prefix}{verb}  {shown(item['user_id'])} at step {item['step']}: "
                      f"{item['error_code']}: {item['error']}",
                      soft_wrap=True, markup=False, highlight=False)
        elif item["status"] == "pending" and item["error_code"]:
            out.print(f"{prefix}pending {shown(item['user_id'])}: {item['error_code']}",
                      soft_wrap=True, markup=False, highlight=False)


def _summary(run: dict[str, Any], seconds: float) -> dict[str, Any]:
    unreachable = sum(1 for item in run["instances"] if item["status"] == "pending"
                      and item["error_code"] in UNREACHABLE_CODES)
    reached = (run["status"] != "halted" and run["failed"] == 0
               and run["pending"] == unreachable and run["running"] == 0)
    return {"run_id": run["id"], "to_version": run["to_version"], "total": run["total"],
            "completed": run["completed"], "failed": run["failed"],
            "pending": run["pending"], "already_current": run["already_current"],
            "dry_run": bool(run["dry_run"]), "status": run["status"],
            "halted_reason": run["halted_reason"],
            "seconds": round(seconds, 3), "_reached": reached}


RUN_COLUMNS = (Column("run", key=True), Column("to"), Column("status"), Column("done"),
               Column("failed"), Column("pending"), Column("current"), Column("started"),
               Column("by", optional=True), Column("total", optional=True))
"""``migrations status``: the run id (its first 8 characters, enough to tell runs apart)
is the key; who started a run and its total make room first."""


@migrations_app.command("status")
def status(as_json: JsonOption = False) -> None:
    """The latest runs and the instances' records by state."""
    settings = checked_settings()
    with main_database(settings) as url:
        report = asyncio.run(_status(settings, url))
    if as_json:
        typer.echo(json.dumps(report))
        return
    print_table(RUN_COLUMNS, [
        [run["id"][:8], f"v{run['to_version']}",
         run["status"] + (" (dry run)" if run["dry_run"] else ""), str(run["completed"]),
         str(run["failed"]), str(run["pending"]), str(run["already_current"]),
         run["created_at"][:16].replace("T", " "), str(run["started_by"]), str(run["total"])]
        for run in report["runs"]])
    by_state = ", ".join(f"{k} {v}" for k, v in sorted(report["instances_by_state"].items()))
    typer.echo(f"target version {report['target_version']}; records: {by_state or 'none'}")


async def _status(settings: Settings, url: str) -> dict[str, Any]:
    async with open_process(settings, Role.operator, url) as process:
        main, target = process.core.main, process.core.migrator.target
        behind, current = await fleet_runs.count_behind(main, target)
        return {"target_version": target,
                "behind": behind, "current": current,
                "runs": await fleet_runs.latest_runs(main, limit=10),
                "instances_by_state": await fleet_runs.instances_by_state(main)}
