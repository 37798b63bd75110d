"""Generic content resources: one declarative :class:`Resource` per table gives create, list,
get, update and delete, scoped to the signed-in user and identical on main and on a user's
own database (every call goes through ``Router.connect``).

Decision order of every write, implemented in exactly this order, failing closed:

1. **Fields.** A field the spec does not allow → ``invalid_input``; then each value against
   its rule (type, null, enum, text / JSON / bytes limits, integer range); on create, the
   spec's defaults fill in and a missing required field → ``invalid_input``.
2. **Ownership.** The owner in the URL (a child's parent) and every other parent the values
   name must be the user's rows, else ``not_found`` — the same answer whether the row does
   not exist or belongs to someone else, so ids of others cannot be probed. Columns a
   parent dictates (a bookmark's conversation is its message's) are copied from it.
3. **Uniqueness** (names unique per user, ignoring case) → ``conflict``.
4. **The write**, with what the server keeps: ``updated_at``, state stamps (a task's
   ``completed_at``), appended positions, a flag only one row may hold, values only the
   server sets (a memory's ``source``), the embedding of an embedded text (computed before
   the transaction: no connection waits on the model).
5. **Activity events**, in the same transaction, so an event exists exactly when the
   change does.

Constraint violations the checks above cannot see (a concurrent delete of a parent, a
duplicate pair) are mapped to the same typed errors; the database's message is never
echoed, because it holds the offending values.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import math
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Float,
    Integer,
    LargeBinary,
    Numeric,
    Select,
    Table,
    Uuid,
    delete,
    func,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from byodb.assistant.embeddings import EmbeddingModel, embed_texts, is_zero
from byodb.content.limits import (
    MAX_INLINE_BYTES,
    MAX_INTEGER,
    MAX_JSON_BYTES,
    MAX_LIST_LIMIT,
    MAX_LIST_OFFSET,
    STORED_FIELD_LIMITS,
    text_limit,
)
from byodb.errors import Conflict, InvalidInput, NotFound
from byodb.ids import new_id
from byodb.routing import Router
from byodb.services.activity import record_event
from byodb.services.embedding_stamp import embedding_stamp
from byodb.services.rows import Reader, json_text_bytes, public_columns

# --- the declarative spec ----------------------------------------------------------------


@dataclass(frozen=True)
class Parent:
    """A column holding the id of another of the user's rows, checked on every write.

    ``inherit`` maps a column of ours to a column of the parent's row that we copy (a
    bookmark's ``conversation_id`` is its message's); a different value given by the
    caller is refused.
    """

    column: str
    table: Table
    label: str
    inherit: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Stamp:
    """A time the server keeps from a state: set when ``column`` becomes ``value`` (kept if
    it already was), cleared when it leaves it; ``event`` is recorded on entering."""

    column: str
    value: object
    stamp: str
    event: str | None = None


@dataclass(frozen=True)
class Order:
    column: str
    descending: bool = False
    nulls_last: bool = False
    otherwise: str | None = None  # the column whose value counts where ``column`` is null


@dataclass(frozen=True)
class Resource:
    """What a client may do with one content table."""

    label: str  # singular snake_case: error texts, event types, route names
    table: Table
    doc: str = ""
    create: tuple[str, ...] = ()  # fields a client may set when creating
    update: tuple[str, ...] = ()  # fields a client may change
    defaults: Mapping[str, Any] = field(default_factory=dict)
    enums: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    owner: Parent | None = None  # the parent a child row lives under (in the URL)
    parents: tuple[Parent, ...] = ()  # other parents the values may name
    key: str = "id"  # the column that names one row within its owner
    filters: Mapping[str, str] = field(default_factory=dict)  # query name -> column
    filter_defaults: Mapping[str, Any] = field(default_factory=dict)
    order: tuple[Order, ...] = (Order("created_at", descending=True),)
    unique: tuple[str, ...] = ()  # text columns unique per user (and owner), ignoring case
    stamps: tuple[Stamp, ...] = ()
    exclusive: str | None = None  # a flag at most one of the user's rows holds
    position: str | None = None  # an ordering column appended at the end when not given
    optional: tuple[str, ...] = ()  # required columns that ``prepare`` may fill
    activity: bool = False  # record <label>.created and <label>.deleted
    prepare: Callable[[dict[str, Any]], None] | None = None  # last look at create values
    conflict: str = "this already exists"
    trimmed: tuple[str, ...] = ()  # text stored trimmed; empty becomes null where allowed
    limits: Mapping[str, int] = field(default_factory=dict)  # text: characters a write takes
    ranges: Mapping[str, tuple[float, float]] = field(default_factory=dict)  # numbers
    fixed: Mapping[str, Any] = field(default_factory=dict)  # set by the server on create
    embedded: str | None = None  # a text stored with its embedding (``embedding``)
    bytes_when_got: bool = True  # a fetched row shows its bytes (as base64)
    plural: str = ""  # the label's plural, when it is not the label and "s"

    @property
    def human(self) -> str:
        return self.label.replace("_", " ")

    @property
    def humans(self) -> str:
        return (self.plural or f"{self.label}s").replace("_", " ")

    def column(self, name: str) -> Column[Any]:
        return self.table.c[name]

    @functools.cached_property
    def order_by(self) -> tuple[Any, ...]:
        """The listing's ORDER BY clauses (the id last, so pages are stable); built once."""
        clauses = []
        for item in (*self.order, Order("id", descending=True)):
            key: Any = self.column(item.column) if item.otherwise is None \
                else func.coalesce(self.column(item.column), self.column(item.otherwise))
            clause = key.desc() if item.descending else key.asc()
            clauses.append(clause.nulls_last() if item.nulls_last else clause)
        return tuple(clauses)


