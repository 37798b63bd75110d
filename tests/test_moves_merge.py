"""A move into a database that already holds the user's content merges instead of failing
(keep → chat on main → reconnect, or migrate back after chatting on both): the same row is
one row, the newer edit wins, a day's usage is added up, a tag name stays one tag, and a move
run again — also after an interruption — adds nothing twice and loses nothing."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from byodb.content.deploy import deploy_content_schema
from byodb.ids import new_id
from byodb.instances.lifecycle.move_plan import MoveReport, MoveVerificationError
from byodb.instances.lifecycle.moves import move_user_content
from tests.instances_support import deploy_schema
from tests.moves_support import Conn, connect, everything, insert, row_count

USER = "ada"
EARLIER = datetime(2025, 1, 1, tzinfo=UTC)
LATER = EARLIER + timedelta(hours=1)


@pytest.fixture
async def own(user_db_url: str) -> AsyncIterator[Conn]:
    """The user's own database, with the content schema deployed."""
    await deploy_schema(user_db_url)
    conn = await connect(user_db_url)
    yield conn
    await conn.close()


async def move_back(own: Conn, main: Conn, **kw: Any) -> MoveReport:
    return await move_user_content(own, main, USER, lock_source_tables=True, **kw)


async def values(conn: Conn, query: str, *params: Any) -> list[tuple[Any, ...]]:
    cursor = await conn.execute(query, params)
    return list(await cursor.fetchall())


@pytest.mark.parametrize("direction", ["back_to_main", "to_own_database"])
async def test_the_same_row_on_both_sides_keeps_its_newer_edit(
        main: Conn, own: Conn, direction: str) -> None:
    source, target = (own, main) if direction == "back_to_main" else (main, own)
    edited_on_source, edited_on_target = new_id(), new_id()
    for conn, newer_here in ((source, edited_on_source), (target, edited_on_target)):
        for conversation in (edited_on_source, edited_on_target):
            when = LATER if conversation == newer_here else EARLIER
            await insert(conn, "conversations", id=conversation, user_id=USER,
                         title=f"{'new' if when == LATER else 'old'}", updated_at=when)

    report = await move_user_content(source, target, USER,
                                     lock_source_tables=source is own)

    titles = dict(await values(target, "select id, title from byodb.conversations"))
    assert titles == {edited_on_source: "new", edited_on_target: "new"}
    assert report.rows["conversations"] == 2 and report.merged == 2
    assert row_count(await everything(source, USER)) == 0


@pytest.mark.parametrize("direction", ["back_to_main", "to_own_database"])
async def test_usage_of_the_same_day_and_model_is_added_up(
        main: Conn, own: Conn, direction: str) -> None:
    # keep → chat on main → reconnect used to fail here on uq_usage_records_user_id_date_model.
    source, target = (own, main) if direction == "back_to_main" else (main, own)
    await insert(source, "usage_records", user_id=USER, date="2025-03-01", model="m",
                 input_tokens=10, output_tokens=20, cost="0.5", request_count=1)
    await insert(source, "usage_records", user_id=USER, date="2025-03-01", model="other",
                 input_tokens=1, request_count=1)
    await insert(target, "usage_records", user_id=USER, date="2025-03-01", model="m",
                 input_tokens=5, output_tokens=5, cost="0.25", request_count=2)

    report = await move_user_content(source, target, USER,
                                     lock_source_tables=source is own)

    rows = await values(target, "select model, input_tokens, output_tokens, cost::text, "
                                "request_count from byodb.usage_records order by model")
    assert rows == [("m", 15, 25, "0.75", 3), ("other", 1, 0, "0", 1)]
    assert report.merged == 1
    assert row_count(await everything(source, USER)) == 0


async def test_a_tag_of_the_same_name_stays_one_tag_with_all_its_links(
        main: Conn, own: Conn) -> None:
    tag_on_main = await insert(main, "tags", user_id=USER, name="work", scope="user")
    chat_on_main = await insert(main, "conversations", user_id=USER, title="on main")
    await insert(main, "conversation_tags", user_id=USER, conversation_id=chat_on_main,
                 tag_id=tag_on_main)
    tag_on_own = await insert(own, "tags", user_id=USER, name="work", scope="user")
    chat_on_own = await insert(own, "conversations", user_id=USER, title="on own")
    note_on_own = await insert(own, "notes", user_id=USER, title="n", content="c")
    await insert(own, "conversation_tags", user_id=USER, conversation_id=chat_on_own,
                 tag_id=tag_on_own)
    await insert(own, "note_tags", user_id=USER, note_id=note_on_own, tag_id=tag_on_own)

    await move_back(own, main)

    assert await values(main, "select id from byodb.tags where name = 'work'") == [
        (tag_on_main,)]
    links = await values(main, "select conversation_id, tag_id from byodb.conversation_tags")
    assert sorted(links) == sorted([(chat_on_main, tag_on_main), (chat_on_own, tag_on_main)])
    assert await values(main, "select note_id, tag_id from byodb.note_tags") == [
        (note_on_own, tag_on_main)]


async def test_tag_names_differing_only_in_case_are_one_tag(main: Conn,
                                                            user_db_url: str) -> None:
    # Names are unique per user ignoring case (the services' rule, and schema version 2's
    # unique index on main): "Work" and "WORK" from a version-1 own database (which could
    # hold both, written by racing requests) join main's "work", links and all.
    async with await connect(user_db_url) as own:
        await deploy_content_schema(own, target_version=1)
        tag_on_main = await insert(main, "tags", user_id=USER, name="work", scope="user")
        chat = await insert(own, "conversations", user_id=USER, title="on own")
        for name in ("Work", "WORK"):
            tag = await insert(own, "tags", user_id=USER, name=name, scope="user")
            await insert(own, "conversation_tags", user_id=USER, conversation_id=chat,
                         tag_id=tag)

        await move_back(own, main)

    assert await values(main, "select id, name from byodb.tags") == [(tag_on_main, "work")]
    assert await values(main, "select conversation_id, tag_id from byodb.conversation_tags"
                        ) == [(chat, tag_on_main)]


