"""Reading a user's rows as one streamed ``COPY (SELECT …) TO STDOUT`` per archive member.

One statement per member instead of a page per thousand rows: the database keeps producing
rows while this process makes and compresses the previous ones (two processors at work,
not one waiting for the other), and there is no round trip per page. Rows arrive in
PostgreSQL's COPY text format, as bytes, and are handed on in batches of about
:data:`BATCH_BYTES` still escaped, read a batch per wait (:func:`_batch`). What becomes text
of the archive is unescaped a batch at a time (:func:`unescape`: a handful of
``bytes.replace`` over a megabyte, instead of work per row), or kept escaped where COPY's
escapes are JSON's (``portability.jsonlines``).

Every row's length is checked as it arrives (the most its columns can take, however the
database answers); values are checked on the server (``pages.over_of``) as before.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

import psycopg
from psycopg import pq, sql
from psycopg.abc import PQGen
from psycopg.errors import error_from_result
from psycopg.generators import copy_from, fetch_many
from psycopg.pq.abc import PGconn

from byodb.services.rows import InvalidStoredContent

BATCH_BYTES = 1024 * 1024
BYTES_PER_CHAR = 8
"""Most bytes a character of a row's text takes on the wire: four of UTF-8, doubled when COPY
escapes it (only a backslash is, but the bound is simple and still bounds memory)."""

# COPY's text format escapes exactly these (PostgreSQL's CopyAttributeOutText); other control
# characters are sent as they are.
_ESCAPES = ((b"\\b", b"\b"), (b"\\f", b"\f"), (b"\\n", b"\n"), (b"\\r", b"\r"),
            (b"\\t", b"\t"), (b"\\v", b"\v"))

Conn = psycopg.AsyncConnection[Any]


def unescape(data: bytes) -> bytes:
    """COPY text (whole fields, any number of them) back to the values' bytes.

    A backslash is always the start of a two-character escape, so the escaped backslashes
    are set aside first (as NUL: PostgreSQL text never holds one), then the others are undone
    and the backslashes put back."""
    if b"\\" not in data:
        return data
    data = data.replace(b"\\\\", b"\x00")
    for escaped, raw in _ESCAPES:
        data = data.replace(escaped, raw)
    return data.replace(b"\x00", b"\\")


ROW_END = sql.SQL("''")
"""A last, empty column for a query whose rows are split a batch at a time
(:func:`split_rows`)."""


def split_rows(data: bytes, rows: int, width: int) -> tuple[list[bytes], list[bytes]] | None:
    """``rows`` COPY rows (``data``: each ends in a newline) of ``width`` columns followed
    by :data:`ROW_END`, split at their tabs once (tabs and newlines inside values are
    escaped). A row's newline and the next row's first column then make one field, so the
    fields are ``width`` per row, and every row's first after the first row's is prefixed
    with the newline before it. Returns the fields and those prefixed firsts (one per row
    after the first): a caller that finds each of them to be a newline and a first column
    it expects knows every row had its columns. None when the count of fields or newlines
    is not that of ``rows`` such rows."""
    fields = data.split(b"\t")
    if len(fields) != rows * width + 1 or data.count(b"\n") != rows or fields[-1] != b"\n":
        return None
    fields.pop()  # the last row's newline
    return fields, fields[width::width]


def copy_of(query: sql.Composable) -> sql.Composed:
    return sql.SQL("copy ({}) to stdout").format(query)


def _batch(pgconn: PGconn, encoding: str, limit: int,
           table: str) -> PQGen[tuple[list[bytes], bool]]:
    """Rows of a running COPY until about :data:`BATCH_BYTES` are read or the COPY ends
    (then ``True``). The rows libpq holds already are taken in a loop of its own calls; when
    none has arrived, psycopg's own step (``generators.copy_from``) waits for the next; at the
    end, the COPY's result is taken as psycopg takes it (an error raised as psycopg would).
    One ``connection.wait`` reads a whole batch: waiting once per row costs more than the rest
    of the export (a COPY sends every row as a message of its own)."""
    batch: list[bytes] = []
    size = 0
    get = pgconn.get_copy_data
    while size < BATCH_BYTES:
        nbytes, data = get(1)
        if nbytes == 0:  # nothing arrived yet
            step = yield from copy_from(pgconn)
            if not isinstance(step, memoryview):  # the COPY's result: it is over
                return batch, True
            data, nbytes = step, len(step)
        elif nbytes < 0:
            if nbytes != -1:
                raise psycopg.OperationalError("error receiving copy data")
            results = yield from fetch_many(pgconn)
            if not results or results[0].status != pq.ExecStatus.COMMAND_OK:
                raise (error_from_result(results[0], encoding=encoding)
                       if results else psycopg.OperationalError("no COPY result"))
            return batch, True
        if nbytes > limit:
            raise InvalidStoredContent(table, "row")
        batch.append(bytes(data))
        size += nbytes
    return batch, False


async def batches(conn: Conn, query: sql.Composable, params: dict[str, Any], *,
                  table: str, row_chars: int) -> AsyncGenerator[list[bytes]]:
    """The rows of ``query`` (COPY text, each ending in a newline, still escaped), in order,
    in lists of about :data:`BATCH_BYTES`. A row longer than ``row_chars`` characters can be
    is refused (:class:`InvalidStoredContent` naming the row)."""
    limit = BYTES_PER_CHAR * row_chars + 64
    async with conn.cursor().copy(copy_of(query), params) as copy:
        # The rows are read through the COPY's connection; ``copy`` sees its end as it
        # would its own (the connection idle again) and cancels it if this fails.
        del copy
        done = False
        while not done:
            batch, done = await conn.wait(_batch(conn.pgconn, conn.info.encoding, limit, table))
            if batch:
                yield batch
