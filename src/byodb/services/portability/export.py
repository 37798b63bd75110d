"""The export: everything a user owns as one zip, streamed as it is read.

Order of an export (docs/export-format.md describes the result):

1. One read-only, repeatable-read transaction on the database that holds the user's content
   (``Router.connect(snapshot=True)``): every file of the archive shows the same moment.
   Its deadline is the export's own (``timeout_s``: ``BYODB_EXPORT_TIMEOUT``), not a
   request's: the transaction raises the server's statement and idle limits to it with
   transaction-local ``set_config`` (a later one overrides the connection's defaults).
2. ``tables/<table>.jsonl`` for every content table, parents first; the bytes of uploaded
   files then follow as ``files/<id>/<name>`` (one file per query, so at most one file's
   bytes are in memory).
3. ``conversations.json`` in ChatGPT's layout, then ``markdown/…``, both from one read of
   the messages by conversation (the Markdown waits in a spool while conversations.json is
   written) — left out when only the tables are asked for (:class:`Contents`).
4. ``manifest.json`` last: it lists every other member with its rows and SHA-256.

An export that fails once bytes have left (its deadline, the database, a stored value
beyond the API's limits) cannot become an HTTP error any more. It ends instead with
:data:`INCOMPLETE_MEMBER`, a text saying that the export is incomplete and why (byodb's own
words: never a server's message), and without ``manifest.json``: no tool mistakes it for a
whole export. The log names the user (escaped) and the cause.

Each member is one streamed ``COPY (SELECT …) TO STDOUT`` (``portability.copystream``): the
database sends each value as text, bounded on its side (``portability.pages``), and this
process makes the JSON (``portability.jsonlines`` for the tables, templates here for
conversations.json and the Markdown), every row's length and shape checked as it arrives:
the user's server does what ``pg_dump`` would, no more. Bytes leave as soon as a quarter
megabyte of the archive is ready, so memory stays flat however large the export is.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import struct
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import aclosing
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from operator import itemgetter
from typing import IO, Any, TypeVar, cast
from uuid import UUID

import psycopg
from psycopg import sql
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from byodb.content import CONTENT_SCHEMA, CONTENT_SCHEMA_VERSION
from byodb.content.deploy import deployed_schema
from byodb.content.limits import MAX_FILE_BYTES, MAX_FILENAME_CHARS
from byodb.content.tables import conversations
from byodb.errors import ByodbError
from byodb.instances.lifecycle.move_plan import set_comparable_session
from byodb.routing import Router
from byodb.safetext import escaped
from byodb.services.portability import jsonlines, markdown
from byodb.services.portability.columns import (
    ColumnSpec,
    content_tables,
    json_chars,
    present_columns,
    stored_specs,
)
from byodb.services.portability.copystream import ROW_END, batches, split_rows, unescape
from byodb.services.portability.pages import (
    Conn,
    PageQuery,
    column,
    over_of,
    value_of,
)
from byodb.services.portability.zipstream import (
    EXPORT_THREADS,
    Member,
    MemberStats,
    ZipStream,
)
from byodb.services.rows import InvalidStoredContent

log = logging.getLogger(__name__)

T = TypeVar("T")

FORMAT_NAME = "byodb-export"
FORMAT_VERSION = 1
FLUSH_BYTES = 256 * 1024
MAX_CHILDREN_CHARS = 1024 * 1024
"""Longest list of a message's direct replies (ids) in conversations.json: about 25,000."""
MAX_ROOTS = 25_000
"""Most first messages (no parent) of one conversation in conversations.json."""
INCOMPLETE_MEMBER = "EXPORT-INCOMPLETE.txt"
"""The last member of an export that failed after its download started (no manifest then)."""


class Contents(StrEnum):
    """What an export holds: ``all`` (the lossless tables and files, ``conversations.json``
    and Markdown) or ``tables`` (the lossless tables and files only: everything an import
    needs, a third of the work)."""

    all = "all"
    tables = "tables"


class ExportIncomplete(ByodbError):
    """An export stopped before its end (for a caller that can still say so: the operator's
    command; a download says it inside the archive)."""

    code = "export_incomplete"
    status = 503


@dataclass
class ExportOutcome:
    """How an export ended, for a caller that must know (the operator's command)."""

    complete: bool = False
    reason: str | None = None


def member_path(file_id: UUID | str, filename: str) -> str:
    """Where a file's bytes are in the archive (``files.jsonl`` names it in ``content``)."""
    return f"files/{file_id}/{markdown.slug(filename, 'file')}"


async def driver_connection(conn: AsyncConnection) -> Conn:
    """The psycopg connection under a routed SQLAlchemy connection (same transaction)."""
    raw = await conn.get_raw_connection()
    return cast(Conn, raw.driver_connection)


async def check_readable(router: Router, user_id: str) -> None:
    """Raise what a content request would (a blocked user's 503) before a byte is sent."""
    async with router.connect(user_id, conversations) as conn:
        await conn.execute(text("select 1"))


