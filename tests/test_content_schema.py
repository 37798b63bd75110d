"""The content schema's promises, checked on a real PostgreSQL 18 with pgvector.

Every database test gets a fresh, empty database (``empty_database_url``, from the
suite's conftest) and creates the schema through the public interface
(``create_content_schema`` or the exported script), then asserts what services, deploy
and data moves rely on: where the tables are, how they are scoped, indexed, searched and
constrained.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import (
    CheckConstraint,
    Connection,
    Engine,
    ForeignKeyConstraint,
    Table,
    UniqueConstraint,
    create_engine,
    delete,
    func,
    insert,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import DBAPIError, IntegrityError, ProgrammingError

import byodb.content
from byodb.content import (
    CONTENT_SCHEMA,
    CONTENT_SCHEMA_VERSION,
    SCHEMA_CHANGELOG,
    VERSION_STEPS,
    content_schema_sql,
    content_schema_statements,
    content_table_names,
    create_content_schema,
    latest_schema_version,
    meta_insert_sql,
    metadata,
    steps_between,
)
from byodb.content import tables as t

# DESIGN.md §3, "user" placement, in snake_case: the schema must hold exactly these.
DESIGN_CONTENT_TABLES = frozenset(
    {
        "conversations",
        "conversation_participants",
        "messages",
        "tool_calls",
        "sources",
        "attachments",
        "memories",
        "files",
        "file_chunks",
        "projects",
        "project_conversations",
        "project_notes",
        "project_files",
        "notes",
        "bookmarks",
        "snippets",
        "tasks",
        "tags",
        "conversation_tags",
        "note_tags",
        "task_tags",
        "usage_records",
        "tts_cache",
        "presentations",
        "slides",
        "outline_items",
        "design_templates",
        "presentation_sessions",
        "activity_events",
    }
)

# (table, column, allowed values) for every text enum.
ENUMS: list[tuple[Table, str, tuple[str, ...]]] = [
    (t.conversation_participants, "role", t.PARTICIPANT_ROLES),
    (t.messages, "role", t.MESSAGE_ROLES),
    (t.messages, "status", t.MESSAGE_STATUSES),
    (t.tool_calls, "status", t.TOOL_CALL_STATUSES),
    (t.memories, "source", t.MEMORY_SOURCES),
    (t.files, "status", t.FILE_STATUSES),
    (t.tasks, "status", t.TASK_STATUSES),
    (t.tasks, "priority", t.TASK_PRIORITIES),
    (t.tags, "scope", t.TAG_SCOPES),
    (t.presentations, "status", t.PRESENTATION_STATUSES),
    (t.slides, "type", t.SLIDE_TYPES),
]

# sha256 of the whitespace-normalised DDL of each released version. A failing
# comparison means the tables changed: bump CONTENT_SCHEMA_VERSION, add a changelog line
# and a frozen step (see byodb.content.steps), then record the new version's digest here.
DDL_FINGERPRINTS: dict[int, str] = {
    1: "e3e9bac49fcdabff6f84dc5fad94f9a05a8a0a09a9ae192b0592451c569d4813",
    2: "a7f81c75c091a04cc86682c5ea4169aa776bdf58503404a38d922a88e0d06333",
}

USER = "user_2abcDEF"


def new_id() -> uuid.UUID:
    return uuid.uuid4()


@pytest.fixture
def engine(empty_database_url: str) -> Iterator[Engine]:
    engine = create_engine(empty_database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def schema_engine(engine: Engine) -> Engine:
    """A database holding the current content schema and its byodb_meta row."""
    with engine.begin() as connection:
        create_content_schema(connection)
        connection.exec_driver_sql(meta_insert_sql(CONTENT_SCHEMA_VERSION))
    return engine


def add_conversation(connection: Connection, **values: Any) -> uuid.UUID:
    conversation_id = new_id()
    row = {"id": conversation_id, "user_id": USER, "title": "A conversation"} | values
    connection.execute(insert(t.conversations).values(**row))
    return conversation_id


def add_message(connection: Connection, conversation_id: uuid.UUID, **values: Any) -> uuid.UUID:
    message_id = new_id()
    row = {
        "id": message_id,
        "conversation_id": conversation_id,
        "user_id": USER,
        "role": "user",
        "content": "Hello there",
    } | values
    connection.execute(insert(t.messages).values(**row))
    return message_id


def sqlstate(error: DBAPIError) -> str | None:
    return getattr(error.orig, "sqlstate", None)


def constraint_name(error: DBAPIError) -> str | None:
    diag = getattr(error.orig, "diag", None)
    return getattr(diag, "constraint_name", None)


# --- what the schema holds ---------------------------------------------------------


def test_metadata_describes_exactly_the_design_content_tables() -> None:
    names = content_table_names()
    assert len(names) == 29
    assert set(names) == DESIGN_CONTENT_TABLES
    assert {table.name for table in metadata.tables.values()} == DESIGN_CONTENT_TABLES | {
        "byodb_meta"
    }
    assert all(table.schema == CONTENT_SCHEMA == "byodb" for table in metadata.tables.values())


def test_deploy_creates_all_content_tables_and_meta_in_schema_byodb(
    schema_engine: Engine,
) -> None:
    with schema_engine.connect() as connection:
        in_byodb = set(
            connection.scalars(
                text(
                    "SELECT table_name FROM information_schema.tables "
                    "WHERE table_schema = 'byodb' AND table_type = 'BASE TABLE'"
                )
            )
        )
        in_public = connection.scalar(
            text("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'")
        )
    assert in_byodb == DESIGN_CONTENT_TABLES | {"byodb_meta"}
    assert in_public == 0


def test_table_names_come_in_foreign_key_dependency_order() -> None:
    position = {name: index for index, name in enumerate(content_table_names())}
    for table in metadata.tables.values():
        for fk in table.foreign_keys:
            parent = fk.column.table.name
            if parent != table.name:
                assert position[parent] < position[table.name], (parent, table.name)


def test_every_content_table_has_user_id_and_an_index_led_by_it(schema_engine: Engine) -> None:
    with schema_engine.connect() as connection:
        user_id_columns = {
            row.table_name: (row.data_type, row.is_nullable)
            for row in connection.execute(
                text(
                    "SELECT table_name, data_type, is_nullable FROM information_schema.columns "
                    "WHERE table_schema = 'byodb' AND column_name = 'user_id'"
                )
            )
        }
        led_by_user_id = set(
            connection.scalars(
                text(
                    "SELECT DISTINCT c.relname FROM pg_index i "
                    "JOIN pg_class c ON c.oid = i.indrelid "
                    "JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = i.indkey[0] "
                    "WHERE n.nspname = 'byodb' AND a.attname = 'user_id'"
                )
            )
        )
    assert user_id_columns == dict.fromkeys(DESIGN_CONTENT_TABLES, ("text", "NO"))
    assert led_by_user_id == DESIGN_CONTENT_TABLES


def test_ids_are_uuids_without_a_server_default(schema_engine: Engine) -> None:
    with schema_engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT table_name, data_type, column_default FROM information_schema.columns "
                "WHERE table_schema = 'byodb' AND column_name = 'id' AND table_name <> 'byodb_meta'"
            )
        ).all()
    assert {row.table_name for row in rows} == DESIGN_CONTENT_TABLES
    assert {(row.data_type, row.column_default) for row in rows} == {("uuid", None)}


def test_every_foreign_key_column_is_indexed_and_stays_in_schema_byodb(
    schema_engine: Engine,
) -> None:
    with schema_engine.connect() as connection:
        unindexed = connection.execute(
            text(
                "SELECT con.conname FROM pg_constraint con "
                "JOIN pg_namespace n ON n.oid = con.connamespace "
                "WHERE n.nspname = 'byodb' AND con.contype = 'f' AND NOT EXISTS ("
                "  SELECT 1 FROM pg_index i "
                "  WHERE i.indrelid = con.conrelid AND i.indkey[0] = con.conkey[1])"
            )
        ).all()
        foreign_targets = connection.execute(
            text(
                "SELECT con.conname FROM pg_constraint con "
                "JOIN pg_class target ON target.oid = con.confrelid "
                "JOIN pg_namespace n ON n.oid = target.relnamespace "
                "WHERE con.contype = 'f' AND n.nspname <> 'byodb'"
            )
        ).all()
        foreign_key_count = connection.scalar(
            text(
                "SELECT count(*) FROM pg_constraint con "
                "JOIN pg_namespace n ON n.oid = con.connamespace "
                "WHERE n.nspname = 'byodb' AND con.contype = 'f'"
            )
        )
    assert unindexed == []
    assert foreign_targets == []
    assert foreign_key_count == sum(
        len(tb.foreign_key_constraints) for tb in metadata.tables.values()
    )


def test_database_names_of_indexes_and_constraints_are_the_metadata_names(
    schema_engine: Engine,
) -> None:
    expected_indexes: set[str] = set()
    expected_constraints: set[str] = set()
    for table in metadata.tables.values():
        expected_indexes |= {str(index.name) for index in table.indexes}
        for constraint in table.constraints:
            name = str(constraint.name)
            expected_constraints.add(name)
            if not isinstance(constraint, (CheckConstraint, ForeignKeyConstraint)):
                expected_indexes.add(name)  # primary keys and UNIQUEs are backed by one
    assert all(len(name) <= 63 for name in expected_indexes | expected_constraints)

    with schema_engine.connect() as connection:
        indexes = set(
            connection.scalars(text("SELECT indexname FROM pg_indexes WHERE schemaname = 'byodb'"))
        )
        constraints = set(
            connection.scalars(
                text(
                    "SELECT con.conname FROM pg_constraint con "
                    "JOIN pg_namespace n ON n.oid = con.connamespace "
                    "WHERE n.nspname = 'byodb' AND con.contype IN ('p', 'u', 'f', 'c')"
                )
            )
        )
    assert indexes == expected_indexes
    assert constraints == expected_constraints


def test_seed_index_names_are_kept_in_snake_case() -> None:
    names = {str(index.name) for table in metadata.tables.values() for index in table.indexes}
    assert {
        "ix_conversations_user_last_message",
        "ix_messages_conversation_created",
        "ix_memories_user_active",
        "ix_tasks_user_due",
        "ix_usage_records_user_date",
        "ix_presentation_sessions_user_active",
    } <= names
    last_message = next(
        index
        for index in t.conversations.indexes
        if index.name == "ix_conversations_user_last_message"
    )
    assert [column.name for column in last_message.columns] == ["user_id", "last_message_at"]


# --- vector search ------------------------------------------------------------------


def test_embeddings_have_hnsw_cosine_indexes(schema_engine: Engine) -> None:
    with schema_engine.connect() as connection:
        hnsw = {
            row.tablename: row.indexdef
            for row in connection.execute(
                text(
                    "SELECT tablename, indexdef FROM pg_indexes "
                    "WHERE schemaname = 'byodb' AND indexdef ILIKE '%USING hnsw%'"
                )
            )
        }
        column_types = {
            relname: type_name
            for relname, type_name in connection.execute(
                text(
                    "SELECT c.relname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
                    "JOIN pg_class c ON c.oid = a.attrelid "
                    "JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE n.nspname = 'byodb' AND c.relkind = 'r' AND a.attname = 'embedding'"
                )
            )
        }
    assert set(hnsw) == {"messages", "memories", "file_chunks"}
    for indexdef in hnsw.values():
        assert "(embedding vector_cosine_ops)" in indexdef
        assert "m='16'" in indexdef
        assert "ef_construction='64'" in indexdef
    assert column_types == dict.fromkeys(hnsw, "vector(1536)")


def test_embedding_of_the_wrong_dimension_is_rejected(schema_engine: Engine) -> None:
    with schema_engine.begin() as connection:
        conversation_id = add_conversation(connection)
    with pytest.raises(DBAPIError) as raised, schema_engine.begin() as connection:
        add_message(connection, conversation_id, embedding=[0.5] * 3)
    assert "1536" in str(raised.value.orig)


def test_nearest_embedding_is_found_by_cosine_distance(schema_engine: Engine) -> None:
    near = [1.0] + [0.0] * 1535
    far = [0.0, 1.0] + [0.0] * 1534
    with schema_engine.begin() as connection:
        conversation_id = add_conversation(connection)
        near_id = add_message(connection, conversation_id, content="near", embedding=near)
        add_message(connection, conversation_id, content="far", embedding=far)
        add_message(connection, conversation_id, content="not embedded yet")
        query = [0.9, 0.1] + [0.0] * 1534
        nearest = connection.scalars(
            select(t.messages.c.id)
            .where(t.messages.c.user_id == USER, t.messages.c.embedding.is_not(None))
            .order_by(t.messages.c.embedding.cosine_distance(query))
            .limit(1)
        ).one()
    assert nearest == near_id


# --- full-text search ----------------------------------------------------------------

TSVECTOR_COLUMNS = {
    ("conversations", "title_tsv"),
    ("messages", "content_tsv"),
    ("memories", "content_tsv"),
    ("notes", "content_tsv"),
}


def test_tsvector_columns_are_generated_and_gin_indexed(schema_engine: Engine) -> None:
    with schema_engine.connect() as connection:
        generated = {
            (row.table_name, row.column_name)
            for row in connection.execute(
                text(
                    "SELECT table_name, column_name FROM information_schema.columns "
                    "WHERE table_schema = 'byodb' AND data_type = 'tsvector' "
                    "AND is_generated = 'ALWAYS'"
                )
            )
        }
        gin = {
            # indexdef ends in "USING gin (<column>)"
            (row.tablename, row.indexdef.rsplit("(", 1)[1].rstrip(")"))
            for row in connection.execute(
                text(
                    "SELECT tablename, indexdef FROM pg_indexes "
                    "WHERE schemaname = 'byodb' AND indexdef ILIKE '%USING gin%'"
                )
            )
        }
    assert generated == TSVECTOR_COLUMNS
    assert gin == TSVECTOR_COLUMNS


def test_text_search_finds_rows_by_their_words(schema_engine: Engine) -> None:
    with schema_engine.begin() as connection:
        conversation_id = add_conversation(connection, title="Quarterly budget planning")
        add_message(connection, conversation_id, content="The kangaroos were jumping around")
        connection.execute(
            insert(t.memories).values(
                id=new_id(), user_id=USER, content="Prefers dark roast coffee in the morning"
            )
        )
        connection.execute(
            insert(t.notes).values(
                id=new_id(), user_id=USER, title="Gardening plan", content="Plant tomatoes in May"
            )
        )

    def hits(table: str, column: str, query: str) -> int:
        with schema_engine.connect() as connection:
            found = connection.scalar(
                text(
                    f"SELECT count(*) FROM byodb.{table} "
                    f"WHERE user_id = :user AND {column} @@ websearch_to_tsquery('english', :q)"
                ),
                {"user": USER, "q": query},
            )
        return int(found or 0)

    assert hits("conversations", "title_tsv", "budgets") == 1
    assert hits("messages", "content_tsv", "kangaroo jump") == 1
    assert hits("memories", "content_tsv", '"dark roast"') == 1
    assert hits("notes", "content_tsv", "gardening") == 1  # the title is searched
    assert hits("notes", "content_tsv", "tomato") == 1  # and so is the content
    assert hits("messages", "content_tsv", "zebra") == 0


# --- constraints -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("table", "column", "values"), ENUMS, ids=[f"{tb.name}.{col}" for tb, col, _ in ENUMS]
)
def test_enum_values_in_python_match_the_named_check(
    table: Table, column: str, values: tuple[str, ...]
) -> None:
    checks = {str(c.name): c for c in table.constraints if isinstance(c, CheckConstraint)}
    check = checks[f"ck_{table.name}_{column}"]
    quoted = ", ".join(f"'{value}'" for value in values)
    assert str(check.sqltext) == f"{column} IN ({quoted})"


def test_database_checks_allow_exactly_the_python_enum_values(schema_engine: Engine) -> None:
    with schema_engine.connect() as connection:
        definitions = {
            name: definition
            for name, definition in connection.execute(
                text(
                    "SELECT con.conname, pg_get_constraintdef(con.oid) FROM pg_constraint con "
                    "JOIN pg_namespace n ON n.oid = con.connamespace "
                    "WHERE n.nspname = 'byodb' AND con.contype = 'c'"
                )
            )
        }
    for table, column, values in ENUMS:
        definition = definitions[f"ck_{table.name}_{column}"]
        assert set(re.findall(r"'([^']*)'::text", definition)) == set(values), definition


Row = Callable[[Connection], tuple[Table, dict[str, Any]]]


def _message_row(connection: Connection) -> tuple[Table, dict[str, Any]]:
    conversation_id = add_conversation(connection)
    return t.messages, {
        "id": new_id(),
        "conversation_id": conversation_id,
        "user_id": USER,
        "role": "user",
        "content": "hi",
    }


def _task_row(connection: Connection) -> tuple[Table, dict[str, Any]]:
    return t.tasks, {"id": new_id(), "user_id": USER, "title": "Do it", "status": "todo"}


def _tag_row(connection: Connection) -> tuple[Table, dict[str, Any]]:
    return t.tags, {"id": new_id(), "user_id": USER, "name": "work", "scope": "user"}


@pytest.mark.parametrize(
    ("make_row", "column", "bad_value"),
    [
        (_message_row, "role", "robot"),
        (_message_row, "status", "thinking"),
        (_task_row, "status", "someday"),
        (_task_row, "priority", "whenever"),
        (_tag_row, "scope", "team"),
    ],
)
def test_an_unknown_enum_value_is_a_check_violation(
    schema_engine: Engine, make_row: Row, column: str, bad_value: str
) -> None:
    with schema_engine.begin() as connection:
        table, row = make_row(connection)
        connection.execute(insert(table).values(**row))  # the valid row is accepted
    with pytest.raises(IntegrityError) as raised, schema_engine.begin() as connection:
        table, row = make_row(connection)
        connection.execute(insert(table).values(**(row | {column: bad_value})))
    assert sqlstate(raised.value) == "23514"  # check_violation
    assert constraint_name(raised.value) == f"ck_{table.name}_{column}"


def test_junction_pairs_are_unique(schema_engine: Engine) -> None:
    with schema_engine.begin() as connection:
        conversation_id = add_conversation(connection)
        tag_id = new_id()
        connection.execute(insert(t.tags).values(id=tag_id, user_id=USER, name="x", scope="user"))
        pair = {"conversation_id": conversation_id, "tag_id": tag_id, "user_id": USER}
        connection.execute(insert(t.conversation_tags).values(id=new_id(), **pair))
    with pytest.raises(IntegrityError) as raised, schema_engine.begin() as connection:
        connection.execute(insert(t.conversation_tags).values(id=new_id(), **pair))
    assert constraint_name(raised.value) == "uq_conversation_tags_conversation_id_tag_id"


def test_usage_records_are_upserted_per_user_day_and_model(schema_engine: Engine) -> None:
    day = dt.date(2025, 3, 14)
    for tokens in (100, 250):
        statement = pg_insert(t.usage_records).values(
            id=new_id(), user_id=USER, date=day, model="gpt-x", input_tokens=tokens, request_count=1
        )
        statement = statement.on_conflict_do_update(
            index_elements=["user_id", "date", "model"],
            set_={
                "input_tokens": t.usage_records.c.input_tokens + statement.excluded.input_tokens,
                "request_count": t.usage_records.c.request_count + 1,
            },
        )
        with schema_engine.begin() as connection:
            connection.execute(statement)
    with schema_engine.connect() as connection:
        rows = connection.execute(
            select(t.usage_records.c.input_tokens, t.usage_records.c.request_count)
        ).all()
    assert [tuple(row) for row in rows] == [(350, 2)]


def test_defaults_fill_flags_counters_and_times(schema_engine: Engine) -> None:
    with schema_engine.begin() as connection:
        conversation_id = add_conversation(connection)
        memory_id = new_id()
        connection.execute(insert(t.memories).values(id=memory_id, user_id=USER, content="x"))
        conversation = connection.execute(
            select(t.conversations).where(t.conversations.c.id == conversation_id)
        ).one()
        memory = connection.execute(select(t.memories).where(t.memories.c.id == memory_id)).one()
    assert (conversation.is_archived, conversation.is_pinned, conversation.message_count) == (
        False,
        False,
        0,
    )
    assert conversation.created_at.tzinfo is not None
    assert memory.is_active is True


# --- deletes -----------------------------------------------------------------------


def test_deleting_a_conversation_cascades_to_its_messages(schema_engine: Engine) -> None:
    with schema_engine.begin() as connection:
        conversation_id = add_conversation(connection)
        message_id = add_message(connection, conversation_id)
        reply_id = add_message(connection, conversation_id, role="assistant", content="Hi")
        connection.execute(
            insert(t.tool_calls).values(
                id=new_id(),
                message_id=reply_id,
                user_id=USER,
                tool_name="search",
                tool_args={"q": "x"},
                status="complete",
            )
        )
        connection.execute(
            insert(t.bookmarks).values(
                id=new_id(), user_id=USER, message_id=message_id, conversation_id=conversation_id
            )
        )
        memory_id = new_id()
        connection.execute(
            insert(t.memories).values(
                id=memory_id,
                user_id=USER,
                content="likes tea",
                source_conversation_id=conversation_id,
                source_message_id=message_id,
            )
        )
        other_conversation = add_conversation(connection)
        add_message(connection, other_conversation)

        connection.execute(delete(t.conversations).where(t.conversations.c.id == conversation_id))

        def count(table: Table) -> int:
            return int(connection.scalar(select(func.count()).select_from(table)) or 0)

        assert count(t.messages) == 1  # only the other conversation's message
        assert count(t.tool_calls) == 0
        assert count(t.bookmarks) == 0
        memory = connection.execute(
            select(t.memories.c.source_conversation_id, t.memories.c.source_message_id)
        ).one()
        assert tuple(memory) == (None, None)  # the memory itself is kept


def test_deleting_a_parent_message_detaches_its_branches(schema_engine: Engine) -> None:
    with schema_engine.begin() as connection:
        conversation_id = add_conversation(connection)
        parent_id = add_message(connection, conversation_id)
        child_id = add_message(connection, conversation_id, parent_message_id=parent_id)
        connection.execute(delete(t.messages).where(t.messages.c.id == parent_id))
        parent = connection.scalar(
            select(t.messages.c.parent_message_id).where(t.messages.c.id == child_id)
        )
    assert parent is None


# --- DDL and byodb_meta -----------------------------------------------------------


def test_schema_sql_is_deterministic_across_processes() -> None:
    here = content_schema_sql()
    assert here == content_schema_sql()
    source_root = Path(byodb.content.__file__).resolve().parents[2]
    program = (
        "import hashlib, byodb.content as c; "
        "print(hashlib.sha256(c.content_schema_sql().encode()).hexdigest())"
    )
    digests = set()
    for seed in ("1", "2"):
        env = os.environ | {"PYTHONHASHSEED": seed, "PYTHONPATH": str(source_root)}
        result = subprocess.run(
            [sys.executable, "-c", program], env=env, capture_output=True, text=True, check=True
        )
        digests.add(result.stdout.strip())
    assert digests == {hashlib.sha256(here.encode()).hexdigest()}


def test_schema_sql_is_a_plain_script_of_the_executed_statements() -> None:
    script = content_schema_sql()
    statements = content_schema_statements()
    assert script == "".join(f"{statement};\n\n" for statement in statements)
    assert statements[:2] == [
        "CREATE EXTENSION IF NOT EXISTS vector",
        "CREATE SCHEMA IF NOT EXISTS byodb",
    ]
    assert "byodb_meta (" in script and "INSERT" not in script
    assert sum(s.startswith("CREATE TABLE byodb.") for s in statements) == 30
    # A psql user runs this file as is: no driver placeholders, no trailing blanks.
    assert "%(" not in script
    assert all(line == line.rstrip() for line in script.splitlines())


def test_schema_changes_come_with_a_version_bump() -> None:
    normalised = " ".join(content_schema_sql().split())
    digest = hashlib.sha256(normalised.encode()).hexdigest()
    assert DDL_FINGERPRINTS.get(CONTENT_SCHEMA_VERSION) == digest, (
        "the content tables changed: bump CONTENT_SCHEMA_VERSION, add a SCHEMA_CHANGELOG "
        "line and a frozen VERSION_STEPS entry, then record the digest in DDL_FINGERPRINTS"
    )


def test_the_frozen_version_1_ddl_is_the_one_released_with_version_1() -> None:
    # Every older database and `schema sql --version 1` depend on it never drifting.
    normalised = " ".join(content_schema_sql(version=1).split())
    assert hashlib.sha256(normalised.encode()).hexdigest() == DDL_FINGERPRINTS[1]


def test_the_exported_script_deploys_like_create_content_schema(engine: Engine) -> None:
    # The manual-deploy path: the whole script plus the meta row, as psql would run it.
    with engine.begin() as connection:
        connection.exec_driver_sql(content_schema_sql() + meta_insert_sql(CONTENT_SCHEMA_VERSION))
    with engine.connect() as connection:
        tables = set(
            connection.scalars(
                text(
                    "SELECT table_name FROM information_schema.tables WHERE table_schema = 'byodb'"
                )
            )
        )
        index_count = connection.scalar(
            text("SELECT count(*) FROM pg_indexes WHERE schemaname = 'byodb'")
        )
        version = connection.scalar(text("SELECT schema_version FROM byodb.byodb_meta"))
    assert tables == DESIGN_CONTENT_TABLES | {"byodb_meta"}
    assert index_count == sum(
        len(tb.indexes) + 1 + sum(isinstance(c, UniqueConstraint) for c in tb.constraints)
        for tb in metadata.tables.values()
    )
    assert version == CONTENT_SCHEMA_VERSION


def test_a_failed_deploy_leaves_the_database_as_it_was(engine: Engine) -> None:
    with engine.connect() as connection:
        transaction = connection.begin()
        create_content_schema(connection)
        transaction.rollback()  # as if the deploy died before committing
        leftovers = connection.scalar(
            text(
                "SELECT count(*) FROM pg_namespace n LEFT JOIN pg_class c "
                "ON c.relnamespace = n.oid WHERE n.nspname = 'byodb'"
            )
        )
    assert leftovers == 0


def test_creating_the_schema_twice_fails_instead_of_mixing_versions(schema_engine: Engine) -> None:
    # Deploy decides by reading byodb_meta; the DDL itself never half-applies over a schema.
    with pytest.raises(ProgrammingError) as raised, schema_engine.begin() as connection:
        create_content_schema(connection)
    assert sqlstate(raised.value) == "42P07"  # duplicate_table


def test_meta_row_is_single_and_names_version_and_instance(schema_engine: Engine) -> None:
    with schema_engine.connect() as connection:
        row = connection.execute(select(t.byodb_meta)).one()
    assert row.id == 1
    assert row.schema_version == CONTENT_SCHEMA_VERSION
    assert isinstance(row.instance_id, uuid.UUID)
    assert row.deployed_at is not None and row.updated_at is not None

    with pytest.raises(IntegrityError), schema_engine.begin() as connection:
        connection.exec_driver_sql(meta_insert_sql(CONTENT_SCHEMA_VERSION))
    with pytest.raises(IntegrityError) as raised, schema_engine.begin() as connection:
        connection.execute(
            insert(t.byodb_meta).values(id=2, schema_version=1, instance_id=new_id())
        )
    assert constraint_name(raised.value) == "ck_byodb_meta_single_row"

    with schema_engine.begin() as connection:
        connection.execute(delete(t.byodb_meta))
        connection.exec_driver_sql(meta_insert_sql(CONTENT_SCHEMA_VERSION))
        fresh = connection.scalar(select(t.byodb_meta.c.instance_id))
    assert fresh != row.instance_id  # every run of the script gets its own instance id


@pytest.mark.parametrize("bad", [0, -1, True])
def test_meta_insert_sql_refuses_a_version_that_cannot_exist(bad: int) -> None:
    with pytest.raises(ValueError, match="positive integer"):
        meta_insert_sql(bad)


# --- versions and steps -----------------------------------------------------------


def test_every_version_has_a_step_and_a_changelog_line() -> None:
    assert latest_schema_version() == CONTENT_SCHEMA_VERSION >= 1
    assert set(SCHEMA_CHANGELOG) == set(range(1, CONTENT_SCHEMA_VERSION + 1))
    assert all(line.strip() for line in SCHEMA_CHANGELOG.values())
    assert set(VERSION_STEPS) == set(range(2, CONTENT_SCHEMA_VERSION + 1))
    for version, statements in VERSION_STEPS.items():
        assert statements, f"version {version} has an empty step"
        assert all(isinstance(s, str) and s.strip() for s in statements)
    assert [v for v, _ in steps_between(1, CONTENT_SCHEMA_VERSION)] == list(
        range(2, CONTENT_SCHEMA_VERSION + 1)
    )


def test_steps_between_the_same_version_is_nothing_to_do() -> None:
    assert steps_between(CONTENT_SCHEMA_VERSION, CONTENT_SCHEMA_VERSION) == []


def test_steps_between_refuses_a_downgrade() -> None:
    with pytest.raises(ValueError, match="only go forward"):
        steps_between(3, 2, steps={2: ("SELECT 2",), 3: ("SELECT 3",)})


def test_steps_between_refuses_a_gap_or_an_unknown_version() -> None:
    steps = {2: ("SELECT 2",), 4: ("SELECT 4",)}
    with pytest.raises(ValueError, match="to schema version 3"):
        steps_between(1, 4, steps=steps)
    with pytest.raises(ValueError, match="schema version"):
        steps_between(CONTENT_SCHEMA_VERSION, CONTENT_SCHEMA_VERSION + 1)


def test_steps_between_refuses_an_undeployed_database() -> None:
    with pytest.raises(ValueError, match="not a deployed version"):
        steps_between(0, 1)


def test_steps_between_returns_the_steps_in_order() -> None:
    steps = {2: ("SELECT 2",), 3: ("SELECT 3a", "SELECT 3b"), 4: ("SELECT 4",)}
    assert steps_between(1, 3, steps=steps) == [(2, ("SELECT 2",)), (3, ("SELECT 3a", "SELECT 3b"))]
    assert steps_between(3, 4, steps=steps) == [(4, ("SELECT 4",))]
