"""The root command loads a command's module only when it is needed (``cli/main.py``):
its help lists every command as the command itself describes it, and neither ``--help``
nor ``status`` pays for the web stack."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from byodb.cli.main import COMMANDS, load_command

WEB_STACK = ("fastapi", "uvicorn", "starlette", "byodb.web.app", "byodb.web.api")
DATABASE_STACK = ("sqlalchemy", "psycopg", "alembic", "procrastinate", "numpy")


@pytest.mark.parametrize("name", list(COMMANDS))
def test_the_root_help_describes_each_command_as_its_own_help_does(name: str) -> None:
    assert COMMANDS[name].help == load_command(name).help


def _imported_after(*args: str) -> list[str]:
    """The top modules a fresh interpreter holds after running ``byodb ARGS`` in-process
    (the command may fail: only what it imported matters)."""
    script = ("import json, sys\n"
              "from typer.testing import CliRunner\n"
              "from byodb.cli.main import app\n"
              f"CliRunner().invoke(app, {list(args)!r})\n"
              "print(json.dumps(sorted(sys.modules)))\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=120, env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent",
                                              "BYODB_DATA_DIR": "/nonexistent/byodb-data"})
    assert result.returncode == 0, result.stderr[-2000:]
    modules: list[str] = json.loads(result.stdout.splitlines()[-1])
    return modules


def _loaded(modules: list[str], names: tuple[str, ...]) -> list[str]:
    return [n for n in names if any(m == n or m.startswith(n + ".") for m in modules)]


def test_help_imports_neither_the_web_stack_nor_the_database_libraries() -> None:
    assert _loaded(_imported_after("--help"), WEB_STACK + DATABASE_STACK) == []


def test_status_does_not_import_the_web_stack() -> None:
    assert _loaded(_imported_after("status"), WEB_STACK) == []