class _Archive:
    """The zip being streamed and the manifest's listing of it."""

    def __init__(self, now: datetime | None = None) -> None:
        self.zip = ZipStream(now=now)
        self.listing: dict[str, MemberStats] = {}

    async def ready(self) -> bytes:
        """What the archive has ready to send, once enough is queued (else nothing): the
        queued members go to the compression threads while the caller reads on."""
        return await self.zip.drain() if self.zip.pending >= FLUSH_BYTES else b""

    async def incomplete(self, reason: str) -> bytes:
        """Close the archive with :data:`INCOMPLETE_MEMBER` instead of the manifest; its
        last bytes. The member being written when it failed is closed as it is (cut)."""
        cut = self.zip.close_open_member()
        done = ", ".join(self.listing) or "none"
        text = (f"This export is INCOMPLETE: {reason}\n\n"
                "It stopped before the end, so it has no manifest.json: do not use it as a "
                "whole copy of your data. Download it again; if it fails again, ask the "
                "operator.\n\n"
                f"Members written completely: {done}\n"
                + (f"Member cut where the export stopped: {cut}\n" if cut else ""))
        self.zip.add(INCOMPLETE_MEMBER, text.encode())
        return await self.zip.close()

    def add(self, name: str, data: bytes, rows: int) -> None:
        self.done(name, self.zip.add(name, data), rows)

    def done(self, name: str, stats: MemberStats, rows: int) -> None:
        stats.rows = rows
        self.listing[name] = stats


async def export_archive(router: Router, user_id: str, *, timeout_s: float,
                         contents: Contents = Contents.all,
                         outcome: ExportOutcome | None = None,
                         now: datetime | None = None) -> AsyncIterator[bytes]:
    """The export zip of ``user_id``, as consecutive chunks of bytes. A failure ends the
    archive with :data:`INCOMPLETE_MEMBER` (see the module's docstring); ``outcome``, when
    given, tells the caller which it was."""
    archive = _Archive(now)
    result = outcome if outcome is not None else ExportOutcome()
    failure: Exception | None = None
    schema = None
    try:
        async with router.connect(user_id, conversations, timeout_s=timeout_s,
                                  snapshot=True) as routed:
            try:
                conn = await driver_connection(routed)
                await _begin(conn, timeout_s)
                schema = await deployed_schema(conn)
                async for chunk in _members(conn, archive, user_id, contents):
                    yield chunk
            except Exception as exc:
                # Caught inside the transaction: the export's own failure (a statement
                # cancelled at its limit, a value beyond the API's limits) is not a database
                # that stopped answering, and must not mark it so.
                failure = exc
    except Exception as exc:  # the deadline, or the database lost meanwhile
        failure = failure or exc
    except BaseException:  # the client left, or the server stops: nobody reads the rest
        archive.zip.abandon()
        raise
    if failure is not None:
        result.reason = _reason(failure, timeout_s)
        log.warning("export of user %s incomplete: %s (%s)", escaped(user_id, 300),
                    result.reason, type(failure).__name__)
        yield await archive.incomplete(result.reason)
        return
    # Every member's hand-off done: the listing's sizes and hashes are final.
    if last := await archive.zip.drain(wait=True):
        yield last
    manifest = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "schema_version": schema.version if schema else CONTENT_SCHEMA_VERSION,
        "created_at": (now or datetime.now(UTC)).isoformat(),
        "user_id": user_id,
        "contents": contents.value,
        "files": {name: {"rows": s.rows, "bytes": s.bytes, "sha256": s.sha256}
                  for name, s in archive.listing.items()},
    }
    archive.add("manifest.json", json.dumps(manifest, indent=2).encode(), 1)
    result.complete = True
    yield await archive.zip.close()


async def _begin(conn: Conn, timeout_s: float) -> None:
    """The export transaction's settings, all transaction-local (``set_config(…, true)``,
    which overrides what the connection set before)."""
    ms = str(max(1, round(timeout_s * 1000)))
    await conn.execute("select pg_catalog.set_config('statement_timeout', %s, true),"
                       " pg_catalog.set_config('idle_in_transaction_session_timeout', %s,"
                       " true)", (ms, ms))
    await set_comparable_session(conn)
    # One server process per export: parallel workers would each build the same
    # hash tables (the children of every message) and take the user's other cores.
    await conn.execute("set local max_parallel_workers_per_gather = 0")
    # COPY's bytes go into the archive as they come: they must be UTF-8.
    await conn.execute("set local client_encoding = 'UTF8'")


async def _members(conn: Conn, archive: _Archive, user_id: str,
                   contents: Contents) -> AsyncIterator[bytes]:
    present = await present_columns(conn)
    for table in content_tables():
        if table.name not in present:
            continue
        specs = stored_specs(table, present[table.name])
        async for chunk in _table(conn, archive, table.name, specs, user_id):
            yield chunk
    async for chunk in _file_bytes(conn, archive, user_id):
        yield chunk
    if contents is Contents.tables:
        return
    by_name = {t.name: {s.name: s for s in stored_specs(t, present.get(t.name, ()))}
               for t in content_tables()}
    async for chunk in _conversations_and_markdown(conn, archive, by_name, user_id):
        yield chunk
    async for chunk in _note_markdown(conn, archive, by_name, user_id):
        yield chunk


def _reason(exc: BaseException, timeout_s: float) -> str:
    """Why an export stopped, in byodb's words (a database's own message may hold anything
    its owner wrote, so it is never repeated)."""
    if isinstance(exc, ByodbError):
        return exc.message
    if isinstance(exc, TimeoutError):
        return f"it ran past its deadline ({timeout_s:g} s)."
    sqlstate = getattr(exc, "sqlstate", None)
    if sqlstate == "57014":
        return "the database cancelled a query (statement timeout or an operator)."
    if sqlstate:
        return f"the database refused a query (SQLSTATE {escaped(sqlstate, 5)})."
    if isinstance(exc, OSError | psycopg.OperationalError):
        return "the connection to the database was lost."
    return f"an unexpected error ({type(exc).__name__})."


