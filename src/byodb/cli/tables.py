"""Tables on stdout that fit the terminal (80 columns when stdout is not one): optional
columns are dropped, then the others wrap; a key column (a user id, a run id) is never cut
or wrapped, even if the table then runs wider than the terminal."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich import box
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

out = Console(soft_wrap=False)
"""Results: tables and lines a reader of stdout gets (``--json`` prints only JSON)."""


@dataclass(frozen=True)
class Column:
    header: str
    key: bool = False  # never cut or wrapped
    optional: bool = False  # dropped, last first, when the table does not fit
    justify: str = "left"


def _table(columns: Sequence[Column], rows: Sequence[Sequence[str]]) -> Table:
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    for column in columns:
        # A header is never split either ("targ…"): it sets the column's least width.
        table.add_column(column.header, no_wrap=column.key, overflow="fold",
                         min_width=len(column.header),
                         justify=column.justify)  # type: ignore[arg-type]
    for row in rows:
        table.add_row(*row)
    return table


def fit_table(columns: Sequence[Column], rows: Sequence[Sequence[str]],
              width: int) -> Table:
    """The table with as many optional columns as fit ``width`` (the least important,
    listed last, go first)."""
    keep = list(range(len(columns)))
    optional = [i for i, c in enumerate(columns) if c.optional]
    measure = Console(width=width, file=None)
    while True:
        table = _table([columns[i] for i in keep], [[row[i] for i in keep] for row in rows])
        needed = Measurement.get(measure, measure.options, table).minimum
        if needed <= width or not optional:
            return table
        keep.remove(optional.pop())


def print_table(columns: Sequence[Column], rows: Sequence[Sequence[str]],
                console: Console = out) -> None:
    """Print the fitted table on stdout; a key column wider than the terminal widens it
    rather than being cut."""
    table = fit_table(columns, rows, console.width)
    key_width = max((len(row[i]) for row in rows for i, c in enumerate(columns) if c.key),
                    default=0)
    needed = Measurement.get(console, console.options, table).minimum
    width = max(console.width, needed, key_width)
    console.print(table, width=width, crop=False, overflow="ignore")
