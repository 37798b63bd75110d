"""A table's rows as JSON lines, made here from COPY text rather than by the database.

PostgreSQL's own JSON (``row_to_json``, ``to_json`` of every value) costs the user's server
about three times what sending the values as text does (what ``pg_dump`` does), and the
server is the slower side of an export. COPY's text format is nearly JSON already: a row is
the values separated by tabs, and a text value escapes a backslash, newline, carriage
return, tab, backspace and form feed exactly as a JSON string does. So a row becomes its
JSON line by filling a template (``{"id":"%s","n":%s,…}``, one per table) with the row's
fields, and what is left to do is done for a whole batch of rows at once, in C loops
(``bytes.replace``, one regular expression):

* a quote, a vertical tab (``\\v``, which JSON lacks) and the control characters COPY sends
  as they are become JSON escapes (:func:`json_strings`; most rows have none,
  :func:`plain`);
* COPY's NULL (``\\N``) of a quoted value becomes ``null`` (:func:`nulls`; the database
  sends the others as ``null``);
* a time becomes ISO 8601 with ``T`` and ``+00:00`` (the session writes it in UTC as
  ``2026-11-22 08:37:03.087489+00``); every time of the batch must be one;
* values that are JSON already (``jsonb``, vectors, numbers as ``to_json`` writes them,
  booleans) are taken as they are, COPY's escapes undone.

The database still bounds every value (``pages.over_of``) and flags a row holding one
over its limit (the first field, empty otherwise); the row's length is checked as it
arrives (``copystream``). A value's own backslash is always doubled by COPY, so the
marker replaced here (``"\\N"``) never occurs inside one.
"""

from __future__ import annotations

import json
import re

from psycopg import sql

from byodb.services.portability.columns import ColumnSpec
from byodb.services.portability.copystream import split_rows, unescape
from byodb.services.portability.pages import value_of
from byodb.services.rows import InvalidStoredContent

NULL = b"\\N"
"""COPY's NULL."""
FLAG = "!"
"""First character of a row that names a column over its limit instead of a value
(``export._flagged``; no JSON object, kind or id starts with it)."""
_FLAG = FLAG.encode()

_QUOTED = frozenset({"uuid", "text", "time", "date", "bytes"})
"""Kinds whose values are JSON strings (their text quoted)."""
_AS_JSON = frozenset({"json", "vector"})
"""Kinds whose text is JSON already and may hold COPY escapes."""

_CONTROL = re.compile(rb"[\x00-\x08\x0b-\x1f]")
"""Control characters COPY sends as they are (it escapes tab, newline, carriage return,
backspace, form feed and vertical tab) and JSON must escape."""
_CONTROL_CHARS = bytes(range(0x09)) + bytes(range(0x0B, 0x20))
_TIME_CHARS = b"0123456789-:. +"
"""What a time as the session writes it (ISO, UTC) is made of."""


def plain(data: bytes) -> bool:
    """Whether COPY text is already the inside of JSON strings (:func:`json_strings` would
    leave it as it is): most is, and this is a few C loops."""
    return (b'"' not in data and b"\\v" not in data
            and len(data.translate(None, _CONTROL_CHARS)) == len(data))


def json_strings(data: bytes) -> bytes:
    """COPY text (whole rows of texts) as the insides of JSON strings: the quote, the
    vertical tab and raw control characters escaped (see the module's docstring). A
    backslash always starts a two-character escape, so escaped backslashes are set aside (as
    NUL, which PostgreSQL text never holds) while ``\\v`` is replaced."""
    data = data.replace(b'"', b'\\"')
    if b"\\v" in data:
        data = data.replace(b"\\\\", b"\x00").replace(b"\\v", b"\\u000b")
        data = data.replace(b"\x00", b"\\\\")
    if len(data.translate(None, _CONTROL_CHARS)) != len(data):
        data = _CONTROL.sub(lambda m: b"\\u%04x" % m[0][0], data)
    return data


def nulls(data: bytes) -> bytes:
    """COPY's NULLs in filled templates (``"\\N"``: only quoted values can be NULL here,
    :func:`server_value`) made JSON's ``null``."""
    return data.replace(b'"\\N"', b"null") if NULL in data else data


def flag_of(row: bytes) -> str:
    """The column a flagged row names, else ``row``."""
    if row.startswith(_FLAG):
        return row[1:].split(b"\t", 1)[0].strip().decode(errors="replace")[:64] or "row"
    return "row"