async def _table(conn: Conn, archive: _Archive, table: str, specs: list[ColumnSpec],
                 user_id: str) -> AsyncIterator[bytes]:
    name = f"tables/{table}.jsonl"
    member = archive.zip.open(name)
    members = [s.name for s in specs if s.kind == "member"]
    query = PageQuery.of_columns(table, specs)
    lines = jsonlines.Lines(table, specs)
    count = 0
    async with aclosing(batches(conn, _table_rows(table, specs, query), {"u": user_id},
                                table=table, row_chars=query.row_chars)) as stream:
        async for batch in stream:
            # Made on the export's own threads, not the event loop, while the next batch
            # arrives.
            data = await _off_loop(_json_lines, lines, batch, members)
            member.write(data)
            count += len(batch)
            if chunk := await archive.ready():
                yield chunk
    archive.done(name, member.close(), count)


def _json_lines(lines: jsonlines.Lines, batch: list[bytes], members: list[str]) -> bytes:
    data = lines.lines(batch)
    if members:
        data = b"".join(_with_member_paths(line, members) for line in data.split(b"\n")[:-1])
    return data


def _table_rows(table: str, specs: list[ColumnSpec], query: PageQuery) -> sql.Composed:
    """The user's rows of ``table`` by id: a flag (empty, or ``!<column>`` when a value is
    over its limit: :func:`_flagged`), then each column's value as text
    (``jsonlines.server_value``), made after the sort (only stored columns are sorted),
    then ``copystream.ROW_END``."""
    return sql.SQL(
        "select {flag}, {values}, {end} from (select {columns} from {real} t"
        " where t.user_id = %(u)s order by t.id) t").format(
        flag=_flagged(query.overs, sql.SQL("''")),
        values=sql.SQL(", ").join(jsonlines.server_value(s) for s in specs),
        end=ROW_END,
        columns=sql.SQL(", ").join(column(s.name) for s in specs),
        real=sql.Identifier(CONTENT_SCHEMA, table))


def _in_id_order(table: str, query: PageQuery) -> sql.Composed:
    """Each of the user's rows of ``table`` as its JSON object (``query``'s fields), by id,
    or the flag of its first value over a limit (:func:`_flagged`).

    The stored columns the fields need are read and sorted (no generated columns, no JSON
    yet); each sorted row's JSON is then made by ``row_to_json`` of its fields, the cheapest
    way PostgreSQL has to write a row as JSON (``json_build_object`` costs about twice as
    much). The sorted rows keep the alias ``t`` the fields are written against."""
    columns = [name for name, _ in query.fields]  # each field is its column's value
    values = sql.SQL(", ").join(sql.SQL("{} as {}").format(value, sql.Identifier(name))
                                for name, value in query.fields)
    return sql.SQL(
        "select {row} from (select {columns} from {real} t where t.user_id = %(u)s"
        " order by t.id) t cross join lateral (select {values}) v").format(
        row=_flagged(query.overs, sql.SQL("pg_catalog.row_to_json(v)::text")),
        columns=sql.SQL(", ").join(column(c) for c in columns), values=values,
        real=sql.Identifier(CONTENT_SCHEMA, table))


def _flagged(overs: tuple[tuple[str, sql.Composable], ...],
             value: sql.Composable) -> sql.Composable:
    """``value``, or ``!<column>`` when a value of the row is over its limit: the value
    never crosses the wire, and the reader refuses the row naming the column."""
    if not overs:
        return value
    whens = sql.SQL(" ").join(
        sql.SQL("when {} then {}").format(over, sql.Literal(jsonlines.FLAG + name))
        for name, over in overs)
    return sql.SQL("case {} else {} end").format(whens, value)


def _object(fields: tuple[tuple[str, sql.Composable], ...]) -> sql.Composable:
    return sql.SQL("pg_catalog.json_build_object({})").format(
        sql.SQL(", ").join(sql.SQL("{}, {}").format(sql.Literal(k), v) for k, v in fields))


def _with_member_paths(line: bytes, columns: list[str]) -> bytes:
    """A files row names the member that holds its bytes instead of carrying them."""
    try:
        data = json.loads(line)
        row_id = UUID(str(data.get("id")))
    except (ValueError, AttributeError):  # not one JSON object per line, or no UUID id
        raise InvalidStoredContent("files", "row") from None
    for name in columns:
        data[name] = member_path(row_id, data.get("filename") or "") if data[name] else None
    return json.dumps(data, ensure_ascii=False).encode() + b"\n"


