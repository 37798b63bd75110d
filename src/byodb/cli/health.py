"""The operator's view of the fleet's health: ``byodb health-check``, ``byodb status`` and
``byodb instances list|show|check`` — the admin dashboard's data in a terminal, redacted
(hosts and redacted URLs only; never a password).

``--json`` makes the last stdout line a JSON document. Exit codes: 0 when what was asked
is healthy or shown, 1 when a check or sweep found failures (or the user has no instance),
2 for a bad option.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine
from typing import Annotated, Any, TypeVar

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from byodb.assistant.embeddings import embedding_model_from_settings
from byodb.cli.common import JsonOption, checked_settings, err, fail, main_database, shown
from byodb.cli.tables import Column, print_table
from byodb.content import latest_schema_version
from byodb.errors import ByodbError
from byodb.instances.health import report as health_report
from byodb.instances.health.sweep import SweepSummary, SweepTrigger
from byodb.maindb.tables import CONNECTION_STATUSES
from byodb.runtime import Role, health_sweeper, open_process
from byodb.services.reembed import progress_summary
from byodb.settings import Settings
from byodb.web.readiness import ReadinessProbe

T = TypeVar("T")
commands = typer.Typer()
instances_app = typer.Typer(help="User databases (instances), redacted.", no_args_is_help=True)
commands.add_typer(instances_app, name="instances")

WORKER_ALIVE_S = 30
"""A worker whose heartbeat is younger than this is alive (procrastinate beats every 10 s)."""

def _print_json(data: Any) -> None:
    typer.echo(json.dumps(data, default=str))


def _run(work: Coroutine[Any, Any, T]) -> T:
    """Run a command's async part; a configuration or product error is one error line."""
    try:
        return asyncio.run(work)
    except ByodbError as exc:
        fail(exc.message)


# -- health-check ----------------------------------------------------------------------------
@commands.command("health-check")
def health_check(as_json: JsonOption = False) -> None:
    """Check every connected or failing user database now (one sweep), with a summary."""
    settings = checked_settings()
    with main_database(settings) as url:
        summary = _run(_health_check(settings, url, quiet=as_json))
    if as_json:
        _print_json(summary.as_json())
    else:
        typer.echo(f"health check: checked {summary.checked} ({summary.healthy} healthy, "
                   f"{summary.recovered} recovered), {summary.resting} skipped (resting), "
                   f"{summary.failed} failed ({summary.went_down} newly down), in "
                   f"{summary.seconds:.1f} s")
    raise typer.Exit(1 if summary.failed else 0)


async def _health_check(settings: Settings, url: str, *, quiet: bool) -> SweepSummary:
    async with open_process(settings, Role.operator, url) as process:
        sweeper = health_sweeper(process.core)
        progress = Progress(TextColumn("[bold]health[/]"), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), console=err, disable=quiet, transient=False)
        with progress:
            bar = progress.add_task("sweep", total=None)

            def advance(done: int, total: int) -> None:
                progress.update(bar, completed=done, total=max(total, 1))

            summary = await sweeper.sweep_when_free(
                SweepTrigger.operator, progress=advance,
                on_wait=lambda: err.print("another sweep is running; waiting for it to end",
                                          soft_wrap=True))
    if summary is None:
        fail("another sweep is still running; try again later", 1)
    return summary


# -- status ----------------------------------------------------------------------------------
@commands.command()
def status(as_json: JsonOption = False) -> None:
    """Main database, workers, job queues, instances by status and version, last sweep."""
    settings = checked_settings()
    with main_database(settings) as url:
        report = _run(_status(settings, url))
    if as_json:
        _print_json(report)
        return
    main = report["main"]
    typer.echo(f"main database: {'ready' if main['ready'] else 'NOT READY'}"
               + (f" ({main['reason']})" if main["reason"] else " (reachable, at head)"))
    workers = report["workers"]
    typer.echo(f"workers seen (last {WORKER_ALIVE_S} s): {len(workers)}"
               + (" (procrastinate heartbeats; one per queue and process)" if workers else ""))
    queues = ", ".join(f"{q} {n}" for q, n in sorted(report["queue_depth"].items()))
    typer.echo(f"queue depth (waiting or running): {queues or 'empty'}")
    statuses = ", ".join(f"{k} {v}" for k, v in sorted(report["instances"]["by_status"]
                                                         .items()))
    versions = ", ".join(f"v{k} {v}" for k, v in sorted(
        report["instances"]["by_schema_version"].items()))
    typer.echo(f"instances: {statuses or 'none'}; schema versions: {versions or 'none'} "
               f"(latest v{report['latest_schema_version']})")
    typer.echo(_embeddings_line(report["embeddings"]))
    sweep = report["last_sweep"]
    if sweep is None:
        typer.echo("last sweep: never")
    else:
        typer.echo(f"last sweep: {sweep['started_at']} ({sweep['trigger']}), "
                   + (f"{sweep['checked']} checked, {sweep['failed']} failed, "
                      f"{sweep['recovered']} recovered in {sweep['duration_ms']} ms"
                      if sweep["finished_at"] else "still running"))


def _embeddings_line(embeddings: dict[str, Any]) -> str:
    """Re-embedding to the current model: users by status, rows done and still to do."""
    current = [item for item in embeddings["by_status"] if item["model"] == embeddings["model"]]
    if not current:
        return f"embeddings: model {embeddings['model']}, no re-embedding recorded yet"
    users = ", ".join(f"{item['status']} {item['users']}" for item in current)
    done = sum(item["rows_done"] for item in current)
    remaining = sum(item["rows_remaining"] for item in current)
    return (f"embeddings: model {embeddings['model']}; re-embedding users: {users}; "
            f"rows re-embedded {done}, still to do {remaining}")


