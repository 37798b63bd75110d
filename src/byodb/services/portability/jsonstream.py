"""JSON read from an upload one value at a time, every limit checked as the value is read.

``ijson`` (its C backend) turns the bytes into events; :func:`bounded_items` builds the items
from them — the rows of a ``.jsonl`` member, the conversations of a ``conversations.json`` —
and refuses an item the moment it breaks a limit (:class:`JsonLimits`): nesting depth, the
length of one string, the members of one array or object, the values and the bytes of one
item, and the number of items. The refusal is a 422 naming the limit and where it was met
(the item and the path inside it, never a value), so a hostile file costs at most one
item's worth of memory and the time to read up to the point it broke a limit.

Nothing here recurses: a file of ``[`` x 100,000 is refused at the depth limit.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

import ijson

from byodb.services.portability.archive import ImportInvalid


class ImportLimitBroken(ImportInvalid):
    """A value of the file breaks one of the import's limits (docs/import.md)."""

    code = "import_limit_exceeded"


@dataclass(frozen=True)
class JsonLimits:
    """What one item (a row, a conversation) of an imported JSON file may hold."""

    item_bytes: int
    """Bytes of one item's JSON."""
    item_values: int
    """Values of one item (every object, array, string, number, true, false and null)."""
    items: int
    """Items of the file (rows of a member, conversations of ``conversations.json``)."""
    depth: int = 64
    """Objects and arrays inside each other, counted from the item."""
    string_chars: int = 8 * 1024 * 1024
    """One string (or object key): 8 Mi characters holds the largest inline base64 value."""
    members: int = 100_000
    """Members of one object or array."""


class _Metered(io.RawIOBase):
    """The file's bytes, counted: in all (``done``) and since the last item ended."""

    def __init__(self, raw: IO[bytes]) -> None:
        super().__init__()
        self._raw = raw
        self.done = 0
        self.since_item = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self._raw.read(len(buffer))
        self.done += len(data)
        self.since_item += len(data)
        buffer[:len(data)] = data
        return len(data)


_READ = 64 * 1024
_SCALARS = frozenset({"null", "boolean", "integer", "double", "number", "string"})


def _path(stack: list[Any], keys: list[Any]) -> str:
    """Where in the item the reader is, as ``mapping.abc.message.parts[3]`` (keys bounded
    and escaped: they are the file's; a deep path keeps its first and last steps)."""
    parts: list[str] = []
    last = len(stack) - 1
    for level, (container, key) in enumerate(zip(stack, keys, strict=True)):
        if isinstance(container, list):
            # Outer levels: the member being read is the last one; the innermost level: the
            # member about to be added.
            parts.append(f"[{len(container) - (level < last)}]")
        elif key is not None:
            shown = str(key)[:40].encode("unicode_escape").decode()
            parts.append(f".{shown}" if shown.isidentifier() else f"[{shown!r}]")
    if len(parts) > 10:
        parts = [*parts[:5], f"…({len(parts) - 8} levels)…", *parts[-3:]]
    return "".join(parts).lstrip(".")


