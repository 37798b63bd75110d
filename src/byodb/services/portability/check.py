"""Checking an upload, in a worker process: one reading of the file, every row checked,
the checked rows spooled as COPY text for the write phase.

:func:`check_upload` runs in :class:`byodb.executors.ForkedWorkers` (never in the web
process itself: parsing is CPU-heavy, and a worker's memory goes back to the system when it
ends).
It reads ``<spool>/upload`` once (``portability.sources``), checks every row with the API's
limits, writes each table's rows to ``<spool>/<table>.copy`` (``portability.copytext``) and
returns a :class:`Checked`, or a :class:`Refused` that names the first problem. Everything
it gives back is plain data (it crosses a process boundary).

It stops with a refusal when its deadline passes (the web process kills it when the request
ends first), and reports how far it read in ``progress``.
"""

from __future__ import annotations

import logging
import os
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from byodb.errors import ByodbError
from byodb.services.portability.archive import ImportLimits
from byodb.services.portability.columns import table_specs
from byodb.services.portability.copytext import copy_line
from byodb.services.portability.jsonstream import ImportLimitBroken
from byodb.services.portability.sources import open_source

log = logging.getLogger(__name__)

UPLOAD = "upload"
PROGRESS = "progress"
_CHECK_EVERY = 256
_PROGRESS_EVERY_S = 0.5


@dataclass(frozen=True)
class Checked:
    kind: str
    rows: dict[str, int]
    columns: dict[str, tuple[str, ...]]
    """Table → the columns of its ``.copy`` file, in order."""
    bytes_read: int
    memory_kb: int = 0
    """How much the worker's resident memory grew while it checked (its peak over its
    start)."""

    @property
    def total(self) -> int:
        return sum(self.rows.values())


@dataclass(frozen=True)
class Refused:
    code: str
    status: int
    message: str
    hint: str | None = None
    memory_kb: int = 0

    def error(self) -> ByodbError:
        error = ByodbError(self.message, hint=self.hint, code=self.code)
        error.status = self.status
        return error


class CheckStopped(ByodbError):
    code = "import_stopped"
    status = 503


@dataclass
class _Spool:
    directory: Path
    columns: dict[str, tuple[str, ...]] = field(default_factory=dict)
    files: dict[str, IO[bytes]] = field(default_factory=dict)

    def write(self, table: str, row: dict[str, Any], where: str) -> None:
        handle = self.files.get(table)
        if handle is None:
            self.columns[table] = tuple(s.name for s in table_specs(table))
            handle = self.files[table] = (self.directory / f"{table}.copy").open("wb")
        columns = self.columns[table]
        handle.write(copy_line([row.get(c) for c in columns], columns, where))

    def close(self) -> None:
        for handle in self.files.values():
            handle.close()


def _rss_kb() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * (os.sysconf("SC_PAGE_SIZE") // 1024)


def check_upload(spool: Path, user_id: str, limits: ImportLimits, deadline: float) -> \
        Checked | Refused:
    """Check ``spool/upload`` and spool its rows (``deadline``: ``time.time()`` seconds)."""
    start_kb = _rss_kb()

    def grown() -> int:
        return max(0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - start_kb)

    try:
        checked = _check(spool, user_id, limits, deadline)
    except ByodbError as exc:
        return Refused(exc.code, exc.status, exc.message, exc.hint, grown())
    except Exception as exc:  # a bug: the import fails, the worker survives to say so
        log.exception("checking an import failed unexpectedly")
        return Refused("import_failed", 500, f"The file could not be checked "
                       f"({type(exc).__name__}); nothing was imported.",
                       "Try again later.", grown())
    return Checked(checked.kind, checked.rows, checked.columns, checked.bytes_read, grown())


def _check(spool: Path, user_id: str, limits: ImportLimits, deadline: float) -> Checked:
    source = open_source(spool / UPLOAD, user_id, limits)
    out = _Spool(spool)
    counts: dict[str, int] = {}
    total = 0
    reported = time.monotonic()
    try:
        for table, row, where in source.records():
            out.write(table, row, where)
            counts[table] = counts.get(table, 0) + 1
            total += 1
            if total > limits.rows:
                raise ImportLimitBroken(f"{where}: the file holds more than {limits.rows} "
                                        "rows, the most one import writes",
                                        hint="Nothing was imported. Split the export.")
            if total % _CHECK_EVERY == 0:
                if time.time() > deadline:
                    raise CheckStopped("Checking the file took longer than its deadline; "
                                       "nothing was imported.",
                                       hint="Split the export into smaller files.")
                if time.monotonic() - reported > _PROGRESS_EVERY_S:
                    _report(spool, source.progress(), total)
                    reported = time.monotonic()
        source.verify(counts)
        _report(spool, source.progress(), total)
        return Checked(source.kind, {t: n for t, n in counts.items() if n}, dict(out.columns),
                       source.progress()[0])
    finally:
        out.close()
        source.close()


def _report(spool: Path, progress: tuple[int, int], rows: int) -> None:
    temporary = spool / f"{PROGRESS}.new"
    temporary.write_text(f"{progress[0]} {progress[1]} {rows}")
    os.replace(temporary, spool / PROGRESS)


def read_progress(spool: Path) -> tuple[int, int, int] | None:
    """(bytes read, bytes to read, rows checked) as the worker last reported them."""
    try:
        done, total, rows = (spool / PROGRESS).read_text().split()
        return int(done), int(total), int(rows)
    except (OSError, ValueError):
        return None