def server_value(spec: ColumnSpec) -> sql.Composable:
    """What the database sends of a column: its value as text, bounded (``pages.value_of``);
    numbers and booleans as JSON (``to_json`` writes NaN and infinities as strings); a NULL
    of a value that is not quoted as ``null`` already (COPY's ``\\N`` then only stands for
    a quoted one)."""
    value = value_of(spec)
    if spec.kind in _QUOTED:
        return value
    if spec.kind in ("numeric", "float", "boolean", "member"):
        value = sql.SQL("pg_catalog.to_json({})").format(value)
    return sql.SQL("coalesce(({})::text, 'null')").format(value)


class Lines:
    """The JSON lines of one table's rows (``specs``' columns in order, after the flag and
    before ``copystream.ROW_END``).

    A batch is made without a loop over its rows. It is split at its tabs once
    (``copystream.split_rows``): every row's first field is its flag, empty unless a value
    is over its limit, after the newline that ends the row before. The columns that need it
    are converted a slice at a time, and the lines are one ``%`` of the batch's template
    (the row's template repeated) with all the fields: one C loop writes every byte."""

    def __init__(self, table: str, specs: list[ColumnSpec]) -> None:
        self.table = table
        self.width = len(specs) + 1
        # A row's template: the newline and flag before it ("%.0s" writes nothing of
        # them), then "{" or ",", the key and the opening quote before each value, and
        # what closes the last one. Keys are the code's column names; a "%" is escaped.
        pieces: list[bytes] = [b"%.0s"]
        closing = b""
        for i, spec in enumerate(specs):
            quote = b'"' if spec.kind in _QUOTED else b""
            key = json.dumps(spec.name).encode().replace(b"%", b"%%")
            pieces.append(closing + (b"," if i else b"{") + key + b":" + quote + b"%s")
            closing = quote
        pieces.append(closing + b"}\n")
        self._row = b"".join(pieces)
        # Fields taken as sent (their text is JSON, or a number): only COPY's escapes undone.
        self._bare = [i + 1 for i, s in enumerate(specs) if s.kind not in _QUOTED]
        self._escaped = [i + 1 for i, s in enumerate(specs) if s.kind in _AS_JSON]
        self._times = [i + 1 for i, s in enumerate(specs) if s.kind == "time"]

    def _split(self, data: bytes, rows: int) -> list[bytes]:
        """The batch's fields, ``width`` per row (the first of each: newline and flag),
        checked to be that many in every row and no row flagged."""
        split = split_rows(data, rows, self.width)
        # Every row's first field is its newline and an empty flag, or a row is flagged or
        # out of step.
        if split is None or split[0][0] or split[1].count(b"\n") != rows - 1:
            raise InvalidStoredContent(self.table, self._failure(data))
        return split[0]

    def _failure(self, data: bytes) -> str:
        """What a batch that is not rows of the table's columns names: the column of the
        first flagged row, else the row."""
        for row in data.split(b"\n"):
            if row.startswith(_FLAG):
                return flag_of(row)
        return "row"

    def lines(self, batch: list[bytes]) -> bytes:
        """The JSON lines of a batch of COPY rows (each ending in a newline)."""
        width, rows = self.width, len(batch)
        data = b"".join(batch)
        fields = self._split(data, rows)
        # Most batches need no JSON escape at all; where some do, the quoted columns take
        # the escaped text and the others stay as sent.
        if not plain(data):
            strings = self._split(json_strings(data), rows)
            for i in self._bare:
                strings[i::width] = fields[i::width]
            fields = strings
        for i in self._escaped:
            column = fields[i::width]
            if b"\\" in b"".join(column):
                fields[i::width] = [unescape(v) if b"\\" in v else v for v in column]
        for i in self._times:
            fields[i::width] = self._iso_times(fields[i::width])
        return nulls((self._row * rows) % tuple(fields))

    def _iso_times(self, column: list[bytes]) -> list[bytes]:
        """Times as the session writes them (``2026-11-22 08:37:03.087489+00``, UTC) in
        ISO 8601 (``2026-11-22T08:37:03.087489+00:00``), checked: one space and one ``+00``
        each, nothing but digits and ``-:.`` besides."""
        text = b"\t".join(column) + b"\t"
        times = len(column) - text.count(b"\\N\t")
        if (text.count(b" ") != times or text.count(b"+00\t") != times
                or text.replace(b"\\N\t", b"").translate(None, _TIME_CHARS + b"\t")):
            raise InvalidStoredContent(self.table, "row")
        iso = text.replace(b" ", b"T").replace(b"+00\t", b"+00:00\t").split(b"\t")
        iso.pop()
        return iso