async def _status(settings: Settings, url: str) -> dict[str, Any]:
    async with open_process(settings, Role.operator, url) as process:
        main = process.core.main
        reason = await ReadinessProbe.for_main(main, url, timeout_s=settings.ready_timeout_s
                                               ).not_ready_reason()
        return {"main": {"ready": reason is None, "reason": reason},
                "workers": await _workers(main),
                "queue_depth": await _queue_depth(main),
                "instances": await health_report.counts(main),
                "latest_schema_version": latest_schema_version(),
                "last_sweep": await health_report.last_sweep(main),
                "embeddings": {"model": embedding_model_from_settings(settings).name,
                               **await progress_summary(main)}}


async def _workers(main: AsyncEngine) -> list[dict[str, Any]]:
    async with main.connect() as conn:
        rows = (await conn.execute(text(
            "select id, last_heartbeat from procrastinate_workers "
            "where last_heartbeat > now() - make_interval(secs => :s) order by id"),
            {"s": WORKER_ALIVE_S})).all()
    return [{"id": int(worker), "last_heartbeat": beat.isoformat()} for worker, beat in rows]


async def _queue_depth(main: AsyncEngine) -> dict[str, int]:
    async with main.connect() as conn:
        rows = (await conn.execute(text(
            "select queue_name, count(*) from procrastinate_jobs "
            "where status in ('todo', 'doing') group by queue_name"))).all()
    return {str(queue): int(count) for queue, count in rows}


# -- instances -------------------------------------------------------------------------------
INSTANCE_COLUMNS = (Column("user", key=True), Column("status"), Column("schema"),
                    Column("error", optional=True), Column("host", optional=True),
                    Column("last check", optional=True), Column("latency", optional=True))
"""``instances list``: when 80 columns are too few the optional ones make room, the
right-most first (``--json`` and ``instances show`` have every field)."""


def _when(stamp: str | None) -> str:
    return "never" if stamp is None else stamp[:16].replace("T", " ")


def _latency(item: dict[str, Any]) -> str:
    ms = item["health_latency_ms"]
    return "—" if ms is None else f"{ms} ms"


@instances_app.command("list")
def instances_list(
    status_filter: Annotated[str | None, typer.Option(
        "--status", help="Only instances in this status: " + ", ".join(
            s for s in CONNECTION_STATUSES if s != "none") + ".")] = None,
    as_json: JsonOption = False,
) -> None:
    """Every instance with its status, schema version and last health check."""
    if status_filter is not None and (status_filter not in CONNECTION_STATUSES
                                      or status_filter == "none"):
        fail(f"unknown status {status_filter!r}; use one of " + ", ".join(
            s for s in CONNECTION_STATUSES if s != "none"))
    settings = checked_settings()
    with main_database(settings) as url:
        items = _run(_with_main(settings, url, lambda main: health_report
                                       .list_instances(main, status=status_filter)))
    if as_json:
        _print_json({"instances": items, "count": len(items)})
        return
    print_table(INSTANCE_COLUMNS, [
        [shown(item["user_id"]), item["connection_status"],
         "—" if item["schema_version"] is None else f"v{item['schema_version']}",
         item["health_error_code"] or item["connection_error_code"] or "",
         shown(item["host"]), _when(item["last_health_check_at"]), _latency(item)]
        for item in items])
    typer.echo(f"{len(items)} instance(s)")


@instances_app.command("show")
def instances_show(user_id: Annotated[str, typer.Argument(help="The user id.")],
                   as_json: JsonOption = False) -> None:
    """One instance: its redacted URL, state, schema and last health check."""
    settings = checked_settings()
    with main_database(settings) as url:
        item = _run(_with_main(settings, url,
                                      lambda main: health_report.get_instance(main, user_id)))
    if item is None:
        fail(f"no database is configured for user {shown(user_id)!r}", 1)
    if as_json:
        _print_json(item)
        return
    for key, value in item.items():
        typer.echo(f"{key}: {shown(value)}")


@instances_app.command("check")
def instances_check(user_id: Annotated[str, typer.Argument(help="The user id.")],
                    as_json: JsonOption = False) -> None:
    """Check one user's database now (its status moves as in a sweep)."""
    settings = checked_settings()
    with main_database(settings) as url:
        outcome = _run(_check(settings, url, user_id))
    if outcome is None:
        fail(f"user {shown(user_id)!r} has no connected or failing database to check", 1)
    if as_json:
        _print_json(outcome)
    else:
        typer.echo(f"{shown(user_id)}: {outcome['code']}"
                   + (f" in {outcome['latency_ms']} ms" if outcome["latency_ms"] is not None
                      else "")
                   + f" — status {outcome['connection_status']} ({outcome['transition']})"
                   + (f": {outcome['message']}" if outcome["message"] else ""))
    raise typer.Exit(0 if outcome["ok"] else 1)


async def _check(settings: Settings, url: str, user_id: str) -> dict[str, Any] | None:
    async with open_process(settings, Role.operator, url) as process:
        checked = await health_sweeper(process.core).check_one(user_id)
        if checked is None:
            return None
        result, transition = checked
        item = await health_report.get_instance(process.core.main, user_id)
        return {"user_id": user_id, "ok": result.ok, "code": result.code,
                "message": result.message, "latency_ms": result.latency_ms,
                "schema_version": result.schema_version, "transition": transition.value,
                "connection_status": item["connection_status"] if item else None}


async def _with_main(settings: Settings, url: str, read: Any) -> Any:
    async with open_process(settings, Role.operator, url) as process:
        return await read(process.core.main)