async def _file_bytes(conn: Conn, archive: _Archive, user_id: str) -> AsyncIterator[bytes]:
    statement = sql.SQL(
        "select t.id, pg_catalog.left(t.filename, %(name)s),"
        " case when pg_catalog.octet_length(t.content) > %(limit)s then null else t.content end"
        " from {} t where t.user_id = %(u)s and t.id > %(after)s and t.content is not null"
        " order by t.id limit 1").format(sql.Identifier("byodb", "files"))
    after = UUID(int=0)
    while True:
        cursor = await conn.execute(statement, {"u": user_id, "after": after,
                                                "limit": MAX_FILE_BYTES,
                                                "name": MAX_FILENAME_CHARS + 1})
        row = await cursor.fetchone()
        if row is None:
            return
        file_id, filename, content = row
        if not isinstance(file_id, UUID) or file_id <= after:
            raise InvalidStoredContent("files", "id")
        if content is None or len(content) > MAX_FILE_BYTES:
            raise InvalidStoredContent("files", "content")
        if not isinstance(filename, str) or len(filename) > MAX_FILENAME_CHARS:
            raise InvalidStoredContent("files", "filename")
        after = file_id
        archive.add(member_path(file_id, filename), bytes(content), 1)
        if chunk := await archive.zip.drain():
            yield chunk


# --- conversations.json (ChatGPT's layout) ---------------------------------------------------

_EPOCH = "pg_catalog.date_part('epoch', {})"


def _bounded(spec: ColumnSpec) -> tuple[sql.Composable, tuple[tuple[str, sql.Composable], ...]]:
    over = over_of(spec)
    return value_of(spec), ((spec.name, over),) if over is not None else ()


def _conversation_head(specs: dict[str, ColumnSpec]) -> PageQuery:
    title, title_over = _bounded(specs["title"])
    model, model_over = _bounded(specs["model"])
    return PageQuery(
        "conversations",
        (("id", column("id")), ("conversation_id", column("id")), ("title", title),
         ("create_time", sql.SQL(_EPOCH).format(column("created_at"))),
         ("update_time", sql.SQL(_EPOCH).format(column("updated_at"))),
         ("default_model_slug", model)),
        title_over + model_over,
        json_chars(specs["title"]) + json_chars(specs["model"]) + 1024)


def _node(specs: dict[str, ColumnSpec]) -> tuple[list[sql.Composable], PageQuery]:
    """What a message's node in ``mapping`` (:data:`_NODE`) and its Markdown section
    (:data:`_SECTION`) are made of, read once: its texts as stored (COPY escapes them almost
    as JSON does; ``jsonlines.json_strings`` does the rest), its times and branch index.
    Both are put together here: a template filled per row costs less than the database's
    ``to_json`` of every text, a text read once crosses the wire once, and the children the
    database would group cost more than the rest of the query (:class:`_Conversation`)."""
    values: dict[str, sql.Composable] = {}
    overs: list[tuple[str, sql.Composable]] = []
    for name in ("role", "content", "model", "status"):
        value, over = _bounded(specs[name])
        values[name] = value
        overs.extend(over)
    # Numbers (not quoted in a node) come as JSON, a NULL as ``null``.
    number = sql.SQL("coalesce(({})::text, 'null')")
    row: list[sql.Composable] = [
        sql.SQL("coalesce(t.parent_message_id::text, '')"), values["role"],
        values["content"], number.format(sql.SQL(_EPOCH).format(column("created_at"))),
        number.format(sql.SQL(_EPOCH).format(column("updated_at"))), values["model"],
        values["status"], number.format(column("branch_index")),
        # A reply's time is when it was written (it was created with the question, blank).
        sql.SQL("pg_catalog.to_json(coalesce(t.generation_completed_at, t.created_at))"
                " #>> '{{}}'")]
    chars = sum(json_chars(specs[n]) for n in ("content", "role", "model", "status")) + 1024
    return row, PageQuery("messages", (), tuple(overs), chars)


# The fields of a message's row: kind, id, then (:func:`_node`) these.
_PARENT, _ROLE, _CONTENT, _CREATED, _UPDATED, _MODEL, _STATUS, _BRANCH, _WHEN = range(2, 11)
_FIELDS = 11
"""Fields of every row of the stream (a conversation's: kind, id, its head in
conversations.json, its head in Markdown, then empty ones)."""

_NODE = (b'"%s": {"id" : "%s", "parent" : "%s", "children" : %s, "message" : {"id" : "%s",'
         b' "author" : {"role" : "%s"}, "content" : {"content_type" : "text",'
         b' "parts" : ["%s"]}, "create_time" : %s, "update_time" : %s,'
         b' "status" : "finished_successfully", "metadata" : {"model_slug" : "%s",'
         b' "byodb_status" : "%s", "byodb_branch_index" : %s}}}, ')
"""A node of ``mapping`` with its key, as ``json_build_object`` would write it (a NULL text
is ``"\\N"`` here, made ``null`` by ``jsonlines.nulls``)."""
_ROOT = (b'"%s": {"id": "%s", "parent": null, "children": [%s], "message": null}}, '
         b'"current_node": "%s"}')
"""The root node, the conversation's last: it ends ``mapping`` and the conversation."""
_SECTION = "\n## %s%s · %s\n\n%s\n".encode()
"""A message's Markdown, as ``markdown.message_section`` writes it."""
_TITLES = {k.encode(): v.encode() for k, v in markdown.ROLE_TITLES.items()}
_NULL = b"\\N"
"""COPY's NULL (of a text)."""
_NULL_NUMBER = b"null"
"""A NULL number as the database sends it (:func:`_node`)."""
MAX_CONVERSATION_MESSAGES = 250_000
"""Most messages of one conversation in conversations.json: its ids are kept in memory
until its last message is read (about 150 bytes each)."""
CONVERSATION_MEMORY = 8 * 1024 * 1024
"""Bytes of one conversation's rows kept in memory; the rest wait in a temporary file."""
SPOOL_MEMORY = 8 * 1024 * 1024
"""Bytes of Markdown kept in memory while conversations.json is written; the rest wait in
a temporary file."""


