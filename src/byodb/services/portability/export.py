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
3. ``conversations.json`` in ChatGPT's layout, then ``markdown/…`` — left out when only the
   tables are asked for (:class:`Contents`).
4. ``manifest.json`` last: it lists every other member with its rows and SHA-256.

An export that fails once bytes have left (its deadline, the database, a stored value
beyond the API's limits) cannot become an HTTP error any more. It ends instead with
:data:`INCOMPLETE_MEMBER`, a text saying that the export is incomplete and why (byodb's own
words: never a server's message), and without ``manifest.json``: no tool mistakes it for a
whole export. The log names the user (escaped) and the cause.

Each member is one streamed ``COPY (SELECT …) TO STDOUT`` (``portability.copystream``): the
database makes the text (a row's JSON, a node's values, a message's Markdown), every value
bounded on the server and every row's length checked here (``portability.pages``), and the
bytes go into the archive without being parsed again. Bytes leave as soon as a quarter
megabyte of the archive is ready, so memory stays flat however large the export is.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, cast
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
from byodb.services.portability import markdown
from byodb.services.portability.columns import (
    ColumnSpec,
    content_tables,
    json_chars,
    present_columns,
    stored_specs,
)
from byodb.services.portability.copystream import batches, unescape
from byodb.services.portability.pages import (
    Conn,
    PageQuery,
    column,
    over_of,
    value_of,
)
from byodb.services.portability.zipstream import Member, MemberStats, ZipStream
from byodb.services.rows import InvalidStoredContent

log = logging.getLogger(__name__)

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
    async for chunk in _conversations_json(conn, archive, by_name, user_id):
        yield chunk
    async for chunk in _markdown(conn, archive, by_name, user_id):
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
    statement = _in_id_order(table, _flagged(query.overs, sql.SQL("{}::text").format(
        _object(query.fields))))
    count = 0
    async with aclosing(batches(conn, statement, {"u": user_id}, table=table,
                                row_chars=query.row_chars)) as stream:
        async for batch in stream:
            for row in batch:
                if not row.startswith(b"{"):
                    raise InvalidStoredContent(table, _flag_of(row))
            data = unescape(b"".join(batch))
            if members:
                data = b"".join(_with_member_paths(line, members)
                                for line in data.split(b"\n")[:-1])
            member.write(data)
            count += len(batch)
            if chunk := await archive.ready():
                yield chunk
    archive.done(name, member.close(), count)


def _in_id_order(table: str, value: sql.Composable) -> sql.Composed:
    """``value`` of each of the user's rows (alias ``t``), by id. Only the ids are sorted;
    each row is then read by its key and its text made as it is sent (``offset 0`` keeps
    that from being done before the sort): the first rows leave at once and the database
    builds JSON while this process writes, instead of sorting every row's JSON first."""
    return sql.SQL(
        "select x.e from (select k.id from {real} k where k.user_id = %(u)s) k"
        " cross join lateral (select {value} as e from {real} t"
        "  where t.id = k.id and t.user_id = %(u)s offset 0) x order by k.id").format(
        value=value, real=sql.Identifier(CONTENT_SCHEMA, table))


FLAG = "!"
"""First character of a row that names a column over its limit instead of a value (no JSON
object, kind or id starts with it)."""
FLAG_BYTES = FLAG.encode()


def _flagged(overs: tuple[tuple[str, sql.Composable], ...],
             value: sql.Composable) -> sql.Composable:
    """``value``, or ``!<column>`` when a value of the row is over its limit: the value
    never crosses the wire, and the reader refuses the row naming the column."""
    if not overs:
        return value
    whens = sql.SQL(" ").join(sql.SQL("when {} then {}").format(over, sql.Literal(FLAG + name))
                              for name, over in overs)
    return sql.SQL("case {} else {} end").format(whens, value)


def _flag_of(row: bytes) -> str:
    """The column a refused row names (see :func:`_flagged`), else the whole row."""
    if row.startswith(FLAG_BYTES):
        return row[1:].split(b"\t", 1)[0].strip().decode(errors="replace")[:64] or "row"
    return "row"


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
    """The columns of a message's node in ``mapping`` (see :data:`_NODE`), each a JSON value
    as PostgreSQL writes it; its parent and children come from the sorted keys
    (:data:`_NODE_CARRIED`). The node's JSON is put together here: a template filled per row
    costs less than the database's nested ``json_build_object``, and the database is the
    slower of the two."""
    values: dict[str, sql.Composable] = {}
    overs: list[tuple[str, sql.Composable]] = []
    for name in ("role", "content", "model", "status"):
        value, over = _bounded(specs[name])
        values[name] = value
        overs.extend(over)
    as_json = [sql.SQL("coalesce(pg_catalog.to_json({})::text, 'null')").format(v) for v in (
        values["role"], values["content"], sql.SQL(_EPOCH).format(column("created_at")),
        sql.SQL(_EPOCH).format(column("updated_at")), values["model"], values["status"],
        column("branch_index"))]
    columns = [sql.SQL("s.root"), sql.SQL("s.parent"), sql.SQL("s.children"), *as_json]
    chars = (sum(json_chars(specs[n]) for n in ("content", "role", "model", "status"))
             + MAX_CHILDREN_CHARS + 1024)
    return columns, PageQuery("messages", (), tuple(overs), chars)


_NODE_CARRIED = (
    # Whether the message has no parent in the conversation: it hangs below the root.
    ("root", sql.SQL("case when p.id is null then 't' else 'f' end")),
    ("parent", sql.SQL("coalesce(p.id, t.conversation_id)")),
    ("children", sql.SQL("coalesce(k.children, '[]'::json)")))
"""What a node takes from the joins of :func:`_conversations_json` (``p``, ``k``)."""


_NODE = (b'"%s": {"id" : "%s", "parent" : "%s", "children" : %s, "message" : {"id" : "%s",'
         b' "author" : {"role" : %s}, "content" : {"content_type" : "text", "parts" : [%s]},'
         b' "create_time" : %s, "update_time" : %s, "status" : "finished_successfully",'
         b' "metadata" : {"model_slug" : %s, "byodb_status" : %s, "byodb_branch_index" : %s}}}, ')
"""A node of ``mapping`` with its key, as ``json_build_object`` would write it."""
_NODE_FIELDS = 12
"""kind, id, root flag, parent, children, role, content, create and update time, model,
status, branch index."""


HEAD, ROW = b"0", b"1"
"""First field of a row of a by-conversation stream (see :func:`_by_conversation`)."""


def _by_conversation(head: list[sql.Composable], row: list[sql.Composable], *,
                     joins: sql.Composable = sql.SQL(""),
                     carried: tuple[tuple[str, sql.Composable], ...] = ()) -> sql.Composed:
    """Every listed conversation (alias ``t``, row ``0, id, *head``) followed by its
    messages (alias ``t``, row ``1, id, *row``) in time order: one stream for all
    conversations, in COPY's columns (the shorter list padded with empty texts). Messages of
    no listed conversation (only a database changed by hand has them) are left out.

    Only the keys (and ``carried``: small values of a message's ``joins``, named ``s.<name>``
    in ``row``) are sorted; each row's text is made after the sort from the row read by its
    key (``offset 0`` keeps it there), so the first rows leave at once and the database
    builds text while this process writes."""
    width = max(len(head), len(row))
    names = [sql.Identifier(f"c{i}") for i in range(width)]

    def padded(values: list[sql.Composable]) -> sql.Composable:
        values = values + [sql.SQL("''")] * (width - len(values))
        return sql.SQL(", ").join(sql.SQL("({})::text as {}").format(v, n)
                                  for v, n in zip(values, names, strict=True))

    conversations = sql.Identifier(CONTENT_SCHEMA, "conversations")
    messages = sql.Identifier(CONTENT_SCHEMA, "messages")
    carried_names = [sql.Identifier(name) for name, _ in carried]
    return sql.SQL(
        "select s.kind, s.id, {columns} from ("
        " select t.id as conversation, 0 as part, null::timestamptz as at, t.id,"
        "  {head_kind} as kind{head_carried}"
        " from {conversations} t where t.user_id = %(u)s"
        " union all"
        " select t.conversation_id, 1, t.created_at, t.id, {row_kind}{row_carried}"
        " from {messages} t join {conversations} h on h.id = t.conversation_id"
        " and h.user_id = %(u)s {joins} where t.user_id = %(u)s"
        " order by 1, 2, 3, 4) s"
        " cross join lateral ("
        "  select {head} from {conversations} t"
        "  where s.part = 0 and t.id = s.id and t.user_id = %(u)s"
        "  union all"
        "  select {row} from {messages} t"
        "  where s.part = 1 and t.id = s.id and t.user_id = %(u)s"
        "  offset 0) x"
        " order by s.conversation, s.part, s.at, s.id").format(
        columns=sql.SQL(", ").join(sql.SQL("x.{}").format(n) for n in names),
        head=padded(head), row=padded(row), joins=joins, conversations=conversations,
        head_kind=sql.Literal(HEAD.decode()), row_kind=sql.Literal(ROW.decode()),
        messages=messages,
        head_carried=sql.SQL("").join(sql.SQL(", null::text as {}").format(n)
                                      for n in carried_names),
        row_carried=sql.SQL("").join(sql.SQL(", ({})::text as {}").format(v, n)
                                     for (_, v), n in zip(carried, carried_names,
                                                          strict=True)))


_UUIDS = re.compile(rb"(?:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})*")
"""Ids, one after the other: a batch's ids are checked at once (one regular expression over
their concatenation instead of one call per row)."""


def _check_ids(ids: list[bytes]) -> None:
    if not _UUIDS.fullmatch(b"".join(ids)):
        raise InvalidStoredContent("messages", "id")


def _fields(row: bytes, width: int) -> list[bytes]:
    """The ``width`` fields of a by-conversation row (kind, id, …; the last without its
    newline), checked (the id is 36 characters here; that they are UUIDs is checked a batch
    at a time, :func:`_check_ids`)."""
    fields = row[:-1].split(b"\t")
    if len(fields) != width or len(fields[1]) != 36 or fields[0] not in (HEAD, ROW):
        raise InvalidStoredContent("messages", "row")
    if fields[2][:1] == FLAG_BYTES:
        raise InvalidStoredContent("conversations" if fields[0] == HEAD else "messages",
                                   _flag_of(fields[2]))
    return fields


async def _conversations_json(conn: Conn, archive: _Archive,
                              specs: dict[str, dict[str, ColumnSpec]],
                              user_id: str) -> AsyncIterator[bytes]:
    head = _conversation_head(specs["conversations"])
    node, lines = _node(specs["messages"])
    messages = sql.Identifier(CONTENT_SCHEMA, "messages")
    # The parent (when it is in the same conversation) and the children of every message
    # are joined, the children grouped once for all messages: no query per node.
    joins = sql.SQL(
        " left join {m} p on p.id = t.parent_message_id and p.user_id = %(u)s"
        " and p.conversation_id = t.conversation_id"
        " left join (select c.parent_message_id as parent, c.conversation_id,"
        "  pg_catalog.json_agg(c.id order by c.branch_index, c.created_at, c.id) as children"
        "  from {m} c where c.user_id = %(u)s and c.parent_message_id is not null"
        "  group by c.parent_message_id, c.conversation_id) k"
        " on k.parent = t.id and k.conversation_id = t.conversation_id").format(m=messages)
    statement = _by_conversation(
        [_flagged(head.overs, sql.SQL("{}::text").format(_object(head.fields)))],
        [_flagged(lines.overs, node[0]), *node[1:]], joins=joins, carried=_NODE_CARRIED)
    member = archive.zip.open("conversations.json")
    member.write(b"[")
    count = 0
    roots: list[bytes] = []
    conversation = current = b""

    def end() -> bytes:
        return (b'"%s": {"id": "%s", "parent": null, "children": [%s], "message": null}}, '
                b'"current_node": "%s"}' % (conversation, conversation, b", ".join(roots),
                                            current))

    async with aclosing(batches(conn, statement, {"u": user_id}, table="messages",
                                row_chars=lines.row_chars)) as stream:
        async for batch in stream:
            out: list[bytes] = []
            ids: list[bytes] = []
            for line in batch:
                fields = _fields(line, _NODE_FIELDS)
                kind, row_id = fields[0], fields[1]
                ids.append(row_id)
                if kind == ROW:
                    # Messages with no parent in the conversation hang below the root node
                    # (whose id is the conversation's); the newest (the last) is current.
                    out.append(_NODE % (row_id, row_id, *fields[3:5], row_id, *fields[5:]))
                    if fields[2] == b"t":
                        roots.append(b'"%s"' % row_id)
                        if len(roots) > MAX_ROOTS:
                            raise InvalidStoredContent("messages", "parent_message_id")
                    current = row_id
                    continue
                if conversation:
                    out.append(end())
                # The header is a JSON object; the mapping and current node are appended to it.
                text = fields[2]
                if not text.endswith(b"}"):
                    raise InvalidStoredContent("conversations", "row")
                out.append((b",\n" if count else b"\n") + text[:-1] + b', "mapping": {')
                conversation = current = row_id
                roots = []
                count += 1
            _check_ids(ids)
            member.write(unescape(b"".join(out)))
            if chunk := await archive.ready():
                yield chunk
    if conversation:
        member.write(end())
    member.write(b"\n]\n")
    archive.done("conversations.json", member.close(), count)


# --- markdown ----------------------------------------------------------------------------

_SECTION = (
    "E'\\n## ' || case {role} {titles} else coalesce({role}, 'None') end"
    " || case when coalesce(t.branch_index, 0) <> 0"
    " then ' (alternative ' || (t.branch_index + 1) || ')' else '' end"
    " || ' · ' || (pg_catalog.to_json(coalesce(t.generation_completed_at, t.created_at))"
    " #>> '{{}}')"
    " || E'\\n\\n' || coalesce({content}, 'None') || E'\\n'")


def _section(specs: dict[str, ColumnSpec]) -> tuple[sql.Composable, PageQuery]:
    """A message's Markdown (as ``markdown.message_section`` writes it), made by the
    database: the text goes into the archive as it arrives."""
    role, role_over = _bounded(specs["role"])
    content, content_over = _bounded(specs["content"])
    titles = sql.SQL(" ").join(sql.SQL("when {} then {}").format(sql.Literal(k), sql.Literal(v))
                               for k, v in markdown.ROLE_TITLES.items())
    text_ = sql.SQL(_SECTION).format(role=role, content=content, titles=titles)
    chars = json_chars(specs["role"]) + json_chars(specs["content"]) + 1024
    return text_, PageQuery("messages", (), role_over + content_over, chars)


async def _markdown(conn: Conn, archive: _Archive, specs: dict[str, dict[str, ColumnSpec]],
                    user_id: str) -> AsyncIterator[bytes]:
    head = _text_query("conversations", specs["conversations"], ("title", "model"))
    section, lines = _section(specs["messages"])
    statement = _by_conversation(
        [_flagged(head.overs, sql.SQL("{}::text").format(_object(head.fields)))],
        [_flagged(lines.overs, section)])
    member: Member | None = None
    name, count = "", 0
    async with aclosing(batches(conn, statement, {"u": user_id}, table="messages",
                                row_chars=max(lines.row_chars, head.row_chars))) as stream:
        async for batch in stream:
            out: list[bytes] = []
            for line in batch:
                kind, row_id, text = _fields(line, 3)
                if kind == ROW and member is not None:
                    out.append(text)
                    count += 1
                    continue
                if member is not None:
                    member.write(unescape(b"".join(out)))
                    out = []
                    archive.done(name, member.close(), count)
                conversation: dict[str, Any] = json.loads(unescape(text))
                name = markdown.member_name("conversations", UUID(row_id.decode()),
                                            conversation.get("title"), "conversation")
                member, count = archive.zip.open(name), 0
                member.write(markdown.conversation_header(conversation).encode())
            if member is not None:
                member.write(unescape(b"".join(out)))
            if chunk := await archive.ready():
                yield chunk
    if member is not None:
        archive.done(name, member.close(), count)
    notes = _text_query("notes", specs["notes"], ("title", "content"))
    statement = _in_id_order("notes", _flagged(notes.overs, sql.SQL("{}::text").format(
        _object(notes.fields))))
    async with aclosing(batches(conn, statement, {"u": user_id}, table="notes",
                                row_chars=notes.row_chars)) as stream:
        async for batch in stream:
            for row in batch:
                if not row.startswith(b"{"):
                    raise InvalidStoredContent("notes", _flag_of(row))
                data = json.loads(unescape(row))
                archive.add(markdown.member_name("notes", UUID(str(data.get("id"))),
                                                 data.get("title"), "note"),
                            markdown.note_document(data).encode(), 1)
                if chunk := await archive.ready():
                    yield chunk


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