class ItemReader:
    """The items of one JSON file (:func:`bounded_items`), and how far it has read."""

    def __init__(self, raw: IO[bytes], limits: JsonLimits, name: str, item_word: str,
                 *, top_level_list: bool) -> None:
        self._meter = _Metered(raw)
        self._limits = limits
        self._name = name
        self._word = item_word
        self._list = top_level_list
        self.count = 0

    @property
    def bytes_done(self) -> int:
        return self._meter.done

    def _where(self, stack: list[Any], keys: list[Any]) -> str:
        inside = _path(stack[1:] if self._list else stack, keys[1:] if self._list else keys)
        at = f" at {inside}" if inside else ""
        return f"{self._name} {self._word} {self.count + 1}{at}"

    def _broken(self, what: str, stack: list[Any], keys: list[Any]) -> ImportLimitBroken:
        return ImportLimitBroken(f"{self._where(stack, keys)}: {what}",
                                 hint="Nothing was imported. The file is not an export this "
                                      "server reads within its limits (docs/import.md).")

    def __iter__(self) -> Iterator[Any]:
        limits = self._limits
        base = 1 if self._list else 0
        stack: list[Any] = []
        keys: list[Any] = []
        values = 0
        events = ijson.basic_parse(io.BufferedReader(self._meter, _READ), use_float=True,
                                   multiple_values=not self._list, buf_size=_READ)
        try:
            for event, value in events:
                if event == "map_key":
                    if len(value) > limits.string_chars:
                        raise self._broken(f"an object key is longer than "
                                           f"{limits.string_chars} characters", stack, keys)
                    # Keys repeat in every item (ChatGPT's nodes): one copy of each.
                    keys[-1] = sys.intern(value)
                    continue
                if event in _SCALARS or event == "start_map" or event == "start_array":
                    if not stack and self._list:
                        if event != "start_array":
                            raise ImportInvalid(f"{self._name} must be a JSON list of "
                                                f"{self._word}s")
                        stack.append([])
                        keys.append(None)
                        self._meter.since_item = 0
                        continue
                    if len(stack) > base:
                        values += 1
                        if values > limits.item_values:
                            raise self._broken(f"more than {limits.item_values} values in one "
                                               f"{self._word}", stack, keys)
                        if self._meter.since_item > limits.item_bytes + _READ:
                            raise self._broken(f"one {self._word} is larger than "
                                               f"{limits.item_bytes} bytes", stack, keys)
                    if event in _SCALARS:
                        if event == "string" and len(value) > limits.string_chars:
                            raise self._broken(f"a string is longer than "
                                               f"{limits.string_chars} characters", stack, keys)
                        item = value
                    else:
                        if len(stack) - base >= limits.depth:
                            raise self._broken(f"objects and arrays nest deeper than "
                                               f"{limits.depth} levels", stack, keys)
                        item = {} if event == "start_map" else []
                    if len(stack) > base:
                        parent = stack[-1]
                        if len(parent) >= limits.members:
                            raise self._broken(f"an object or array has more than "
                                               f"{limits.members} members", stack, keys)
                        if isinstance(parent, list):
                            parent.append(item)
                        else:
                            parent[keys[-1]] = item
                    if event in _SCALARS:
                        if len(stack) == base:
                            yield from self._item(item)
                            values = 0
                        continue
                    stack.append(item)
                    keys.append(None)
                    continue
                # end_map / end_array
                done = stack.pop()
                keys.pop()
                if len(stack) == base:
                    if base and not stack:
                        return  # the end of the top-level list
                    yield from self._item(done)
                    values = 0
        except ijson.JSONError as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            if "premature EOF" in reason:
                if not self._list and not stack:
                    return  # JSON lines: nothing (or only white space) after the last row
                raise ImportInvalid(f"{self._name} is not valid JSON: it ends in the middle "
                                    f"of {self._word} {self.count + 1}",
                                    hint="Upload the file as it was exported.") from None
            raise ImportInvalid(f"{self._name} is not valid JSON after {self.count} "
                                f"{self._word}s ({reason.removeprefix('parse error: ')[:80]})",
                                hint="Upload the file as it was exported.") from None
        if base and stack:
            raise ImportInvalid(f"{self._name} ends before its list does")

    def _item(self, item: Any) -> Iterator[Any]:
        if self.count >= self._limits.items:
            raise ImportLimitBroken(f"{self._name} holds more than {self._limits.items} "
                                    f"{self._word}s", hint="Nothing was imported. Split the "
                                    "export.")
        self._meter.since_item = 0
        yield item
        self.count += 1


def bounded_items(raw: IO[bytes], limits: JsonLimits, name: str, item_word: str, *,
                  top_level_list: bool) -> ItemReader:
    """The items of ``raw``: the elements of its top-level list (``top_level_list``), or its
    top-level values one after another (JSON lines). ``name`` and ``item_word`` name where
    a refusal was met (``tables/messages.jsonl row 3``)."""
    return ItemReader(raw, limits, name, item_word, top_level_list=top_level_list)