_FLAG_BYTES = jsonlines.FLAG.encode()
HEAD, ROW = b"0", b"1"
"""First field of a row of a by-conversation stream (see :func:`_by_conversation`)."""
_NEXT_KINDS = frozenset({b"\n" + HEAD, b"\n" + ROW})
"""A row's end and the next row's kind, as a batch split at tabs has them."""
_FLAGGED = b"\t" + _FLAG_BYTES
_NODE_FIELDS = _NODE.count(b"%s")
_FIRST_BRANCH = (b"0", _NULL_NUMBER)
"""Branch indexes of a message that is no alternative (its Markdown says nothing)."""


_ROW_COLUMNS = ("parent_message_id", "role", "content", "model", "status", "created_at",
                "updated_at", "branch_index", "generation_completed_at")
"""The columns of a message that its node and Markdown section are made of."""
_ROW_TYPES = ("uuid", "text", "text", "text", "text", "timestamptz", "timestamptz", "integer",
              "timestamptz")
"""The types of :data:`_ROW_COLUMNS` (a union's first branch names them)."""


def _by_conversation(head: list[sql.Composable], row: list[sql.Composable]) -> sql.Composed:
    """Every listed conversation (alias ``t``, row ``0, id, *head``) followed by its
    messages (alias ``t``, row ``1, id, *row``; ``row`` reads only :data:`_ROW_COLUMNS`) in
    time order: one stream for all conversations, in COPY's columns (the shorter list padded
    with empty texts), each row ending with ``copystream.ROW_END`` (:func:`_split_rows`).
    Messages of no listed conversation (only a database changed by hand has them) are left
    out.

    The heads are made before the sort (there are few); the messages' stored columns are
    sorted and each row's text made after the sort, so no text is sorted."""
    width = max(len(head), len(row))

    def padded(values: list[sql.Composable]) -> list[sql.Composable]:
        return values + [sql.SQL("''")] * (width - len(values))

    heads = [sql.Identifier(f"h{i}") for i in range(width)]
    raw = [sql.Identifier(c) for c in _ROW_COLUMNS]
    columns = sql.SQL(", ").join(
        sql.SQL("case when t.part = 0 then t.{} else ({})::text end").format(h, v)
        for h, v in zip(heads, padded(row), strict=True))
    return sql.SQL(
        "select t.kind, t.id, {columns}, {end} from ("
        " select t.id as conversation, 0 as part, null::timestamptz as at, t.id,"
        "  {head_kind} as kind, {head}, {no_row}"
        " from {conversations} t where t.user_id = %(u)s"
        " union all"
        " select t.conversation_id, 1, t.created_at, t.id, {row_kind}, {no_head}, {row_raw}"
        " from {messages} t join {conversations} h on h.id = t.conversation_id"
        " and h.user_id = %(u)s where t.user_id = %(u)s"
        " order by 1, 2, 3, 4) t").format(
        columns=columns, end=ROW_END,
        head=sql.SQL(", ").join(sql.SQL("({})::text as {}").format(v, n)
                                for v, n in zip(padded(head), heads, strict=True)),
        no_row=sql.SQL(", ").join(sql.SQL("null::{} as {}").format(sql.SQL(kind), n)
                                  for kind, n in zip(_ROW_TYPES, raw, strict=True)),
        no_head=sql.SQL(", ").join(sql.SQL("null::text") for _ in heads),
        row_raw=sql.SQL(", ").join(sql.SQL("t.{}").format(n) for n in raw),
        conversations=sql.Identifier(CONTENT_SCHEMA, "conversations"),
        messages=sql.Identifier(CONTENT_SCHEMA, "messages"),
        head_kind=sql.Literal(HEAD.decode()), row_kind=sql.Literal(ROW.decode()))


_UUIDS = re.compile(rb"(?:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})*")
"""Ids, one after the other: a batch's ids are checked at once (one regular expression over
their concatenation instead of one call per row)."""
_NUMBERS = re.compile(rb"(?:(?:-?[0-9]+(?:\.[0-9]+)?(?:e[+-]?[0-9]+)?|null)\t)*")
"""Times (seconds) and branch indexes, each followed by a tab (or NULL)."""
_TIMES = re.compile(rb"(?:[0-9]{4,}-[0-9]{2}-[0-9]{2}T[0-9:.]+(?:[+-][0-9:]+)?\t)*")
"""ISO 8601 times as ``to_json`` writes them, each followed by a tab."""


def _check_ids(ids: list[bytes]) -> None:
    if set(map(len, ids)) != {36} or not _UUIDS.fullmatch(b"".join(ids)):
        raise InvalidStoredContent("messages", "id")


def _check_values(rows: list[bytes]) -> None:
    """What goes into the archive as it is read (numbers, times) is what it should be:
    ``rows`` are message rows' fields, :data:`_FIELDS` per row."""
    numbers = rows[_CREATED::_FIELDS] + rows[_UPDATED::_FIELDS] + rows[_BRANCH::_FIELDS]
    if not _NUMBERS.fullmatch(b"\t".join(numbers) + b"\t"):
        raise InvalidStoredContent("messages", "created_at")
    if not _TIMES.fullmatch(b"\t".join(rows[_WHEN::_FIELDS]) + b"\t"):
        raise InvalidStoredContent("messages", "generation_completed_at")


