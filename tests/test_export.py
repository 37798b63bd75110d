"""Export: everything a user owns, as one zip, from wherever it lives."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import psycopg
import pytest

from byodb.services.portability import export
from byodb.services.portability.export import INCOMPLETE_MEMBER, ExportOutcome, export_archive
from byodb.settings import Settings
from tests.conftest import Api, count_rows, running_app
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
        api: Api, user_db_url: str, caplog: pytest.LogCaptureFixture) -> None:
    await connect_own_database(api, "kim", user_db_url)
    note = await api.post("/api/notes", "kim", json={"title": "short", "content": "x"})
    assert note.status_code == 201
    # Changed outside the app: a title of 600 characters (the API allows 500).
    with psycopg.connect(user_db_url) as conn:
        conn.execute("update byodb.notes set title = repeat('t', 600) where user_id = 'kim'")
    outcome = ExportOutcome()
    chunks = [chunk async for chunk in export_archive(
        api.app.state.runtime.router, "kim", timeout_s=60, outcome=outcome)]
    assert not outcome.complete
    archive = assert_incomplete(b"".join(chunks))
    said = archive.read(INCOMPLETE_MEMBER).decode()
    assert "notes" in said and "title" in said
    # Nothing of the value was read: the archive never got as far as the notes' member.
    assert b"t" * 501 not in b"".join(chunks)
    assert "export of user kim incomplete" in caplog.text
    # The user's database is fine: the export's failure never marks it down.
    assert (await api.get("/api/byod", "kim")).json()["connection_status"] == "connected"


def assert_incomplete(data: bytes) -> zipfile.ZipFile:
    """A readable zip that says it is incomplete, last, and has no manifest."""
    archive = zipfile.ZipFile(io.BytesIO(data))
    assert archive.testzip() is None
    names = archive.namelist()
    assert names[-1] == INCOMPLETE_MEMBER and "manifest.json" not in names
    assert archive.read(INCOMPLETE_MEMBER).startswith(b"This export is INCOMPLETE: ")
    return archive


def add_messages(url: str, user: str, count: int) -> None:
    """``count`` messages in conversations of 100, made by the server."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "insert into byodb.conversations (id, user_id, title, message_count, created_at,"
            " updated_at, last_message_at) select md5('c' || c)::uuid, %(u)s, 'Talk ' || c,"
            " 100, now(), now(), now() from generate_series(0, %(n)s / 100 - 1) c",
            {"u": user, "n": count})
        conn.execute(
            "insert into byodb.messages (id, conversation_id, user_id, role, content, status,"
            " parent_message_id, branch_index, created_at, updated_at) select"
            " md5('m' || i)::uuid, md5('c' || (i / 100))::uuid, %(u)s, 'user',"
            " 'Message ' || i || ' ' || repeat(md5(i::text), 4), 'complete',"
            " case when i %% 100 = 0 then null else md5('m' || (i - 1))::uuid end, 0,"
            " now() + i * interval '1 millisecond', now() from generate_series(0, %(n)s - 1) i",
            {"u": user, "n": count})
        conn.execute("analyze")  # as autovacuum would soon


MESSAGES = 30_000


@pytest.fixture
def slow_statements(tmp_path: Path) -> Settings:
    """A user-database statement limit far below what an export of MESSAGES takes."""
    return Settings(BYODB_DATA_DIR=tmp_path / "data", BYODB_ENV="development",
                    BYODB_ALLOW_PRIVATE_HOSTS=True, BYODB_USER_STATEMENT_TIMEOUT=0.1)


async def test_an_export_longer_than_the_statement_timeout_completes_in_one_snapshot(
        slow_statements: Settings, main_url: str, user_db_url: str) -> None:
    async with running_app(slow_statements, main_url, timeout_s=120) as api:
        await connect_own_database(api, "ned", user_db_url)
        add_messages(user_db_url, "ned", MESSAGES)
        archive = await export_zip(api, "ned")
    assert_manifest_matches(archive)
    assert len(table_rows(archive, "messages")) == MESSAGES
    conversations = json.loads(archive.read("conversations.json"))
    assert len(conversations) == MESSAGES // 100
    assert sum(1 for n in archive.namelist() if n.startswith("markdown/conversations/")) == \
        MESSAGES // 100


async def test_an_export_past_its_deadline_is_visibly_incomplete_and_logged(
        settings: Settings, main_url: str, user_db_url: str,
        caplog: pytest.LogCaptureFixture) -> None:
    async with running_app(settings.model_copy(update={"export_timeout_s": 0.3}), main_url,
                           timeout_s=120) as api:
        await connect_own_database(api, "ola", user_db_url)
        add_messages(user_db_url, "ola", MESSAGES)
        response = await api.get("/api/export", "ola")
        assert response.status_code == 200  # the download had started
        archive = assert_incomplete(response.content)
        said = archive.read(INCOMPLETE_MEMBER).decode()
        assert "took longer than allowed" in said or "cancelled a query" in said
        # Slow is not down: the user stays connected.
        assert (await api.get("/api/byod", "ola")).json()["connection_status"] == "connected"
    assert "export of user ola incomplete" in caplog.text


