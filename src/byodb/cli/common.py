"""What every operator command shares: one-line errors, the main database (embedded or
configured) and, for commands that work on the fleet, the process's runtime with a bound
job app. Command modules (``cli/main.py`` and the ones it registers) import this; this
imports none of them."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import NoReturn

import procrastinate
import typer
from rich.console import Console
from rich.markup import escape

from byodb.errors import ByodbError
from byodb.instances.jobs import ProcrastinateJobs
from byodb.jobs.queue import bound_job_app, ensure_job_schema
from byodb.maindb.embedded import EmbeddedServerError, ServerShare
from byodb.maindb.location import start_main_database
from byodb.runtime import Runtime, build_runtime
from byodb.safetext import escaped
from byodb.settings import Settings, get_settings

err = Console(stderr=True)
SHOWN_CHARS = 300
"""Longest user id or host an operator command prints (escaped, see :func:`shown`)."""


def shown(value: object) -> str:
    """A value a user chose (a user id, a host), as an operator command prints it: unsafe
    characters escaped (``byodb.safetext.escaped``), bounded. Not Rich markup-escaped:
    :func:`shown_markup` is for Rich."""
    return escaped("—" if value is None else value, SHOWN_CHARS)


def shown_markup(value: object) -> str:
    """:func:`shown`, also escaped for Rich markup (tables, ``err.print``)."""
    return escape(shown(value))


def fail(message: str, code: int = 2) -> NoReturn:
    """One ``error: …`` line on stderr, then exit with ``code``.

    soft_wrap keeps it one line however narrow the terminal; escape keeps paths and
    URLs with brackets (``[::1]``) from being read as Rich markup.
    """
    err.print(f"[red]error:[/] {escape(message)}", soft_wrap=True)
    raise typer.Exit(code)


def checked_settings() -> Settings:
    """The settings, or an ``error:`` line when production is missing what it needs."""
    settings = get_settings()
    try:
        settings.check_production()
    except ByodbError as exc:
        fail(exc.message)
    return settings


def start_main(settings: Settings) -> tuple[str, ServerShare | None]:
    """:func:`start_main_database`, with a stuck embedded server as an ``error:`` line."""
    try:
        return start_main_database(settings)
    except EmbeddedServerError as exc:
        fail(f"embedded PostgreSQL: {exc}; try again, or stop the other byodb process", 1)


@contextlib.contextmanager
def main_database(settings: Settings) -> Iterator[str]:
    """The main database's URL while the block runs; this process's share of an embedded
    server is released after it (which stops the server only if no one else uses it)."""
    url, share = start_main(settings)
    try:
        yield url
    finally:
        if share is not None:
            share.release()


@dataclass
class OperatorSession:
    """An operator command's view of the product: the runtime and a bound job app."""

    runtime: Runtime
    job_app: procrastinate.App


@contextlib.asynccontextmanager
async def operator_session(settings: Settings, main_url: str) -> AsyncIterator[OperatorSession]:
    """The runtime of an operator command (as a worker has it), closed after the block."""
    async with bound_job_app(main_url) as job_app:
        runtime = build_runtime(settings, main_url, jobs=ProcrastinateJobs(job_app))
        try:
            await ensure_job_schema(runtime.main, job_app)
            yield OperatorSession(runtime=runtime, job_app=job_app)
        finally:
            await runtime.close()