def _split_rows(data: bytes, rows: int) -> tuple[list[bytes], list[bytes]]:
    """A batch of by-conversation rows (:func:`_by_conversation`) split at its tabs once:
    its fields, :data:`_FIELDS` per row (``copystream.split_rows``), and the rows' kinds,
    checked (which shows every row had its columns) with the flags (the ids by
    :func:`_check_ids`)."""
    split = split_rows(data, rows, _FIELDS)
    if split is None:
        raise InvalidStoredContent("messages", "row")
    fields, firsts = split
    if fields[0] not in (HEAD, ROW) or not set(firsts) <= _NEXT_KINDS:
        raise InvalidStoredContent("messages", "row")
    kinds = [fields[0], *(first[1:] for first in firsts)]
    firsts = fields[2::_FIELDS]
    if _FLAGGED in b"\t" + b"\t".join(firsts):
        row = next(i for i, first in enumerate(firsts) if first[:1] == _FLAG_BYTES)
        raise InvalidStoredContent("conversations" if kinds[row] == HEAD else "messages",
                                   jsonlines.flag_of(firsts[row]))
    return fields, kinds


def _branch(value: bytes) -> int:
    """A branch index as the key children are ordered by (NULL last, as SQL sorts)."""
    return 2**63 if value == _NULL_NUMBER else int(value)  # a number: _check_values


def _sections(rows: list[bytes]) -> bytes:
    """The Markdown sections of message rows (still COPY-escaped), as
    ``markdown.message_section`` writes them: one ``%`` of the rows' template."""
    count = len(rows) // _FIELDS
    pieces: list[bytes] = [b""] * (4 * count)
    pieces[0::4] = [_TITLES.get(role) or (b"None" if role == _NULL else role)
                    for role in rows[_ROLE::_FIELDS]]
    pieces[1::4] = [b"" if branch in _FIRST_BRANCH else b" (alternative %d)" % (int(branch) + 1)
                    for branch in rows[_BRANCH::_FIELDS]]
    pieces[2::4] = rows[_WHEN::_FIELDS]
    pieces[3::4] = [b"None" if content == _NULL else content
                    for content in rows[_CONTENT::_FIELDS]]
    return (_SECTION * count) % tuple(pieces)


def _children(children: list[tuple[int, bytes]] | None) -> bytes:
    """A node's ``children``: by branch, then time, then id (rows come in time order, by id
    among equal times, and the sort is stable)."""
    if not children:
        return b"[]"
    if len(children) == 1:
        return b'["%s"]' % children[0][1]
    if len(children) * 40 > MAX_CHILDREN_CHARS:
        raise InvalidStoredContent("messages", "parent_message_id")
    children.sort(key=itemgetter(0))
    return b"[" + b", ".join(b'"%s"' % child for _, child in children) + b"]"


class _Conversation:
    """The messages of one conversation, kept until its last one is read: a node of
    ``mapping`` names its children and whether its parent is in the conversation, which
    later rows tell. The rows' fields (texts as JSON strings, ``jsonlines.json_strings``)
    wait in memory up to :data:`CONVERSATION_MEMORY` bytes, beyond that in a temporary
    file; only ids stay in memory (:data:`MAX_CONVERSATION_MESSAGES`). Rows come and go a
    run of rows at a time (:data:`_FIELDS` fields each), never one by one."""

    _LENGTH = struct.Struct("<I")

    def __init__(self, row_id: bytes) -> None:
        self.id = self.current = row_id
        self.count = 0
        self._runs: list[list[bytes]] = []
        self._size = 0
        self._file: IO[bytes] | None = None
        self._ids: set[bytes] = set()
        self._children: dict[bytes, list[tuple[int, bytes]]] = {}

    def add(self, rows: list[bytes], size: int) -> None:
        """Message rows of the conversation, in time order (``size``: their bytes)."""
        ids = rows[1::_FIELDS]
        if self._size < CONVERSATION_MEMORY:
            self._runs.append(rows)
            self._size += size
        else:
            if self._file is None:
                # Closed by close() (the export's ``finally``), not by a ``with``.
                self._file = tempfile.TemporaryFile()  # noqa: SIM115
            run = b"\t".join(rows)
            self._file.write(self._LENGTH.pack(len(run)) + run)
        self._ids.update(ids)
        children_of = self._children
        for parent, branch, row_id in zip(rows[_PARENT::_FIELDS], rows[_BRANCH::_FIELDS], ids,
                                          strict=True):
            if parent:
                children_of.setdefault(parent, []).append((_branch(branch), row_id))
        self.current = ids[-1]  # the newest (rows come in time order) is current
        self.count += len(ids)
        if self.count > MAX_CONVERSATION_MESSAGES:
            raise InvalidStoredContent("messages", "conversation_id")

    def _all(self) -> Iterator[list[bytes]]:
        yield from self._runs
        if self._file is not None:
            self._file.seek(0)
            while head := self._file.read(self._LENGTH.size):
                (size,) = self._LENGTH.unpack(head)
                yield self._file.read(size).split(b"\t")

    def nodes(self) -> Iterator[bytes]:
        """The conversation's nodes, root last, ending the conversation (a piece per run
        of rows)."""
        roots: list[bytes] = []
        ids, children_of = self._ids, self._children
        for rows in self._all():
            row_ids = rows[1::_FIELDS]
            parents = rows[_PARENT::_FIELDS]
            # A row whose parent is not in the conversation hangs below the root (the
            # conversation's id).
            roots += [b'"%s"' % row_id for parent, row_id in zip(parents, row_ids, strict=True)
                      if parent not in ids]
            if len(roots) > MAX_ROOTS:
                raise InvalidStoredContent("messages", "parent_message_id")
            count = len(row_ids)
            pieces: list[bytes] = [b""] * (_NODE_FIELDS * count)
            pieces[0::_NODE_FIELDS] = row_ids
            pieces[1::_NODE_FIELDS] = row_ids
            pieces[2::_NODE_FIELDS] = [parent if parent in ids else self.id
                                       for parent in parents]
            pieces[3::_NODE_FIELDS] = [_children(children_of.get(row_id))
                                       for row_id in row_ids]
            pieces[4::_NODE_FIELDS] = row_ids
            for place, field in enumerate(range(_ROLE, _WHEN), start=5):
                pieces[place::_NODE_FIELDS] = rows[field::_FIELDS]
            yield jsonlines.nulls((_NODE * count) % tuple(pieces))
        yield _ROOT % (self.id, self.id, b", ".join(roots), self.current)
        self.close()

    def close(self) -> None:
        self._runs = []
        if self._file is not None:
            self._file.close()


