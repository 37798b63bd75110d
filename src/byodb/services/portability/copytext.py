"""Checked rows as PostgreSQL ``COPY … FROM STDIN`` text, and that text read back by column.

An import checks its rows once, in a worker process, and writes them here in COPY's text
format (one line a row, tab between columns, ``\\N`` for NULL, backslash escapes); the write
phase then streams those bytes to ``COPY`` unchanged, with no parsing on the event loop.
The values are those :class:`~byodb.services.portability.rowcheck.RowChecker` and the chat
sources produce: text, UUIDs, times, dates, numbers, booleans and bytes.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from byodb.services.portability.archive import ImportInvalid

NULL = b"\\N"
_ESCAPES = str.maketrans({"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"})


def _text(value: Any, where: str, column: str) -> str:
    if isinstance(value, str):
        if "\x00" in value:
            raise ImportInvalid(f"{where}: {column} contains a NUL character")
        return value.translate(_ESCAPES)
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return "\\\\x" + bytes(value).hex()
    raise TypeError(f"{column}: no COPY text for {type(value).__name__}")


def copy_line(values: Sequence[Any], columns: Sequence[str], where: str) -> bytes:
    """One row (values in the order of ``columns``) as a line of COPY text."""
    fields = []
    for value, column in zip(values, columns, strict=True):
        if value is None:
            fields.append(NULL)
            continue
        try:
            fields.append(_text(value, where, column).encode())
        except UnicodeEncodeError:
            raise ImportInvalid(f"{where}: {column} is not valid Unicode (a lone "
                                "surrogate)") from None
    return b"\t".join(fields) + b"\n"


def project(lines: bytes, indexes: Sequence[int]) -> bytes:
    """Whole lines of COPY text with only the columns at ``indexes``, in that order (a tab
    or newline inside a value is escaped, so both split exactly)."""
    out = []
    for line in lines.split(b"\n"):
        if line:
            fields = line.split(b"\t")
            out.append(b"\t".join(fields[i] for i in indexes))
    return b"\n".join(out) + b"\n" if out else b""