async def test_an_export_of_tables_only_holds_the_lossless_tables_and_files(
        api: Api, main_url: str) -> None:
    await seed_content(api, "pia")
    response = await api.get("/api/export?include=tables", "pia")
    assert response.status_code == 200
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    manifest = assert_manifest_matches(archive)
    assert manifest["contents"] == "tables"
    names = archive.namelist()
    assert {n.split("/")[0] for n in names} == {"tables", "files", "manifest.json"}
    for table, count in content_counts(main_url, "pia").items():
        assert len(table_rows(archive, table)) == count, table
    [stored] = table_rows(archive, "files")
    assert archive.read(stored["content"]) == FILE_BYTES
    refused = await api.get("/api/export?include=everything", "pia")
    assert refused.status_code == 422


PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 64


async def test_already_compressed_files_are_stored_and_text_deflated(api: Api) -> None:
    for name, data, kind in (("photo.png", PNG, "image/png"),
                             ("notes.txt", FILE_BYTES, "text/plain")):
        uploaded = await api.post("/api/files", "quin", files={"file": (name, data, kind)})
        assert uploaded.status_code == 201, uploaded.text
    archive = await export_zip(api, "quin")
    assert_manifest_matches(archive)
    kinds = {info.filename.rsplit("/", 1)[-1]: info.compress_type
             for info in archive.infolist() if info.filename.startswith("files/")}
    assert kinds == {"photo.png": zipfile.ZIP_STORED, "notes.txt": zipfile.ZIP_DEFLATED}
    members = {info.filename.rsplit("/", 1)[-1]: archive.read(info)
               for info in archive.infolist() if info.filename.startswith("files/")}
    assert members == {"photo.png": PNG, "notes.txt": FILE_BYTES}


async def test_operator_export_past_its_deadline_says_so_and_leaves_no_file(
        api: Api, main_url: str, user_db_url: str, tmp_path: Path) -> None:
    await connect_own_database(api, "rex", user_db_url)
    add_messages(user_db_url, "rex", MESSAGES)
    out = tmp_path / "rex.zip"
    env = {"BYODB_DATABASE_URL": main_url, "BYODB_DATA_DIR": str(api.settings.data_dir),
           "BYODB_ENV": "development", "BYODB_ALLOW_PRIVATE_HOSTS": "true",
           "BYODB_EXPORT_TIMEOUT": "0.2"}
    result = await asyncio.to_thread(byodb, "export", "rex", "--out", str(out), env=env)
    assert result.returncode == 1, result.stderr
    assert "error: the export is incomplete:" in result.stderr
    assert not out.exists() and not out.with_name("rex.zip.partial").exists()


TRICKY = ('say "hi" \\ back\\slash \\N "\\N" :\\N, tab\there new\nline cr\r vt\x0b bell\x07 '
          'ff\x0c bs\x08 del\x7f sep\u2028 é 😀 {"x": 1}')
"""Every character the export escapes by hand (COPY text made into JSON), and its markers."""


async def test_every_value_is_exported_exactly_as_the_database_holds_it(
        api: Api, user_db_url: str) -> None:
    await connect_own_database(api, "uma", user_db_url)
    await seed_content(api, "uma")
    with psycopg.connect(user_db_url) as conn:
        conn.execute(
            "update byodb.messages set content = %s, model = null, cost = 0.000125,"
            " metadata = %s::jsonb, generation_completed_at = '2026-11-22 08:37:03+00'"
            " where user_id = 'uma' and content = 'How do I bleed a radiator?'",
            (TRICKY, json.dumps({"q": TRICKY, "n": [1, 2.5, None, True], "s": "\\N"})))
        conn.execute("set timezone = 'UTC'")
        reference = {row["id"]: row for (row,) in conn.execute(
            "select row_to_json(t) from byodb.messages t where user_id = 'uma'")}
    archive = await export_zip(api, "uma")
    assert_manifest_matches(archive)
    messages = table_rows(archive, "messages")
    assert len(messages) == len(reference) == 6
    for row in messages:
        # What PostgreSQL's own JSON says of the row (its vector would be a string there).
        expected = {k: v for k, v in reference[row["id"]].items() if k in row}
        assert {k: v for k, v in row.items() if k != "embedding"} == \
            {k: v for k, v in expected.items() if k != "embedding"}
    [tricky] = [m for m in messages if m["content"] == TRICKY]
    assert tricky["metadata"]["q"] == TRICKY and tricky["model"] is None
    [conversation] = json.loads(archive.read("conversations.json"))
    node = conversation["mapping"][tricky["id"]]
    assert node["message"]["content"]["parts"] == [TRICKY]
    assert node["message"]["metadata"]["model_slug"] is None
    [talk] = [n for n in archive.namelist() if n.startswith("markdown/conversations/")]
    assert f"## You · 2026-11-22T08:37:03+00:00\n\n{TRICKY}\n" in archive.read(talk).decode()


async def test_a_conversation_beyond_the_memory_bound_is_exported_the_same(
        api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    await seed_content(api, "val")
    whole = await export_zip(api, "val")
    # Every message after the first of a conversation waits in a temporary file.
    monkeypatch.setattr(export, "CONVERSATION_MEMORY", 1)
    spilled = await export_zip(api, "val")
    assert spilled.read("conversations.json") == whole.read("conversations.json")
    assert_chatgpt_layout(spilled, "Boiler questions")