# --- field rules: shared by the services' checks and the API's request models -----------


@dataclass(frozen=True)
class FieldRule:
    """How one field of a resource is checked (and documented in OpenAPI)."""

    name: str
    kind: str  # text | bool | int | datetime | uuid | json | bytes | number
    nullable: bool
    required: bool
    default: Any = None
    choices: tuple[str, ...] | None = None
    max_length: int | None = None  # characters of text, bytes of JSON / binary
    minimum: float | None = None
    maximum: float | None = None

    def check(self, value: Any) -> Any:
        """The value as stored, or :class:`InvalidInput` saying what is wrong."""
        if value is None:
            if not self.nullable:
                raise InvalidInput(f"{self.name}: must not be null")
            return None
        checker = _CHECKS[self.kind]
        return checker(self, value)


def _check_text(rule: FieldRule, value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidInput(f"{rule.name}: must be a string")
    if rule.choices is not None and value not in rule.choices:
        raise InvalidInput(f"{rule.name}: must be one of {', '.join(rule.choices)}")
    if rule.max_length is not None and len(value) > rule.max_length:
        raise InvalidInput(f"{rule.name}: longer than {rule.max_length} characters")
    if rule.required and not value.strip():
        raise InvalidInput(f"{rule.name}: must not be empty")
    return value


def _check_bool(rule: FieldRule, value: Any) -> bool:
    if not isinstance(value, bool):
        raise InvalidInput(f"{rule.name}: must be true or false")
    return value


def _check_int(rule: FieldRule, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"{rule.name}: must be an integer")
    if (rule.minimum is not None and value < rule.minimum) or (
            rule.maximum is not None and value > rule.maximum):
        raise InvalidInput(f"{rule.name}: must be between {rule.minimum} and {rule.maximum}")
    return value


def _check_datetime(rule: FieldRule, value: Any) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise InvalidInput(f"{rule.name}: must be a date-time with a time zone")
    return value


def _check_uuid(rule: FieldRule, value: Any) -> UUID:
    if isinstance(value, UUID):
        return value
    try:
        return UUID(str(value))
    except ValueError:
        raise InvalidInput(f"{rule.name}: must be an id (UUID)") from None


def _check_json(rule: FieldRule, value: Any) -> Any:
    try:
        # Measured as the database prints it back, so every accepted value reads back.
        size = json_text_bytes(value)
    except (TypeError, ValueError):
        raise InvalidInput(f"{rule.name}: must be JSON") from None
    if rule.max_length is not None and size > rule.max_length:
        raise InvalidInput(f"{rule.name}: larger than {rule.max_length} bytes")
    return value


def _check_bytes(rule: FieldRule, value: Any) -> bytes:
    """Bytes travel as base64 in JSON; direct callers may pass ``bytes``."""
    if isinstance(value, str):
        try:
            value = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidInput(f"{rule.name}: must be base64") from None
    if not isinstance(value, bytes):
        raise InvalidInput(f"{rule.name}: must be base64")
    if rule.max_length is not None and len(value) > rule.max_length:
        raise InvalidInput(f"{rule.name}: larger than {rule.max_length} bytes")
    return value


def _check_number(rule: FieldRule, value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float) \
            or not math.isfinite(value):
        raise InvalidInput(f"{rule.name}: must be a number")
    if (rule.minimum is not None and value < rule.minimum) or (
            rule.maximum is not None and value > rule.maximum):
        raise InvalidInput(f"{rule.name}: must be between {rule.minimum:g} and "
                           f"{rule.maximum:g}")
    return value


_CHECKS: dict[str, Callable[[FieldRule, Any], Any]] = {
    "text": _check_text, "bool": _check_bool, "int": _check_int,
    "datetime": _check_datetime, "uuid": _check_uuid, "json": _check_json,
    "bytes": _check_bytes, "number": _check_number,
}


def _kind(column: Column[Any]) -> str:
    type_ = column.type
    # Text (and anything not listed) is checked as text.
    for sql_type, kind in ((Boolean, "bool"), (Integer, "int"), (DateTime, "datetime"),
                           (Uuid, "uuid"), (JSONB, "json"), (LargeBinary, "bytes"),
                           (Numeric, "number"), (Float, "number")):
        if isinstance(type_, sql_type):
            return kind
    return "text"


def field_rule(res: Resource, name: str) -> FieldRule:
    column = res.column(name)
    kind = _kind(column)
    has_default = (name in res.defaults or column.server_default is not None
                   or name in (res.position, *res.optional))
    max_length = {"text": text_limit(name), "json": MAX_JSON_BYTES,
                  "bytes": MAX_INLINE_BYTES}.get(kind)
    if max_length is not None:
        max_length = res.limits.get(name, STORED_FIELD_LIMITS.get((res.table.name, name),
                                                                  max_length))
    bounds: tuple[float | None, float | None] = (
        (0, MAX_INTEGER) if kind == "int" else res.ranges.get(name, (None, None)))
    return FieldRule(
        name=name, kind=kind, nullable=bool(column.nullable),
        required=not column.nullable and not has_default,
        default=res.defaults.get(name), choices=res.enums.get(name),
        max_length=max_length, minimum=bounds[0], maximum=bounds[1],
    )


def _clean(res: Resource, values: Mapping[str, Any], *, creating: bool) -> dict[str, Any]:
    allowed = res.create if creating else res.update
    unknown = sorted(set(values) - set(allowed))
    if unknown:
        verb = "set" if creating else "changed"
        raise InvalidInput(f"{', '.join(unknown)}: cannot be {verb} on a {res.human}")
    cleaned = {name: field_rule(res, name).check(_trimmed(res, name, value))
               for name, value in values.items()}
    if creating:
        for name, default in res.defaults.items():
            cleaned.setdefault(name, default)
        missing = [n for n in res.create if field_rule(res, n).required and n not in cleaned]
        if missing:
            raise InvalidInput(f"{missing[0]}: field required")
    return cleaned


def _trimmed(res: Resource, name: str, value: Any) -> Any:
    """Unique names are stored trimmed, so "Work" and "Work " are one name; so are the
    ``trimmed`` fields, where nothing left means null (if null is a value)."""
    if not isinstance(value, str) or name not in (*res.unique, *res.trimmed):
        return value
    value = value.strip()
    if not value and name in res.trimmed and res.column(name).nullable:
        return None
    return value


async def _embedding_values(router: Router, user_id: str, res: Resource,
                            values: Mapping[str, Any],
                            embedder: EmbeddingModel | None) -> dict[str, Any]:
    """The embedding of ``res.embedded`` among ``values`` and the model's name, or nothing
    when the text is not written. NULL for a text without features: a zero vector has no
    cosine distance and the HNSW index skips it anyway."""
    if res.embedded is None or res.embedded not in values:
        return {}
    if embedder is None:
        raise TypeError(f"writing a {res.human} needs the embedding model")
    vector = (await embed_texts(embedder, [values[res.embedded]]))[0]
    embedding = None if is_zero(vector) else vector
    stamp = await embedding_stamp(router, user_id, res.table, embedder)
    return {"embedding": embedding, **stamp.next_to(embedding)}


# --- transactions and ownership ------------------------------------------------------------

_SQLSTATE_ERRORS: dict[str, Callable[[str], Exception]] = {
    "23505": Conflict,  # unique_violation: the message is the caller's conflict sentence
    "23503": lambda _: NotFound("something this refers to no longer exists"),
    "23514": lambda _: InvalidInput("a value is out of the allowed range"),
    "23502": lambda _: InvalidInput("a required field is missing"),
}


@asynccontextmanager
async def content_transaction(router: Router, user_id: str, table: Table, *,
                              conflict: str = "this already exists", file_bytes: bool = False
                              ) -> AsyncIterator[AsyncConnection]:
    """``Router.connect`` with constraint violations turned into typed errors."""
    try:
        async with router.connect(user_id, table, file_bytes=file_bytes) as conn:
            yield conn
    except IntegrityError as exc:
        state = getattr(exc.orig, "sqlstate", None) or ""
        make = _SQLSTATE_ERRORS.get(state)
        if make is None:
            raise
        raise make(conflict) from None


async def fetch_owned(conn: AsyncConnection, user_id: str, parent: Parent,
                      row_id: Any) -> dict[str, Any]:
    """The parent row's inherited columns, or ``not_found`` if it is not the user's."""
    columns = [parent.table.c.id, *(parent.table.c[c] for c in parent.inherit.values())]
    row = (await conn.execute(
        select(*columns).where(parent.table.c.id == row_id,
                               parent.table.c.user_id == user_id))).first()
    if row is None:
        raise NotFound(f"{parent.label.replace('_', ' ')} not found")
    return dict(row._mapping)


async def _check_parents(conn: AsyncConnection, user_id: str, res: Resource,
                         values: dict[str, Any]) -> None:
    for parent in res.parents:
        if values.get(parent.column) is None:
            continue
        row = await fetch_owned(conn, user_id, parent, values[parent.column])
        for ours, theirs in parent.inherit.items():
            given = values.get(ours)
            if given is not None and given != row[theirs]:
                raise InvalidInput(f"{parent.column}: does not belong to the given {ours}")
            values[ours] = row[theirs]


def _lock_key(user_id: str, table: Table) -> int:
    digest = hashlib.sha256(f"byodb-unique:{table.name}:{user_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


async def _check_unique(conn: AsyncConnection, user_id: str, res: Resource,
                        values: Mapping[str, Any], *, owner_id: Any,
                        exclude: Any = None) -> None:
    names = [n for n in res.unique if values.get(n) is not None]
    if not names:
        return
    # Serialise this user's writes to the table so two concurrent creates cannot both
    # pass the check (there is no unique index on lower(name) in schema version 1).
    await conn.execute(select(func.pg_advisory_xact_lock(_lock_key(user_id, res.table))))
    for name in names:
        query = _scoped(res, select(res.table.c.id), user_id, owner_id).where(
            func.lower(res.column(name)) == values[name].lower())
        if exclude is not None:
            query = query.where(res.table.c.id != exclude)
        if (await conn.execute(query.limit(1))).first() is not None:
            raise Conflict(res.conflict)


def _scoped(res: Resource, query: Any, user_id: str, owner_id: Any) -> Any:
    query = query.where(res.table.c.user_id == user_id)
    if res.owner is not None:
        query = query.where(res.column(res.owner.column) == owner_id)
    return query


async def _clear_exclusive(conn: AsyncConnection, user_id: str, res: Resource,
                           owner_id: Any, keep: Any) -> None:
    assert res.exclusive is not None
    flag = res.column(res.exclusive)
    await conn.execute(_scoped(res, update(res.table), user_id, owner_id)
                       .where(flag.is_(True), res.table.c.id != keep).values({flag: False}))


def _reader(res: Resource, *, with_bytes: bool = False) -> Reader:
    """What a response shows, bounded; bytes only when one row is fetched (as base64)."""
    return _table_reader(res.table, with_bytes and res.bytes_when_got)


@functools.cache
def _table_reader(table: Table, with_bytes: bool) -> Reader:
    # Built once per table: a reader is immutable, and building one (and the new select
    # expressions it holds) on every request cost a tenth of a millisecond per call.
    columns = public_columns(table)
    if with_bytes:
        columns += [c for c in table.columns if isinstance(c.type, LargeBinary)]
    return Reader.of(columns)


def to_json(reader: Reader, row: Any) -> dict[str, Any]:
    """A row read through ``reader`` (its values checked) as JSON-able dict; bytes become
    base64 text."""
    data = reader.read(row)
    for key, value in data.items():
        if isinstance(value, bytes | memoryview):
            data[key] = base64.b64encode(bytes(value)).decode()
    return data


def page_bounds(limit: int, offset: int) -> tuple[int, int]:
    return max(1, min(limit, MAX_LIST_LIMIT)), max(0, min(offset, MAX_LIST_OFFSET))


# --- the five operations ----------------------------------------------------------------


async def create_row(router: Router, user_id: str, res: Resource, values: Mapping[str, Any],
                     *, owner_id: Any = None,
                     embedder: EmbeddingModel | None = None) -> dict[str, Any]:
    row_values = _clean(res, values, creating=True)
    if res.prepare is not None:
        res.prepare(row_values)
    row_values.update(await _embedding_values(router, user_id, res, row_values, embedder))
    row_values.update(res.fixed, id=new_id(), user_id=user_id)
    events: list[str] = []
    # An attachment's bytes are an uploaded file's (BYOD_FILE_STORAGE, see Router.connect).
    file_bytes = res.table.name == "attachments" and row_values.get("content") is not None
    async with content_transaction(router, user_id, res.table, conflict=res.conflict,
                                   file_bytes=file_bytes) as conn:
        if res.owner is not None:
            await fetch_owned(conn, user_id, res.owner, owner_id)
            row_values[res.owner.column] = owner_id
        await _check_parents(conn, user_id, res, row_values)
        await _check_unique(conn, user_id, res, row_values, owner_id=owner_id)
        if res.position is not None and row_values.get(res.position) is None:
            # Appended after the last one; ties from concurrent appends are broken by
            # created_at when listing.
            column = res.column(res.position)
            row_values[res.position] = _scoped(
                res, select(func.coalesce(func.max(column) + 1, 0)), user_id, owner_id
            ).scalar_subquery()
        for stamp in res.stamps:
            if row_values.get(stamp.column) == stamp.value:
                row_values[stamp.stamp] = func.now()
                if stamp.event:
                    events.append(stamp.event)
        if res.exclusive is not None and row_values.get(res.exclusive):
            await _clear_exclusive(conn, user_id, res, owner_id, row_values["id"])
        reader = _reader(res)
        row = (await conn.execute(
            res.table.insert().values(row_values).returning(*reader.columns))).one()
        if res.activity:
            events.insert(0, f"{res.label}.created")
        for event in events:
            await record_event(conn, user_id, event, subject_type=res.label,
                               subject_id=row_values["id"])
    return to_json(reader, row)


async def list_rows(router: Router, user_id: str, res: Resource, *, owner_id: Any = None,
                    filters: Mapping[str, Any] | None = None, limit: int = 50,
                    offset: int = 0) -> list[dict[str, Any]]:
    """The user's rows, filtered by equality; a ``None`` filter means "any"."""
    given = dict(filters or {})
    unknown = sorted(set(given) - set(res.filters))
    if unknown:
        raise InvalidInput(f"{', '.join(unknown)}: not a filter of {res.humans}")
    wanted = {**res.filter_defaults, **given}
    limit, offset = page_bounds(limit, offset)
    reader = _reader(res)
    query = _scoped(res, select(*reader.columns), user_id, owner_id)
    parents = {p.column: p for p in res.parents}
    async with content_transaction(router, user_id, res.table) as conn:
        if res.owner is not None:
            await fetch_owned(conn, user_id, res.owner, owner_id)
        for name, value in wanted.items():
            if value is None:
                continue
            column_name = res.filters[name]
            value = field_rule(res, column_name).check(value)
            if column_name in parents:
                await fetch_owned(conn, user_id, parents[column_name], value)
            query = query.where(res.column(column_name) == value)
        rows = (await conn.execute(
            query.order_by(*res.order_by).limit(limit).offset(offset))).all()
    return [to_json(reader, r) for r in rows]


def _one(res: Resource, reader: Reader, key: Any, user_id: str, owner_id: Any) -> Select[Any]:
    query: Select[Any] = _scoped(res, select(*reader.columns), user_id, owner_id)
    return query.where(res.column(res.key) == key)


async def get_row(router: Router, user_id: str, res: Resource, key: Any, *,
                  owner_id: Any = None) -> dict[str, Any]:
    reader = _reader(res, with_bytes=True)
    async with content_transaction(router, user_id, res.table) as conn:
        if res.owner is not None:
            await fetch_owned(conn, user_id, res.owner, owner_id)
        row = (await conn.execute(_one(res, reader, key, user_id, owner_id))).first()
    if row is None:
        raise NotFound(f"{res.human} not found")
    return to_json(reader, row)


async def update_row(router: Router, user_id: str, res: Resource, key: Any,
                     changes: Mapping[str, Any], *, owner_id: Any = None,
                     embedder: EmbeddingModel | None = None) -> dict[str, Any]:
    new = _clean(res, changes, creating=False)
    new.update(await _embedding_values(router, user_id, res, new, embedder))
    events: list[str] = []
    reader = _reader(res)
    async with content_transaction(router, user_id, res.table, conflict=res.conflict) as conn:
        if res.owner is not None:
            await fetch_owned(conn, user_id, res.owner, owner_id)
        old = (await conn.execute(
            _one(res, reader, key, user_id, owner_id).with_for_update())).first()
        if old is None:
            raise NotFound(f"{res.human} not found")
        if not new:
            return to_json(reader, old)
        await _check_parents(conn, user_id, res, new)
        await _check_unique(conn, user_id, res, new, owner_id=owner_id, exclude=old.id)
        for stamp in res.stamps:
            if stamp.column not in new:
                continue
            entering = new[stamp.column] == stamp.value
            was = getattr(old, stamp.column) == stamp.value
            if entering and not was:
                new[stamp.stamp] = func.now()
                if stamp.event:
                    events.append(stamp.event)
            elif not entering:
                new[stamp.stamp] = None
        if res.exclusive is not None and new.get(res.exclusive):
            await _clear_exclusive(conn, user_id, res, owner_id, old.id)
        if "updated_at" in res.table.c:
            new["updated_at"] = func.now()
        row = (await conn.execute(
            update(res.table).where(res.table.c.id == old.id, res.table.c.user_id == user_id)
            .values(new).returning(*reader.columns))).one()
        # Checked before the commit: a row still holding a value the API never wrote
        # (the owner's own edit) fails the update as a whole instead of half-answering it.
        result = to_json(reader, row)
        for event in events:
            await record_event(conn, user_id, event, subject_type=res.label,
                               subject_id=old.id)
    return result


async def delete_row(router: Router, user_id: str, res: Resource, key: Any, *,
                     owner_id: Any = None) -> None:
    async with content_transaction(router, user_id, res.table) as conn:
        if res.owner is not None:
            await fetch_owned(conn, user_id, res.owner, owner_id)
        deleted = (await conn.execute(
            _scoped(res, delete(res.table), user_id, owner_id)
            .where(res.column(res.key) == key).returning(res.table.c.id))).first()
        if deleted is None:
            raise NotFound(f"{res.human} not found")
        if res.activity:
            await record_event(conn, user_id, f"{res.label}.deleted", subject_type=res.label,
                               subject_id=deleted.id)
