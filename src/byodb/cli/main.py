"""``byodb`` — the root command: its options and the registry of its commands.

Each command group lives in a module of its own (``cli/serve.py``, ``cli/health.py`` …),
which declares its top-level commands on a Typer named ``commands``. This module imports
none of them: :class:`CommandRegistry` imports a command's module only when that command
is run or its own help asked for. Why: the modules import what their commands need (the
web stack for ``serve``, SQLAlchemy, psycopg and the job queue for the fleet commands),
seconds of start-up that ``byodb --help`` and ``byodb keygen`` should not pay. The root
help lists each command with the one-line help kept in :data:`COMMANDS`
(tests/test_cli_and_settings.py checks it is the command's own).
"""

from __future__ import annotations

import gc
import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
import typer.main
from typer.core import TyperCommand, TyperGroup, TyperOption


@dataclass(frozen=True)
class Entry:
    module: str
    """The module whose Typer ``commands`` declares the command."""
    help: str
    """What the root help says of it: the command's help (a group's, for a group)."""


COMMANDS: dict[str, Entry] = {
    "migrate-all": Entry("byodb.cli.fleet", "Bring every user database to the target schema "
                         "version (canary first if asked)."),
    "export": Entry("byodb.cli.export", "Write everything USER_ID owns (tables, files, "
                    "conversations.json, Markdown) to OUT."),
    "health-check": Entry("byodb.cli.health", "Check every connected or failing user "
                          "database now (one sweep), with a summary."),
    "status": Entry("byodb.cli.health", "Main database, workers, job queues, instances by "
                    "status and version, last sweep."),
    "serve": Entry("byodb.cli.serve", "Run the app (main database embedded unless "
                   "BYODB_DATABASE_URL is set); sets the\ndeployment up on first start."),
    "init": Entry("byodb.cli.deployment", "Set up a new deployment where byodb looks "
                  "(--data-dir, BYODB_DATA_DIR or\n./byodb-data; BYODB_DATABASE_URL for "
                  "main): the main database and its tables and, in\ndevelopment, the "
                  "encryption key and token secret. Safe to run again."),
    "worker": Entry("byodb.cli.worker", "Run background jobs in this process (`byodb serve` "
                    "also runs them inline)."),
    "token": Entry("byodb.cli.deployment", "Print a signed development JWT for USER_ID "
                   "(development auth only)."),
    "keygen": Entry("byodb.cli.keys", "Print a new encryption key (64 hex characters) for "
                    "BYOD_ENCRYPTION_KEY."),
    "rotate-key": Entry("byodb.cli.keys", "Re-encrypt stored credentials with the current "
                        "BYOD_ENCRYPTION_KEY (online).\n\nPut the old key in "
                        "BYOD_PREVIOUS_ENCRYPTION_KEYS so existing ciphertexts still open."),
    "db": Entry("byodb.cli.deployment", "The main database."),
    "schema": Entry("byodb.cli.schema", "The content schema."),
    "project": Entry("byodb.cli.schema", "The manual-deployment package."),
    "migrations": Entry("byodb.cli.fleet", "Fleet schema runs."),
    "instances": Entry("byodb.cli.health", "User databases (instances), redacted."),
    "devdb": Entry("byodb.cli.devdb", "A throwaway local PostgreSQL to play 'your own "
                   "database' while trying byodb (development only)."),
}
"""Every top-level command, in the root help's order."""


def load_command(name: str) -> TyperCommand | TyperGroup:
    """The command ``name`` as its module declares it (importing the module)."""
    module = importlib.import_module(COMMANDS[name].module)
    if not gc.isenabled():  # held off by main() for the imports: see there
        gc.freeze()
        gc.enable()
    command = typer.main.get_group(module.commands).commands[name]
    assert isinstance(command, TyperCommand | TyperGroup)
    hide_flag_types(command)
    return command


class _Listed(TyperCommand):
    """A command not loaded yet, as the root help lists it (name and help only)."""


class CommandRegistry(TyperGroup):
    """The root group: the commands of :data:`COMMANDS`, each loaded when it is needed."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        for name, entry in COMMANDS.items():
            self.commands[name] = _Listed(name=name, help=entry.help)
        self._listing = False
        hide_flag_types(self)

    # (ctx and formatter: click's, vendored inside Typer.)
    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = self.commands.get(cmd_name)
        if isinstance(command, _Listed) and not self._listing:
            command = self.commands[cmd_name] = load_command(cmd_name)
        return command

    def format_help(self, ctx: Any, formatter: Any) -> None:
        self._listing = True  # the listing needs names and help only
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False


app = typer.Typer(cls=CommandRegistry,
                  help="byodb: each user's chat content on a PostgreSQL they own.",
                  no_args_is_help=True, add_completion=False)


@app.callback()
def _deployment_options(data_dir: Annotated[Path | None, typer.Option(
        "--data-dir", help="The deployment's data folder (default: BYODB_DATA_DIR, else "
        "./byodb-data).", show_default=False)] = None) -> None:
    """byodb: each user's chat content on a PostgreSQL they own."""
    # Every command reads the settings afresh (cli/common.py), so they see this.
    if data_dir is not None:
        os.environ["BYODB_DATA_DIR"] = str(data_dir)


def hide_flag_types(command: TyperCommand | TyperGroup) -> None:
    """A flag takes no value, so its help shows no type (Typer prints ``<bool>``)."""
    for param in [*command.params, command.get_help_option(typer.Context(command))]:
        if isinstance(param, TyperOption) and param.is_flag and param.metavar is None:
            param.metavar = ""
    if isinstance(command, TyperGroup) and not isinstance(command, CommandRegistry):
        for sub in command.commands.values():
            if isinstance(sub, TyperCommand | TyperGroup):
                hide_flag_types(sub)


def main() -> None:
    """The ``byodb`` entry point.

    The garbage collector is off until the command's module is imported, then everything
    alive is frozen (``gc.freeze``) and it is back on: the imports make objects that live
    as long as the process, and collecting them over and over while they are made, then at
    exit, cost a third of a second of ``byodb status``. (Callers of ``app`` itself, such as
    Typer's test runner, keep their collector as it is.)
    """
    gc.disable()
    try:
        app()
    finally:
        gc.enable()


if __name__ == "__main__":
    main()
