"""A malformed or hostile import file gets a clear error and writes nothing."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from byodb.settings import Settings
from tests.conftest import Api
from tests.portability_support import (
    export_zip,
    nothing_written,
    refused,
    seed_content,
    zip_of,
)

LIMIT = 64 * 1024
"""BYODB_MAX_IMPORT_BYTES of these tests: members may unpack to 8 times this."""


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(BYODB_DATA_DIR=tmp_path / "data", BYODB_ENV="development",
                    BYODB_ALLOW_PRIVATE_HOSTS=True, BYODB_TEST_RATE_LIMIT=1000,
                    BYODB_MAX_IMPORT_BYTES=LIMIT)


async def test_member_names_outside_the_archive_are_refused(api: Api, main_url: str) -> None:
    for name in ("../../etc/cron.d/evil", "/etc/passwd", "tables/../../x.jsonl",
                 "C:/windows/x", "tables\\..\\x"):
        data = zip_of({"manifest.json": b"{}", name: b"x"})
        message = await refused(api, "ike", data, 400, "import_unsafe_file")
        assert "unsafe name" in message
    assert nothing_written(main_url, "ike")


async def test_a_huge_member_is_refused_by_its_declared_size(api: Api, main_url: str) -> None:
    # 1 MB of zeros packs into about a kilobyte: a small upload that unpacks beyond 8 x LIMIT.
    data = zip_of({"conversations.json": b"[" + b" " * (1024 * 1024) + b"]"})
    assert len(data) < LIMIT
    message = await refused(api, "jo", data, 413, "import_too_large")
    assert "unpack" in message
    assert nothing_written(main_url, "jo")


async def test_a_member_that_unpacks_to_more_than_it_declares_is_refused(
        api: Api, main_url: str) -> None:
    data = bytearray(zip_of({"conversations.json": b"[" + b" " * 300_000 + b"]"}))
    # Make the central directory claim 100 bytes: zipfile stops there, the CRC fails.
    directory = data.rfind(b"PK\x01\x02")
    struct.pack_into("<I", data, directory + 24, 100)
    await refused(api, "kay", bytes(data), 422, "import_invalid")
    assert nothing_written(main_url, "kay")


async def test_an_upload_over_the_import_limit_is_413(api: Api, main_url: str) -> None:
    await refused(api, "lou", b"[" + b" " * (LIMIT + 10) + b"]", 413, "payload_too_large")
    assert nothing_written(main_url, "lou")


async def test_rows_of_the_wrong_type_are_refused_naming_where(api: Api, main_url: str) -> None:
    await seed_content(api, "max")
    archive = await export_zip(api, "max")
    members = {n: archive.read(n) for n in archive.namelist() if not n.startswith("files/")
               and not n.startswith("markdown/")}
    members["tables/files.jsonl"] = b""
    lines = members["tables/messages.jsonl"].splitlines()
    row = json.loads(lines[1])
    row["content"] = 5
    lines[1] = json.dumps(row).encode()
    members["tables/messages.jsonl"] = b"\n".join(lines)
    members["manifest.json"] = b'{"format": "byodb-export", "format_version": 1, "files": {}}'
    message = await refused(api, "ned", zip_of(members), 422, "import_invalid")
    assert message == "tables/messages.jsonl row 2: content is not a valid text within " \
                      "the app's limit"
    assert nothing_written(main_url, "ned")


async def test_a_changed_member_fails_its_checksum(api: Api, main_url: str) -> None:
    await seed_content(api, "ola")
    archive = await export_zip(api, "ola")
    members = {n: archive.read(n) for n in archive.namelist()}
    members["tables/notes.jsonl"] = members["tables/notes.jsonl"].replace(b"Call Ada",
                                                                          b"Call Bob")
    message = await refused(api, "pat", zip_of(members), 422, "import_invalid")
    assert "SHA-256" in message
    assert nothing_written(main_url, "pat")


@pytest.mark.parametrize(("payload", "where"), [
    (b'{"not": "a list"}', "must be a JSON list"),
    (b'[{"title": "x", "mapping": []}]', "must be an object with a mapping"),
    (b'[{"id": "c", "title": 7, "mapping": {}}]', "title must be text"),
    (b'[{"uuid": "u", "chat_messages": [{"uuid": "m", "sender": "human", "text": 5}]}]',
     "text must be text"),
    (b'[{"id": "c", "mapping": {}, ', "not valid JSON"),
    (b"PK\x03\x04 not really a zip", "not a readable zip"),
])
async def test_malformed_chat_exports_are_refused(api: Api, main_url: str, payload: bytes,
                                                  where: str) -> None:
    message = await refused(api, "quin", payload, 422, "import_invalid", "conversations.json")
    assert where in message
    assert nothing_written(main_url, "quin")


async def test_a_zip_of_something_else_is_refused(api: Api, main_url: str) -> None:
    message = await refused(api, "rae", zip_of({"photo.jpg": b"\xff\xd8"}), 422,
                            "import_invalid")
    assert "neither a byodb export" in message
    assert nothing_written(main_url, "rae")