class _MarkdownSpool:
    """The conversations' Markdown members, made from the same rows as conversations.json
    while it is written (a zip is written one member at a time) and added after it. In
    memory up to :data:`SPOOL_MEMORY`, beyond that in a temporary file."""

    _RECORD = struct.Struct("<cI")
    NAME, DATA, END = b"N", b"D", b"E"

    def __init__(self) -> None:
        # Closed by close() (the export's ``finally``), not by a ``with``.
        self._file = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY)  # noqa: SIM115

    def _record(self, kind: bytes, payload: bytes) -> None:
        self._file.write(self._RECORD.pack(kind, len(payload)) + payload)

    def start(self, name: str, header: bytes) -> None:
        self._record(self.NAME, name.encode())
        self._record(self.DATA, header)

    def write(self, data: bytes) -> None:
        if data:
            self._record(self.DATA, data)

    def end(self, rows: int) -> None:
        self._record(self.END, str(rows).encode())

    def records(self) -> Iterator[tuple[bytes, bytes]]:
        self._file.seek(0)
        while head := self._file.read(self._RECORD.size):
            kind, size = self._RECORD.unpack(head)
            yield kind, self._file.read(size)

    def close(self) -> None:
        self._file.close()


class _ConversationsJson:
    """``conversations.json``'s bytes, and the conversations' Markdown into ``spool``, made
    from the by-conversation rows (:func:`_by_conversation`) a batch at a time. Pure work on
    bytes: it runs on the export's threads (:func:`_off_loop`), never on the event loop."""

    def __init__(self, spool: _MarkdownSpool) -> None:
        self.spool = spool
        self.count = 0
        self.conversation: _Conversation | None = None

    def batch(self, batch: list[bytes]) -> Iterator[list[bytes]]:
        """The pieces of conversations.json a batch of rows completes, in lists of about
        :data:`FLUSH_BYTES` (a large conversation's nodes come in several)."""
        pieces = _Pieces()
        data = b"".join(batch)
        fields, kinds = _split_rows(data, len(batch))
        _check_ids(fields[1::_FIELDS])
        heads = [at for at, kind in enumerate(kinds) if kind == HEAD]
        start = 0
        for at in [*heads, len(kinds)]:
            if at > start:  # messages of the open conversation
                if self.conversation is None:
                    raise InvalidStoredContent("messages", "row")
                rows = fields[start * _FIELDS:at * _FIELDS]
                _check_values(rows)
                self.spool.write(unescape(_sections(rows)))
                # The nodes take the texts as JSON strings' insides: most rows are already.
                run = b"\t".join(rows)
                self.conversation.add(rows if jsonlines.plain(run)
                                      else jsonlines.json_strings(run).split(b"\t"), len(run))
            if at == len(kinds):
                break
            yield from self._close(pieces)
            # The head is a JSON object; the mapping and current node follow it.
            head_row = fields[at * _FIELDS:(at + 1) * _FIELDS]
            text = head_row[2]
            if not text.endswith(b"}"):
                raise InvalidStoredContent("conversations", "row")
            pieces.add(unescape((b",\n" if self.count else b"\n") + text[:-1]
                                + b', "mapping": {'))
            self.conversation = _Conversation(head_row[1])
            self.count += 1
            described: dict[str, Any] = json.loads(unescape(head_row[3]))
            self.spool.start(markdown.member_name(
                "conversations", UUID(head_row[1].decode()), described.get("title"),
                "conversation"), markdown.conversation_header(described).encode())
            start = at + 1
        yield pieces.take()

    def end(self) -> Iterator[list[bytes]]:
        """The last conversation's nodes and the end of the list."""
        pieces = _Pieces()
        yield from self._close(pieces)
        pieces.add(b"\n]\n")
        yield pieces.take()

    def _close(self, pieces: _Pieces) -> Iterator[list[bytes]]:
        """The open conversation's nodes, the Markdown's end of it."""
        conversation, self.conversation = self.conversation, None
        if conversation is None:
            return
        self.spool.end(conversation.count)
        for piece in conversation.nodes():
            pieces.add(piece)
            if pieces.size >= FLUSH_BYTES:
                yield pieces.take()

    def close(self) -> None:
        if self.conversation is not None:
            self.conversation.close()


