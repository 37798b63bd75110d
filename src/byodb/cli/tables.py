"""Tables on stdout that fit the terminal (80 columns when stdout is not one): optional
columns are dropped, then the others wrap; a key column (a user id, a run id) is never cut
or wrapped, even if the table then runs wider than the terminal."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

out = Console(soft_wrap=False)
"""Results: tables and lines a reader of stdout gets (``--json`` prints only JSON)."""


@dataclass(frozen=True)
class Column:
    header: str
    key: bool = False  # never cut or wrapped
    optional: bool = False  # dropped, last first, when the table does not fit
    justify: str = "left"


_GAP = 3
"""Columns are this many characters apart (a space, the separator, a space)."""


def _least_width(column: Column, cells: Sequence[str]) -> int:
    """A key column's longest value; any other, its longest word (it wraps between
    words), never less than its header."""
    longest = max((len(cell) if column.key else max((len(w) for w in cell.split()), default=0)
                   for cell in cells), default=0)
    return max(len(column.header), longest)


def _natural_width(column: Column, cells: Sequence[str]) -> int:
    return max([len(column.header), *(len(cell) for cell in cells)])


def _widths(columns: Sequence[Column], rows: Sequence[Sequence[str]], width: int
            ) -> list[int]:
    """Each column's width: its natural one, the widest wrapping columns narrowed (one
    character at a time, down to their least width) until the table fits ``width``."""
    cells = [[row[i] for row in rows] for i in range(len(columns))]
    least = [_least_width(c, cells[i]) for i, c in enumerate(columns)]
    widths = [_natural_width(c, cells[i]) for i, c in enumerate(columns)]
    budget = width - _GAP * (len(columns) - 1)
    while sum(widths) > budget:
        narrowable = [i for i in range(len(columns)) if widths[i] > least[i]]
        if not narrowable:
            break
        widest = max(narrowable, key=lambda i: widths[i])
        widths[widest] -= 1
    return widths


def _table(columns: Sequence[Column], rows: Sequence[Sequence[str]], width: int
           ) -> tuple[Table, int]:
    """The table laid out for ``width`` and the width it takes (more than ``width`` only
    when its columns' least widths do not fit)."""
    widths = _widths(columns, rows, width)
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    for column, column_width in zip(columns, widths, strict=True):
        table.add_column(column.header, no_wrap=column.key, overflow="fold",
                         width=column_width, justify=column.justify)  # type: ignore[arg-type]
    for row in rows:
        # Text, not markup: cells hold values users chose (ids, hosts).
        table.add_row(*(Text(cell) for cell in row))
    return table, sum(widths) + _GAP * (len(columns) - 1)


def fit_table(columns: Sequence[Column], rows: Sequence[Sequence[str]],
              width: int) -> tuple[Table, int]:
    """The table with as many optional columns as fit ``width`` (the least important,
    listed last, go first), and the width it takes."""
    keep = list(range(len(columns)))
    optional = [i for i, c in enumerate(columns) if c.optional]
    while True:
        table, taken = _table([columns[i] for i in keep],
                              [[row[i] for i in keep] for row in rows], width)
        if taken <= width or not optional:
            return table, taken
        keep.remove(optional.pop())


def print_table(columns: Sequence[Column], rows: Sequence[Sequence[str]],
                console: Console = out) -> None:
    """Print the fitted table on stdout; a key column wider than the terminal widens it
    rather than being cut."""
    table, taken = fit_table(columns, rows, console.width)
    if taken > console.width:  # Rich never prints wider than its console's width
        console = Console(file=console.file, width=taken, soft_wrap=False,
                          force_terminal=console.is_terminal)
    console.print(table, crop=False)
