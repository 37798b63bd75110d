"""JSON read one item at a time with every limit checked as values are read: each limit is
named with the item and the place it was met, and a file's own keys are shown escaped."""

from __future__ import annotations

import io
from typing import Any

import pytest

from byodb.services.portability.archive import ImportInvalid
from byodb.services.portability.jsonstream import ImportLimitBroken, JsonLimits, bounded_items

LIMITS = JsonLimits(item_bytes=1024 * 1024, item_values=1_000, items=3, depth=8,
                    string_chars=100, members=50)


def rows(data: bytes, *, top_level_list: bool = False) -> list[Any]:
    return list(bounded_items(io.BytesIO(data), LIMITS, "tables/notes.jsonl", "row",
                              top_level_list=top_level_list))


def refusal(data: bytes, *, top_level_list: bool = False) -> str:
    with pytest.raises(ImportInvalid) as caught:
        rows(data, top_level_list=top_level_list)
    return caught.value.message


def test_rows_and_list_items_come_out_as_values() -> None:
    assert rows(b'{"a": 1, "b": [true, null, 2.5, "x"]}\n{"c": {}}\n\n') == [
        {"a": 1, "b": [True, None, 2.5, "x"]}, {"c": {}}]
    assert rows(b'[{"a": 1}, [2], "s"]', top_level_list=True) == [{"a": 1}, [2], "s"]
    assert rows(b"") == [] and rows(b" \n") == [] and rows(b"[]", top_level_list=True) == []


@pytest.mark.parametrize(("data", "message"), [
    (b"[" * 100_000, "tables/notes.jsonl row 1 at [0][0][0][0][0][0][0][0]: objects and "
                     "arrays nest deeper than 8 levels"),
    (b'{"t": [' + b"0," * 60 + b"0]}", "tables/notes.jsonl row 1 at t[50]: an object or array "
                                       "has more than 50 members"),
    (b'{"t": "' + b"x" * 101 + b'"}', "tables/notes.jsonl row 1 at t: a string is longer than "
                                      "100 characters"),
    (b'{}\n{"' + b"k" * 101 + b'": 1}', "tables/notes.jsonl row 2: an object key is longer "
                                        "than 100 characters"),
    (b"{}\n{}\n{}\n{}\n", "tables/notes.jsonl holds more than 3 rows"),
    (b'{"a": [' + (b"[" + b"0," * 29 + b"0],") * 40 + b"1]}",
     "tables/notes.jsonl row 1 at a[32][6]: more than 1000 values in one row"),
])
def test_each_limit_is_named_where_it_is_met(data: bytes, message: str) -> None:
    with pytest.raises(ImportLimitBroken) as caught:
        rows(data)
    assert caught.value.message == message
    assert caught.value.status == 422 and caught.value.code == "import_limit_exceeded"


def test_an_item_over_its_bytes_is_refused_before_it_is_read_whole() -> None:
    small = JsonLimits(item_bytes=64 * 1024, item_values=10**9, items=10, string_chars=10**9,
                       members=10**9)
    data = b'[{"t": "' + b"x" * (1024 * 1024) + b'", "u": 1}]'
    with pytest.raises(ImportLimitBroken) as caught:
        list(bounded_items(io.BytesIO(data), small, "conversations.json", "conversation",
                           top_level_list=True))
    assert "one conversation is larger than 65536 bytes" in caught.value.message


def test_a_hostile_key_is_shown_escaped_and_bounded() -> None:
    message = refusal(b'{"evil\\nX-Injected: yes' + b"y" * 80 + b'": "' + b"x" * 101 + b'"}')
    assert "\n" not in message
    assert "evil\\\\nX-Injected: yes" in message or "evil\\nX-Injected" in message
    assert len(message) < 200


def test_broken_json_is_invalid_not_a_crash() -> None:
    assert "must be a JSON list of rows" in refusal(b'{"a": 1}', top_level_list=True)
    assert "ends in the middle of row 2" in refusal(b'{"a": 1}\n{"b": ')
    assert refusal(b'{"a": 1}\n{"b" 2}') == (
        "tables/notes.jsonl is not valid JSON after 1 rows (object key and value must be "
        "separated by a colon (':'))")
