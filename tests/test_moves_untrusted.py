"""A user's own database is untrusted input: whatever its owner plants in it, migrating back
to main refuses with a clear code, leaves other users' rows on main byte for byte as they
were, writes nothing of the attacker's to main, and leaves the source holding its rows."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from psycopg import sql

from byodb.content.limits import MAX_FILE_BYTES
from byodb.ids import new_id
from byodb.instances.lifecycle.move_plan import MoveRefused
from byodb.instances.lifecycle.moves import move_user_content
from tests.instances_support import deploy_schema
from tests.moves_support import Conn, connect, everything, insert, row_count

ATTACKER = "attacker"
VICTIM = "victim"


# --- arrangement -------------------------------------------------------------------------


class Victim:
    def __init__(self, conversation: uuid.UUID, message: uuid.UUID) -> None:
        self.conversation = conversation
        self.message = message


@pytest.fixture
async def victim(main: Conn) -> Victim:
    """Another user with content on main: what an attacker would like to overwrite."""
    conversation = await insert(main, "conversations", user_id=VICTIM, title="Private plans")
    message = await insert(main, "messages", user_id=VICTIM, conversation_id=conversation,
                           role="user", content="the victim's own words")
    await insert(main, "usage_records", user_id=VICTIM, date="2025-01-01", model="m",
                 input_tokens=5, request_count=1)
    return Victim(conversation, message)


@pytest.fixture
async def hostile(user_db_url: str) -> AsyncIterator[Conn]:
    """The attacker's own database, with the content schema and one honest conversation.

    Connected as its owner (a plain login role, as providers hand out), so the test can
    plant what any database owner can plant."""
    await deploy_schema(user_db_url)
    conn = await connect(user_db_url)
    own = await insert(conn, "conversations", user_id=ATTACKER, title="Mine")
    await insert(conn, "messages", user_id=ATTACKER, conversation_id=own, role="user",
                 content="hello")
    yield conn
    await conn.close()


async def refused_move(source: Conn, main: Conn) -> MoveRefused:
    """Migrate the attacker back to main; it must be refused and change nothing anywhere
    (comparing every row of every user on main covers the victim's rows and the attacker's)."""
    main_before, source_before = await everything(main), await everything(source)
    with pytest.raises(MoveRefused) as refused:
        await move_user_content(source, main, ATTACKER, lock_source_tables=True)
    assert refused.value.status == 409
    main_after = await everything(main)
    assert main_after == main_before, "rows on main changed"
    assert await everything(source) == source_before, "the source lost rows"
    return refused.value


# --- the attacks ---------------------------------------------------------------------------


async def test_reused_ids_of_another_users_rows_are_refused(
        hostile: Conn, main: Conn, victim: Victim) -> None:
    # The victim's conversation id, owned by the attacker on their database: an upsert by
    # id would have overwritten the victim's title with the attacker's.
    await insert(hostile, "conversations", id=victim.conversation, user_id=ATTACKER,
                 title="Overwritten by the attacker")
    refused = await refused_move(hostile, main)
    assert refused.code == "move_id_conflict"
    assert "conversations" in refused.message and "Overwritten" not in refused.message


async def test_rows_with_another_users_id_are_refused_even_when_the_filter_lies(
        hostile: Conn, main: Conn, victim: Victim) -> None:
    # byodb is on the pinned search_path, and the owner may create operators in it. With
    # user_id turned into varchar, `user_id = 'attacker'` resolves to the owner's
    # always-true operator: the source's filter returns every row.
    await hostile.execute("alter table byodb.conversations alter column user_id type varchar")
    await hostile.execute(
        "create function byodb.always(varchar, varchar) returns boolean "
        "language sql immutable as 'select true'")
    await hostile.execute(
        "create operator byodb.= (leftarg = varchar, rightarg = varchar, "
        "function = byodb.always)")
    await insert(hostile, "conversations", user_id=VICTIM, title="Planted for the victim")
    cursor = await hostile.execute(
        "select count(*) from byodb.conversations where user_id = %s", (ATTACKER,))
    assert (await cursor.fetchone() or [0])[0] == 2, "the filter should be fooled"
    refused = await refused_move(hostile, main)
    assert refused.code == "move_foreign_rows"
    assert refused.message.startswith("1 rows of conversations belong to another account")


async def test_a_hostile_equals_operator_is_kept_out_by_the_pinned_path_and_the_target_check(
        hostile: Conn, main: Conn, victim: Victim, user_db_url: str) -> None:
    await insert(hostile, "conversations", user_id=VICTIM, title="Planted for the victim")
    await hostile.execute(
        "create function public.always(text, text) returns boolean "
        "language sql immutable as 'select true'")
    await hostile.execute(
        "create operator public.= (leftarg = text, rightarg = text, function = public.always)")
    database = (await (await hostile.execute("select current_database()")).fetchone() or [""])[0]
    await hostile.execute(sql.SQL("alter database {} set search_path = public, pg_catalog")
                          .format(sql.Identifier(database)))

    # A connection that trusts the database's settings: its filter matches every row, and
    # the check on main refuses the victim's row.
    unpinned = await connect(user_db_url, pinned=False)
    try:
        path = await (await unpinned.execute("show search_path")).fetchone()
        assert path and path[0] == "public, pg_catalog"
        refused = await refused_move(unpinned, main)
        assert refused.code == "move_foreign_rows"
    finally:
        await unpinned.close()

    # A pinned connection (what byodb opens): pg_catalog's `=` decides, only the attacker's
    # own rows move, and the planted row stays where it was.
    pinned = await connect(user_db_url)
    try:
        path = await (await pinned.execute("show search_path")).fetchone()
        assert path and path[0].replace(" ", "") == "pg_catalog,byodb"
        victim_before = await everything(main, VICTIM)
        report = await move_user_content(pinned, main, ATTACKER, lock_source_tables=True)
        assert report.rows["conversations"] == 1 and report.rows["messages"] == 1
        assert await everything(main, VICTIM) == victim_before
        assert row_count(await everything(main, ATTACKER)) == 2
        assert row_count(await everything(pinned)) == 1  # the planted row, left behind
    finally:
        await pinned.close()


async def test_a_five_megabyte_title_is_refused(hostile: Conn, main: Conn,
                                                 victim: Victim) -> None:
    await insert(hostile, "conversations", user_id=ATTACKER, title="x" * 5_000_000)
    refused = await refused_move(hostile, main)
    assert refused.code == "move_invalid_content"
    assert "conversations" in refused.message and "title" in refused.message
    assert "xxxx" not in refused.message


async def test_a_message_in_another_users_conversation_is_refused(
        hostile: Conn, main: Conn, victim: Victim) -> None:
    # Without its foreign key the attacker's database accepts a message whose conversation
    # is the victim's; on main the foreign key alone would happily attach it there.
    await hostile.execute(
        "alter table byodb.messages drop constraint fk_messages_conversation_id")
    await insert(hostile, "messages", user_id=ATTACKER, conversation_id=victim.conversation,
                 role="assistant", content="Injected into the victim's chat")
    refused = await refused_move(hostile, main)
    assert refused.code == "move_id_conflict"
    assert "messages" in refused.message and "conversation_id" in refused.message


async def test_a_reference_to_a_row_that_exists_nowhere_is_refused(
        hostile: Conn, main: Conn, victim: Victim) -> None:
    await hostile.execute(
        "alter table byodb.messages drop constraint fk_messages_conversation_id")
    await insert(hostile, "messages", user_id=ATTACKER, conversation_id=new_id(),
                 role="user", content="orphan")
    refused = await refused_move(hostile, main)
    assert refused.code == "move_invalid_content"


async def test_a_value_outside_a_check_constraint_is_refused_without_quoting_it(
        hostile: Conn, main: Conn, victim: Victim) -> None:
    await hostile.execute("alter table byodb.messages drop constraint ck_messages_role")
    own = await insert(hostile, "conversations", user_id=ATTACKER, title="t")
    await insert(hostile, "messages", user_id=ATTACKER, conversation_id=own,
                 role="secret-role-value", content="c")
    refused = await refused_move(hostile, main)
    assert refused.code == "move_invalid_content"
    assert "secret-role-value" not in refused.message


async def test_repeated_ids_are_refused(hostile: Conn, main: Conn, victim: Victim) -> None:
    await hostile.execute("alter table byodb.tags drop constraint pk_tags cascade")
    tag = new_id()
    for name in ("one", "two"):
        await insert(hostile, "tags", id=tag, user_id=ATTACKER, name=name, scope="user")
    refused = await refused_move(hostile, main)
    assert refused.code == "move_invalid_content" and "repeat an id" in refused.message


@pytest.mark.parametrize(("table", "values", "column"), [
    ("usage_records", {"date": "2025-01-01", "model": "m", "input_tokens": -1_000_000},
     "input_tokens"),
    ("usage_records", {"date": "2025-01-01", "model": "m", "cost": "NaN"}, "cost"),
    ("tts_cache", {"hash": "../../etc", "audio": b"a", "text": "t", "voice": "v",
                   "expires_at": "2030-01-01T00:00:00Z"}, "hash"),
    ("tool_calls", {"tool_name": "t", "status": "complete",
                    "tool_args": {"blob": "y" * 300_000}}, "tool_args"),
    ("attachments", {"filename": "a", "mime_type": "x/y", "size": 1,
                     "content": b"z" * (5 * 1024 * 1024 + 1)}, "content"),
])
async def test_values_beyond_the_apis_limits_are_refused(
        hostile: Conn, main: Conn, victim: Victim, table: str, values: dict[str, Any],
        column: str) -> None:
    if table in ("tool_calls", "attachments"):
        conversation = await insert(hostile, "conversations", user_id=ATTACKER)
        values["message_id"] = await insert(hostile, "messages", user_id=ATTACKER,
                                            conversation_id=conversation, role="user",
                                            content="c")
    await insert(hostile, table, user_id=ATTACKER, **values)
    refused = await refused_move(hostile, main)
    assert refused.code == "move_invalid_content"
    assert table in refused.message and column in refused.message


async def test_file_bytes_are_bounded_by_the_upload_limit(hostile: Conn, main: Conn) -> None:
    await insert(hostile, "files", user_id=ATTACKER, filename="big.bin", mime_type="x/y",
                 size=MAX_FILE_BYTES, content=b"\0" * MAX_FILE_BYTES)
    report = await move_user_content(hostile, main, ATTACKER, lock_source_tables=True)
    assert report.rows["files"] == 1
    await insert(hostile, "files", user_id=ATTACKER, filename="bigger.bin", mime_type="x/y",
                 size=MAX_FILE_BYTES + 1, content=b"\0" * (MAX_FILE_BYTES + 1))
    refused = await refused_move(hostile, main)
    assert refused.code == "move_invalid_content" and "files" in refused.message
