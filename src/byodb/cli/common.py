"""What every operator command shares: one-line errors, the settings read afresh, the main
database (embedded or configured) and the way a long-running command ends on SIGTERM. The
command modules import this; this imports none of them. (A command that works on the
fleet opens its process with ``byodb.runtime.open_process``, role ``operator``.)"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Annotated, NoReturn

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from byodb.alerts import AlertSettings
from byodb.errors import ByodbError
from byodb.maindb.embedded import EmbeddedServerError, ServerShare
from byodb.maindb.location import find_main_database, start_main_database
from byodb.maindb.stored_keys import stored_key_ids
from byodb.safetext import escaped
from byodb.settings import Settings, get_settings
from byodb.vault.keys import key_ring_for_deployment

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


JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON on "
                                          "stdout (nothing else goes there).")]


def fail(message: str, code: int = 2) -> NoReturn:
    """One ``error: …`` line on stderr, then exit with ``code``.

    soft_wrap keeps it one line however narrow the terminal; escape keeps paths and
    URLs with brackets (``[::1]``) from being read as Rich markup.
    """
    err.print(f"[red]error:[/] {escape(message)}", soft_wrap=True)
    raise typer.Exit(code)


def settings_problems() -> tuple[Settings | None, list[str]]:
    """The settings and every problem with them, all at once: values that do not parse
    (each named by its variable) and what :meth:`Settings.problems` finds in the rest."""
    get_settings.cache_clear()  # read the environment as this command sees it
    try:
        return (settings := get_settings()), _problems(settings)
    except ValidationError as exc:
        found, defaults = [], {}
        for error in exc.errors():
            variable = str(error["loc"][0]) if error["loc"] else "settings"
            found.append(f"{variable}={str(error.get('input'))[:80]}: "
                         f"{error['msg'][:1].lower() + error['msg'][1:]}")
            field = _FIELD_OF.get(variable)
            if field is not None:
                defaults[field] = Settings.model_fields[field].default
        with contextlib.suppress(ValidationError):  # the rest, those values at defaults
            found.extend(_problems(Settings(**defaults)))
        return None, found


def _problems(settings: Settings) -> list[str]:
    """:meth:`Settings.problems`, and the alert mail settings' (parsed by the alerts)."""
    found = settings.problems()
    try:
        AlertSettings.from_settings(settings)
    except ByodbError as exc:
        found.append(exc.message)
    return found


_FIELD_OF = {str(info.alias): name for name, info in Settings.model_fields.items()
             if info.alias}


def checked_settings() -> Settings:
    """The settings, or one ``error:`` line per problem and exit 2."""
    settings, problems = settings_problems()
    for problem in problems:
        err.print(f"[red]error:[/] {escape(problem)}", soft_wrap=True)
    if settings is None or problems:
        raise typer.Exit(2)
    return settings


def start_main(settings: Settings, *, create: bool = False) -> tuple[str, ServerShare | None]:
    """The deployment's main database and this process's share of an embedded one, its
    key ring checked against main's stored credentials. Only ``create`` (``serve``,
    ``init``, ``db upgrade``) may set up a main database or a development key; otherwise a
    missing deployment is one ``error:`` line and exit 2, nothing created."""
    try:
        url, share = start_main_database(settings) if create else find_main_database(settings)
    except EmbeddedServerError as exc:
        fail(f"embedded PostgreSQL: {exc}; try again, or stop the other byodb process", 1)
    except ByodbError as exc:
        fail(exc.message)
    try:
        key_ring_for_deployment(settings, stored_key_ids(url), create=create)
    except ByodbError as exc:
        if share is not None:
            share.release()
        fail(exc.message)
    except BaseException:
        if share is not None:
            share.release()
        raise
    return url, share


@contextlib.contextmanager
def main_database(settings: Settings) -> Iterator[str]:
    """The deployment's main database URL while the block runs (never a new one); this
    process's share of an embedded server is released after it (which stops the server
    only if no one else uses it)."""
    url, share = start_main(settings)
    try:
        yield url
    finally:
        if share is not None:
            share.release()


def fresh_settings() -> Settings:
    """The settings as the environment gives them now (``--data-dir`` included), not as an
    earlier command in this process read them; unchecked (:func:`checked_settings`)."""
    get_settings.cache_clear()
    return get_settings()


def exit_on_sigterm(signum: int, frame: object) -> None:
    """A SIGTERM handler for a long-running command: it ends in SystemExit, so the
    command's ``finally`` blocks run (its share of an embedded server is released)."""
    raise SystemExit(0)
