"""An imported row, checked like an API request: every column's type and the API's limits.

A row of a byodb export is one JSON object per line (docs/export-format.md). Each value is
checked against its column (``portability.columns``) and turned into what COPY writes;
anything else is refused with :class:`ImportInvalid` naming the table, line and column
(never the value: it is the user's content). Columns the code does not know are ignored
(an export from a newer schema), columns the row lacks are NULL (an older one). Checks that
need the database (CHECK constraints, references, ids of other accounts) follow when the
rows are merged (``byodb.instances.lifecycle.moves.merge_rows``).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import uuid
from collections.abc import Callable, Mapping
from datetime import date, datetime
from typing import Any

from byodb.content.limits import HASH_PATTERN
from byodb.content.tables import EMBEDDING_DIMENSIONS
from byodb.services.portability.archive import ImportInvalid
from byodb.services.portability.columns import ColumnSpec
from byodb.services.rows import json_text_bytes

_PATTERNS: dict[tuple[str, str], re.Pattern[str]] = {
    ("tts_cache", "hash"): re.compile(HASH_PATTERN)}

IdMap = Callable[[uuid.UUID], uuid.UUID]
ReadMember = Callable[[str], bytes]


class RowChecker:
    """Checks the rows of one table of one import."""

    def __init__(self, table: str, specs: list[ColumnSpec], *, user_id: str, ids: IdMap,
                 read_member: ReadMember) -> None:
        self.table = table
        self.specs = specs
        self._user_id = user_id
        self._ids = ids
        self._read_member = read_member

    def check(self, row: Any, where: str) -> dict[str, Any]:
        """Column → value to write, or :class:`ImportInvalid`."""
        if not isinstance(row, Mapping):
            raise ImportInvalid(f"{where}: a row must be a JSON object")
        values: dict[str, Any] = {}
        for spec in self.specs:
            if spec.name == "user_id":
                values["user_id"] = self._user_id  # rows are written as the importer's
                continue
            value = row.get(spec.name)
            if value is None:
                if not spec.nullable:
                    raise ImportInvalid(f"{where}: {spec.name} is missing")
                values[spec.name] = None
                continue
            try:
                values[spec.name] = self._value(spec, value)
            except (ValueError, TypeError, OverflowError, binascii.Error):
                raise ImportInvalid(f"{where}: {spec.name} is not a valid "
                                    f"{_KIND_NAMES[spec.kind]}") from None
        return values

    def _value(self, spec: ColumnSpec, value: Any) -> Any:
        kind = spec.kind
        if kind == "uuid":
            return self._ids(uuid.UUID(_string(value)))
        if kind == "text":
            text = _string(value)
            _within(len(text), spec, "characters")
            pattern = _PATTERNS.get((self.table, spec.name))
            if pattern is not None and not pattern.match(text):
                raise ValueError
            return text
        if kind == "json":
            _within(json_text_bytes(value), spec, "bytes")
            return json.dumps(value, ensure_ascii=False)
        if kind == "bytes":
            text = _string(value)
            _within(len(text) * 3 // 4, spec, "bytes")
            return base64.b64decode(text, validate=True)
        if kind == "member":
            data = self._read_member(_string(value))
            _within(len(data), spec, "bytes")
            return data
        if kind == "vector":
            if not isinstance(value, list) or len(value) != EMBEDDING_DIMENSIONS:
                raise ValueError
            return "[" + ",".join(repr(_number(v)) for v in value) + "]"
        if kind == "time":
            moment = datetime.fromisoformat(_string(value))
            if moment.tzinfo is None:
                raise ValueError
            return moment
        if kind == "date":
            return date.fromisoformat(_string(value))
        if kind == "integer":
            if isinstance(value, bool) or not isinstance(value, int) or abs(value) >= spec.limit:
                raise ValueError
            return value
        if kind == "numeric" and isinstance(value, int) and not isinstance(value, bool):
            return value  # exact, as the export wrote it
        if kind in ("numeric", "float"):
            return _number(value)
        if kind == "boolean":
            if not isinstance(value, bool):
                raise ValueError
            return value
        raise TypeError(kind)


_KIND_NAMES = {"uuid": "UUID", "text": "text within the app's limit",
               "json": "JSON value within the app's limit",
               "bytes": "base64 text within the app's limit",
               "member": "path of a file in the zip", "vector": "list of "
               f"{EMBEDDING_DIMENSIONS} numbers", "time": "ISO 8601 time with a time zone",
               "date": "ISO 8601 date", "integer": "integer in range", "numeric": "number",
               "float": "number", "boolean": "true or false"}


def _within(size: int, spec: ColumnSpec, unit: str) -> None:
    if size > spec.limit:
        raise ValueError(f"longer than {spec.limit} {unit}")


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError
    return value


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError
    number = float(value)
    if not math.isfinite(number):
        raise ValueError
    return number