async def test_cached_speech_of_the_same_hash_is_kept_once(main: Conn, own: Conn) -> None:
    expires = datetime(2030, 1, 1, tzinfo=UTC)
    for conn, audio in ((own, b"from own"), (main, b"from main")):
        await insert(conn, "tts_cache", user_id=USER, hash="h1", audio=audio, text="Hi",
                     voice="alloy", expires_at=expires)

    await move_back(own, main)

    assert await values(main, "select audio from byodb.tts_cache") == [(b"from main",)]


async def test_a_link_on_both_sides_is_kept_once(main: Conn, own: Conn) -> None:
    # The project and the conversation are the same rows on both sides (same ids), each
    # side linked them on its own (different link ids).
    project, conversation, chunked = new_id(), new_id(), new_id()
    for conn in (own, main):
        await insert(conn, "projects", id=project, user_id=USER, name="P", updated_at=EARLIER)
        await insert(conn, "conversations", id=conversation, user_id=USER, updated_at=EARLIER)
        await insert(conn, "files", id=chunked, user_id=USER, filename="f", mime_type="x/y",
                     size=1, updated_at=EARLIER)
        await insert(conn, "project_conversations", user_id=USER, project_id=project,
                     conversation_id=conversation, added_by=USER)
        await insert(conn, "conversation_participants", user_id=USER,
                     conversation_id=conversation, member_id="friend", role="viewer")
        await insert(conn, "file_chunks", user_id=USER, file_id=chunked, chunk_index=0,
                     content=f"chunk on {'own' if conn is own else 'main'}")
    main_links = await values(main, "select id from byodb.project_conversations")

    await move_back(own, main)

    assert await values(main, "select id from byodb.project_conversations") == main_links
    assert len(await values(main, "select id from byodb.conversation_participants")) == 1
    assert await values(main, "select content from byodb.file_chunks") == [("chunk on main",)]


async def fill_both_sides(main: Conn, own: Conn) -> None:
    """Content on both sides that exercises every merge rule at once."""
    await insert(own, "usage_records", user_id=USER, date="2025-03-01", model="m",
                 input_tokens=10, request_count=1)
    await insert(main, "usage_records", user_id=USER, date="2025-03-01", model="m",
                 input_tokens=5, request_count=2)
    shared: uuid.UUID = new_id()
    await insert(own, "conversations", id=shared, user_id=USER, title="newer",
                 updated_at=LATER)
    await insert(main, "conversations", id=shared, user_id=USER, title="older",
                 updated_at=EARLIER)
    await insert(own, "messages", user_id=USER, conversation_id=shared, role="user",
                 content="written on own")
    tag_own = await insert(own, "tags", user_id=USER, name="work", scope="user")
    await insert(main, "tags", user_id=USER, name="work", scope="user")
    await insert(own, "conversation_tags", user_id=USER, conversation_id=shared,
                 tag_id=tag_own)


async def test_running_a_move_again_changes_nothing(main: Conn, own: Conn) -> None:
    await fill_both_sides(main, own)
    await move_back(own, main)
    after_first = await everything(main)

    report = await move_back(own, main)

    assert report.total_rows == 0 and report.merged == 0
    assert await everything(main) == after_first


class Interrupted(Exception):
    pass


def interrupt_at(step: str) -> Any:
    async def progress(message: str) -> None:
        if message.startswith(step):
            raise Interrupted(message)
    return progress


async def test_a_move_interrupted_after_the_target_committed_resumes_without_duplicates(
        main: Conn, own: Conn) -> None:
    await fill_both_sides(main, own)
    source_before = await everything(own)

    with pytest.raises(Interrupted):
        await move_back(own, main, progress=interrupt_at("Removing"))
    merged_once = await everything(main)
    assert await everything(own) == source_before  # the rows are on both sides now

    report = await move_back(own, main)

    assert report.total_rows == row_count(source_before)
    assert report.merged == report.total_rows  # every row was already there
    assert await everything(main) == merged_once  # usage not added twice, no duplicates
    assert row_count(await everything(own)) == 0
    usage = await values(main, "select input_tokens, request_count from byodb.usage_records")
    assert usage == [(15, 3)]


async def test_a_move_interrupted_before_the_target_committed_changed_nothing(
        main: Conn, own: Conn) -> None:
    await fill_both_sides(main, own)
    main_before, own_before = await everything(main), await everything(own)

    with pytest.raises(Interrupted):
        await move_back(own, main, progress=interrupt_at("Merging"))

    assert await everything(main) == main_before
    assert await everything(own) == own_before
    await move_back(own, main)
    assert row_count(await everything(own)) == 0


async def test_rows_that_do_not_arrive_intact_fail_verification_and_change_nothing(
        main: Conn, own: Conn) -> None:
    await insert(own, "notes", user_id=USER, title="quiet", content="c")
    # Something on the target rewrites rows as they arrive (here: a trigger).
    await main.execute(
        "create function byodb.shout() returns trigger language plpgsql as "
        "$$ begin new.title := upper(new.title); return new; end $$")
    await main.execute("create trigger shout before insert on byodb.notes "
                       "for each row execute function byodb.shout()")
    main_before, own_before = await everything(main), await everything(own)

    with pytest.raises(MoveVerificationError) as failed:
        await move_back(own, main)

    assert "notes" in failed.value.message and "quiet" not in failed.value.message
    assert await everything(main) == main_before
    assert await everything(own) == own_before
