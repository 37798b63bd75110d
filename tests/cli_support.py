"""The ``byodb`` command run in-process: Typer's runner on ``byodb.cli.main.app``.

A subprocess pays the command's start-up (the interpreter, the imports) on every call; the
suite runs commands this way instead, and keeps a real process only where the test is about
the process itself (signals, ``serve``, ``worker``, the installed script).

Commands call ``asyncio.run``, which cannot run inside a test's event loop, so each call
runs on a thread of its own: :func:`run_cli` blocks its caller (sync tests, and async tests
that serve nothing the command talks to), :func:`arun_cli` lets an async test's loop keep
running meanwhile (its in-process app, SMTP server or proxy answer the command). Neither uses
the loop's default executor. The process environment and the cached settings are put back
after each call, so a command's ``env`` or ``--data-dir`` never leaks into the next test.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from typer.testing import CliRunner

from byodb.cli.main import app
from byodb.settings import get_settings

Env = Mapping[str, str | None]
"""Variables set for one command (``None`` unsets one)."""

_ONE_AT_A_TIME = threading.Lock()  # the runner swaps sys.stdout/stderr process-wide


@dataclass(frozen=True)
class CliResult:
    """What a ``byodb`` command left: its exit code and its two streams, apart."""

    exit_code: int
    stdout: str
    stderr: str

    def last_json(self) -> Any:
        """The JSON document on the last line of stdout (``--json`` prints it last)."""
        return json.loads(self.stdout.strip().splitlines()[-1])


def _invoke(args: tuple[str, ...], env: Env | None) -> CliResult:
    saved = dict(os.environ)
    with _ONE_AT_A_TIME:
        try:
            # No catch_exceptions: an unexpected exception fails the test with its traceback
            # instead of hiding in an exit code of 1.
            result = CliRunner().invoke(app, list(args), env=dict(env or {}),
                                        catch_exceptions=False)
        finally:
            _restore(saved)
            get_settings.cache_clear()
    return CliResult(result.exit_code, result.stdout, result.stderr)


def _restore(saved: dict[str, str]) -> None:
    for name in [name for name in os.environ if name not in saved]:
        del os.environ[name]
    for name, value in saved.items():
        if os.environ.get(name) != value:
            os.environ[name] = value


def _on_own_thread(args: tuple[str, ...], env: Env | None) -> Future[CliResult]:
    done: Future[CliResult] = Future()

    def run() -> None:
        try:
            done.set_result(_invoke(args, env))
        except BaseException as exc:  # handed to the caller, which re-raises it
            done.set_exception(exc)

    threading.Thread(target=run, name="byodb-cli", daemon=True).start()
    return done


def run_cli(*args: str, env: Env | None = None) -> CliResult:
    """``byodb ARGS…`` in this process with ``env`` added to the environment."""
    return _on_own_thread(args, env).result()


async def arun_cli(*args: str, env: Env | None = None) -> CliResult:
    """:func:`run_cli` for an async test whose loop must keep serving while it runs."""
    return await asyncio.wrap_future(_on_own_thread(args, env))
