"""Export: everything a user owns, as one zip, from wherever it lives."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import psycopg
import pytest

from byodb.services.portability.export import export_archive
from byodb.services.rows import InvalidStoredContent
from tests.conftest import Api, count_rows
from tests.portability_support import (
    FILE_BYTES,
    connect_own_database,
    content_counts,
    export_zip,
    seed_content,
    table_rows,
)


def assert_manifest_matches(archive: zipfile.ZipFile) -> dict[str, object]:
    manifest = json.loads(archive.read("manifest.json"))
    assert manifest["format"] == "byodb-export" and manifest["format_version"] == 1
    assert isinstance(manifest["schema_version"], int)
    listed = manifest["files"]
    assert set(listed) == set(archive.namelist()) - {"manifest.json"}
    for name, entry in listed.items():
        data = archive.read(name)
        assert hashlib.sha256(data).hexdigest() == entry["sha256"], name
        assert len(data) == entry["bytes"], name
        if name.startswith("tables/"):
            assert entry["rows"] == len(data.splitlines()), name
    return manifest


def assert_chatgpt_layout(archive: zipfile.ZipFile, title: str) -> None:
    conversations = json.loads(archive.read("conversations.json"))
    [conversation] = [c for c in conversations if c["title"] == title]
    assert isinstance(conversation["create_time"], float | int)
    assert isinstance(conversation["update_time"], float | int)
    mapping = conversation["mapping"]
    assert conversation["current_node"] in mapping
    messages = [n for n in mapping.values() if n["message"] is not None]
    assert len(messages) == 6
    for node_id, node in mapping.items():
        assert node["id"] == node_id
        assert node["parent"] is None or node["parent"] in mapping
        assert all(mapping[child]["parent"] == node_id for child in node["children"])
        message = node["message"]
        if message is None:
            continue
        assert message["author"]["role"] in ("user", "assistant")
        assert message["content"]["content_type"] == "text"
        assert all(isinstance(p, str) for p in message["content"]["parts"])
        assert isinstance(message["create_time"], float | int)
    [root] = [n for n in mapping.values() if n["parent"] is None]
    assert [mapping[c]["message"]["content"]["parts"] for c in root["children"]] == [
        ["How do I bleed a radiator?"]]
    # The edited second question is a branch: the first answer has two replies.
    [fork] = [n for n in mapping.values() if len(n["children"]) == 2]
    assert fork["message"]["author"]["role"] == "assistant"
    assert [mapping[c]["message"]["content"]["parts"][0] for c in fork["children"]] == [
        "And how often?", "And how often for a towel radiator?"]


async def test_export_of_a_user_on_main_holds_every_row_checksummed(
        api: Api, main_url: str) -> None:
    seeded = await seed_content(api, "ann")
    await seed_content(api, "someone-else")
    archive = await export_zip(api, "ann")

    assert_manifest_matches(archive)
    for table, count in content_counts(main_url, "ann").items():
        rows = table_rows(archive, table)
        assert len(rows) == count, table
        assert all(row["user_id"] == "ann" for row in rows)
    messages = table_rows(archive, "messages")
    assert {m["content"] for m in messages} >= {"How do I bleed a radiator?"}
    assert all(m["created_at"].endswith("+00:00") for m in messages)
    [stored] = table_rows(archive, "files")
    assert archive.read(stored["content"]) == FILE_BYTES
    assert stored["id"] == seeded["file"]["id"]
    assert_chatgpt_layout(archive, "Boiler questions")
    markdown = [n for n in archive.namelist() if n.startswith("markdown/")]
    [talk] = [n for n in markdown if n.startswith("markdown/conversations/Boiler-questions-")]
    assert "And how often for a towel radiator?" in archive.read(talk).decode()
    [note] = [n for n in markdown if n.startswith("markdown/notes/")]
    assert archive.read(note).decode().startswith("# Plumber\n")


async def test_export_of_a_user_on_their_database_reads_it_there(
        api: Api, main_url: str, user_db_url: str) -> None:
    await seed_content(api, "bob")
    await connect_own_database(api, "bob", user_db_url)
    memories = table_rows(await export_zip(api, "bob"), "memories")
    # An embedding is exported as a list of numbers.
    assert all(m["embedding"] is None or len(m["embedding"]) == 1536 for m in memories)
    archive = await export_zip(api, "bob")
    assert_manifest_matches(archive)
    counts = content_counts(user_db_url, "bob")
    assert counts["messages"] == 6
    for table, count in counts.items():
        assert len(table_rows(archive, table)) == count, table
    assert count_rows(main_url, "select count(*) from byodb.messages where user_id = %s",
                      "bob") == 0
    assert_chatgpt_layout(archive, "Boiler questions")


async def test_a_blocked_users_export_is_503_before_any_byte(
        api: Api, main_url: str, user_db_url: str) -> None:
    await connect_own_database(api, "jon", user_db_url)
    with psycopg.connect(main_url) as conn:
        ciphertext = conn.execute("select encrypted_url from user_database_config "
                                  "where user_id = 'jon'").fetchone()[0]  # type: ignore[index]
        flipped = ciphertext[:-3] + ("A" if ciphertext[-3] != "A" else "B") + ciphertext[-2:]
        conn.execute("update user_database_config set encrypted_url = %s "
                     "where user_id = 'jon'", (flipped,))
    await api.app.state.runtime.router.forget_user("jon")
    response = await api.get("/api/export", "jon")
    assert response.status_code == 503
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["error"]["code"] == "byod_unavailable"


def byodb(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "byodb.cli.main", *args], capture_output=True,
                          text=True, timeout=120, env={**os.environ, **env})


async def test_operator_exports_a_user_to_a_file(api: Api, main_url: str,
                                                 tmp_path: Path) -> None:
    await seed_content(api, "cat")
    out = tmp_path / "cat.zip"
    env = {"BYODB_DATABASE_URL": main_url, "BYODB_DATA_DIR": str(api.settings.data_dir),
           "BYODB_ENV": "development", "BYODB_ALLOW_PRIVATE_HOSTS": "true"}
    result = await asyncio.to_thread(byodb, "export", "cat", "--out", str(out), "--json",
                                     env=env)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["rows"]["messages"] == 6 and summary["out"] == str(out)
    with zipfile.ZipFile(out) as archive:
        assert_manifest_matches(archive)
        assert len(table_rows(archive, "messages")) == 6

    missing = await asyncio.to_thread(byodb, "export", "cat", "--out",
                                      str(tmp_path / "no" / "x.zip"), env=env)
    assert missing.returncode != 0 and "does not exist" in missing.stderr
    assert not (tmp_path / "no").exists()


async def test_a_value_beyond_the_apps_limits_in_the_users_database_stops_the_export(
        api: Api, user_db_url: str) -> None:
    await connect_own_database(api, "kim", user_db_url)
    note = await api.post("/api/notes", "kim", json={"title": "short", "content": "x"})
    assert note.status_code == 201
    # Changed outside the app: a title of 600 characters (the API allows 500).
    with psycopg.connect(user_db_url) as conn:
        conn.execute("update byodb.notes set title = repeat('t', 600) where user_id = 'kim'")
    chunks = []
    with pytest.raises(InvalidStoredContent) as refused:
        async for chunk in export_archive(api.app.state.runtime.router, "kim", timeout_s=60):
            chunks.append(chunk)
    assert "notes" in refused.value.message and "title" in refused.value.message
    # Nothing of the value was read: the archive never got as far as the notes' member.
    assert b"t" * 501 not in b"".join(chunks)