class _Pieces:
    """Bytes made for a member, handed to the event loop a list at a time."""

    def __init__(self) -> None:
        self.items: list[bytes] = []
        self.size = 0

    def add(self, piece: bytes) -> None:
        self.items.append(piece)
        self.size += len(piece)

    def take(self) -> list[bytes]:
        items, self.items, self.size = self.items, [], 0
        return items


async def _off_loop(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` on the export's threads. A thread cannot be stopped: when the export
    is cancelled meanwhile (its deadline, the client gone), the call is waited for before
    the cancellation goes on, so nothing it writes to (a spool) is closed under it."""
    future = asyncio.get_running_loop().run_in_executor(EXPORT_THREADS.pool, fn, *args)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        await asyncio.wait([future])
        raise


async def _written(member: Member, archive: _Archive,
                   made: Iterator[list[bytes]]) -> AsyncIterator[bytes]:
    """Write what ``made`` makes (on the export's threads) into ``member``, sending the
    archive's bytes as they are ready."""
    while (pieces := await _off_loop(next, made, None)) is not None:
        for piece in pieces:
            member.write(piece)
        if chunk := await archive.ready():
            yield chunk


async def _conversations_and_markdown(conn: Conn, archive: _Archive,
                                      specs: dict[str, dict[str, ColumnSpec]],
                                      user_id: str) -> AsyncIterator[bytes]:
    """``conversations.json`` and the conversations' Markdown, from one read of the messages
    by conversation and time."""
    head = _conversation_head(specs["conversations"])
    text_head = _text_query("conversations", specs["conversations"], ("title", "model"))
    row, row_query = _node(specs["messages"])
    # The flag of the first value names any over-limit value of the row: the text head's
    # values are the head's.
    statement = _by_conversation(
        [_flagged(head.overs, sql.SQL("{}::text").format(_object(head.fields))),
         sql.SQL("{}::text").format(_object(text_head.fields))],
        [_flagged(row_query.overs, row[0]), *row[1:]])
    row_chars = max(head.row_chars + text_head.row_chars, row_query.row_chars)
    member = archive.zip.open("conversations.json")
    member.write(b"[")
    spool = _MarkdownSpool()
    made = _ConversationsJson(spool)
    try:
        async with aclosing(batches(conn, statement, {"u": user_id}, table="messages",
                                    row_chars=row_chars)) as stream:
            async for batch in stream:
                async for chunk in _written(member, archive, made.batch(batch)):
                    yield chunk
        async for chunk in _written(member, archive, made.end()):
            yield chunk
        archive.done("conversations.json", member.close(), made.count)
        records = spool.records()
        markdown_member: Member | None = None
        name = ""
        while read := await _off_loop(_some, records, FLUSH_BYTES):
            for kind, payload in read:
                if kind == spool.NAME:
                    name = payload.decode()
                    markdown_member = archive.zip.open(name)
                elif kind == spool.DATA:
                    assert markdown_member is not None  # a member's records start with NAME
                    markdown_member.write(payload)
                else:
                    assert markdown_member is not None
                    archive.done(name, markdown_member.close(), int(payload))
            if chunk := await archive.ready():
                yield chunk
    finally:
        spool.close()
        made.close()


def _some(records: Iterator[tuple[bytes, bytes]],
          size: int) -> list[tuple[bytes, bytes]]:
    """The next records, about ``size`` bytes of them (none at the end)."""
    taken: list[tuple[bytes, bytes]] = []
    for record in records:
        taken.append(record)
        size -= len(record[1]) + 1
        if size <= 0:
            break
    return taken


# --- markdown ----------------------------------------------------------------------------


async def _note_markdown(conn: Conn, archive: _Archive,
                         specs: dict[str, dict[str, ColumnSpec]],
                         user_id: str) -> AsyncIterator[bytes]:
    notes = _text_query("notes", specs["notes"], ("title", "content"))
    statement = _in_id_order("notes", notes)
    async with aclosing(batches(conn, statement, {"u": user_id}, table="notes",
                                row_chars=notes.row_chars)) as stream:
        async for batch in stream:
            for name, document in await _off_loop(_note_documents, batch):
                archive.add(name, document, 1)
                if chunk := await archive.ready():
                    yield chunk


def _note_documents(batch: list[bytes]) -> list[tuple[str, bytes]]:
    """Each note's Markdown member: its name and bytes."""
    documents = []
    for row in batch:
        if not row.startswith(b"{"):
            raise InvalidStoredContent("notes", jsonlines.flag_of(row))
        data = json.loads(unescape(row))
        documents.append((markdown.member_name("notes", UUID(str(data.get("id"))),
                                               data.get("title"), "note"),
                          markdown.note_document(data).encode()))
    return documents


def _text_query(table: str, specs: dict[str, ColumnSpec], names: tuple[str, ...]) -> PageQuery:
    fields: list[tuple[str, sql.Composable]] = [("id", column("id")),
                                                ("created_at", column("created_at"))]
    overs: list[tuple[str, sql.Composable]] = []
    for name in names:
        value, over = _bounded(specs[name])
        fields.append((name, value))
        overs.extend(over)
    return PageQuery(table, tuple(fields), tuple(overs),
                     sum(json_chars(specs[n]) for n in names) + 1024)
