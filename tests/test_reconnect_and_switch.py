"""Coming back and moving on: a user who left with ``keep`` or ``migrate`` reconnects the
same database, and a connected user switches to a different database (or only changes the
credentials of the same one). Every time, each conversation and message is visible exactly
once, served from the database that is now theirs, and nothing of theirs stays behind on
the side it left (unless they asked to keep the old database's copy)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from byodb.maindb.embedded import PostgresCluster
from tests.conftest import Api, count_rows
from tests.providers import provider_database

TERMINAL = ("connected", "error", "disconnected")


# -- helpers ------------------------------------------------------------------------------

def user_rows(url: str, user: str) -> dict[str, int]:
    """Per content table (schema ``byodb``, any table with a user_id): the user's rows,
    only tables where there are some. An absent schema counts as no rows."""
    with psycopg.connect(url) as conn:
        tables = [row[0] for row in conn.execute(
            "select c.table_name from information_schema.columns c "
            "join information_schema.tables t using (table_schema, table_name) "
            "where c.table_schema = 'byodb' and c.column_name = 'user_id' "
            "and t.table_type = 'BASE TABLE' order by 1").fetchall()]
        counts: dict[str, int] = {}
        for table in tables:
            row = conn.execute(f'select count(*) from byodb."{table}" where user_id = %s',
                               (user,)).fetchone()
            if row and row[0]:
                counts[table] = int(row[0])
    return counts


def count_user(url: str, table: str, user: str) -> int:
    return count_rows(url, f"select count(*) from byodb.{table} where user_id = %s", user)


def has_byodb_schema(url: str) -> bool:
    return count_rows(url, "select count(*) from pg_namespace where nspname = 'byodb'") == 1


async def connect(api: Api, user: str, url: str) -> dict[str, Any]:
    saved = await api.put("/api/byod", user, json={"url": url})
    assert saved.status_code == 202, saved.text
    state = await api.wait_for_state(user, "connected", "error")
    assert state["connection_status"] == "connected", state
    return state


async def chat(api: Api, user: str, title: str, *, messages: int = 1) -> str:
    """A conversation with ``messages`` user messages (each stores a reply and adds usage)."""
    created = await api.post("/api/conversations", user, json={"title": title})
    assert created.status_code == 201, created.text
    conversation_id = str(created.json()["id"])
    for n in range(messages):
        sent = await api.post(f"/api/conversations/{conversation_id}/messages", user,
                              json={"content": f"{title} message {n}"})
        assert sent.status_code == 201, sent.text
    return conversation_id


async def visible(api: Api, user: str) -> dict[str, list[str]]:
    """Conversation id → its message ids, as the API shows them; each conversation must
    be listed once and each message once."""
    listed = await api.get("/api/conversations", user, params={"limit": 200})
    assert listed.status_code == 200, listed.text
    ids = [str(c["id"]) for c in listed.json()["items"]]
    assert len(ids) == len(set(ids)), f"a conversation is listed twice: {ids}"
    shown: dict[str, list[str]] = {}
    for conversation_id in ids:
        messages = await api.get(f"/api/conversations/{conversation_id}/messages", user,
                                 params={"limit": 200})
        assert messages.status_code == 200, messages.text
        message_ids = [str(m["id"]) for m in messages.json()["items"]]
        assert len(message_ids) == len(set(message_ids)), \
            f"a message is listed twice in {conversation_id}: {message_ids}"
        shown[conversation_id] = message_ids
    return shown


async def usage(api: Api, user: str) -> dict[str, Any]:
    response = await api.get("/api/usage", user)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    keys = [(item["date"], item["model"]) for item in body["items"]]
    assert len(keys) == len(set(keys)), f"usage has two rows for one day and model: {keys}"
    return body


def totals_added(first: dict[str, Any], second: dict[str, Any]) -> dict[str, float]:
    return {name: float(first[name]) + float(second[name])
            for name in ("input_tokens", "output_tokens", "cost", "request_count")}


def as_floats(totals: dict[str, Any]) -> dict[str, float]:
    return {name: float(totals[name])
            for name in ("input_tokens", "output_tokens", "cost", "request_count")}


async def settle(api: Api, user: str, response: Any, timeout_s: float = 30) -> dict[str, Any]:
    """The state after a BYOD call: its answer when final, else polled until final."""
    body: dict[str, Any] = response.json()
    if response.status_code == 200 and body.get("connection_status") in TERMINAL and \
            body.get("deployment_status") != "deploying":
        return body
    if response.status_code == 202:
        # Work was queued: the answer is the state before it ran, which may already look
        # final (a retry from ``error``). Wait for the job to write the row first.
        deadline = time.monotonic() + timeout_s
        while (await api.get("/api/byod", user)).json()["updated_at"] == body["updated_at"]:
            if time.monotonic() > deadline:
                raise AssertionError(f"the queued work never began: {body}")
            await asyncio.sleep(0.05)
    return await api.wait_for_state(user, *TERMINAL, timeout_s=timeout_s)


async def retry_is_honest(api: Api, user: str, other_side_url: str,
                          before: dict[str, Any] | None = None) -> dict[str, Any]:
    """Retry; it must never end ``connected`` while the user's content is still on the side
    the failed move was taking it from. ``before``: the state retried from (for messages)."""
    retried = await api.post("/api/byod/retry", user)
    assert retried.status_code in (200, 202), retried.text
    answered = retried.json()["connection_status"]
    left_when_answered = user_rows(other_side_url, user)
    assert not (answered == "connected" and left_when_answered), (
        "retry answered connected while the user's content is still on the other side: "
        f"{left_when_answered}; retried from {before}")
    state = await settle(api, user, retried)
    left = user_rows(other_side_url, user)
    assert not (state["connection_status"] == "connected" and left), (
        f"retry ended connected while the user's content is still on the other side: {left}"
        f"; state {state}; retried from {before}")
    return state


async def watch_until_final(api: Api, user: str, first: dict[str, Any],
                            timeout_s: float = 60) -> tuple[dict[str, Any],
                                                            list[dict[str, Any]]]:
    """Poll GET /api/byod quickly; return the final state and every state seen before."""
    seen = [first]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = (await api.get("/api/byod", user)).json()
        if state["connection_status"] in TERMINAL and \
                state["deployment_status"] != "deploying":
            return state, seen
        seen.append(state)
        await asyncio.sleep(0.02)
    raise AssertionError(f"the switch never finished: {seen[-1]}")


def shows_a_move(state: dict[str, Any]) -> bool:
    progress = (state.get("deployment_progress") or "").lower()
    return state["connection_status"] == "moving" or (
        state["connection_status"] != "connected" and "mov" in progress)


@pytest.fixture
def other_db_url(user_server: PostgresCluster) -> Iterator[str]:
    """A second, empty database on the user's server (the one they switch to); dropped
    afterwards, whoever still holds connections to it."""
    database = provider_database(user_server, prefix="otherdb")
    yield database.url
    with psycopg.connect(user_server.url(), autocommit=True) as conn:
        conn.execute(f'drop database if exists "{database.name}" with (force)')


# -- 1. keep, then reconnect the same database ----------------------------------------------

async def test_reconnecting_after_keep_merges_both_sides_and_leaves_nothing_on_main(
        api: Api, main_url: str, user_db_url: str) -> None:
    user = "kira"
    await connect(api, user, user_db_url)
    first = await chat(api, user, "on my database", messages=2)
    usage_there = (await usage(api, user))["totals"]
    assert usage_there["request_count"] == 2

    left = await api.post("/api/byod/disconnect", user, json={"mode": "keep"})
    assert left.status_code == 200 and left.json()["connection_status"] == "disconnected"
    assert (await visible(api, user)) == {}
    # Back on main: same day, same model, so main now holds a usage row for the same day
    # and model as the one on their database.
    second = await chat(api, user, "on main meanwhile")
    usage_main = (await usage(api, user))["totals"]
    assert usage_main["request_count"] == 1
    assert count_user(main_url, "usage_records", user) == 1
    on_main_before = user_rows(main_url, user)
    there_before = user_rows(user_db_url, user)

    saved = await api.put("/api/byod", user, json={"url": user_db_url})
    assert saved.status_code == 202, saved.text
    state = await api.wait_for_state(user, "connected", "error")
    if state["connection_status"] != "connected":
        await retry_is_honest(api, user, main_url, before=state)
    assert state["connection_status"] == "connected", state
    assert not state["connection_error"], state

    shown = await visible(api, user)
    assert set(shown) == {first, second}
    assert len(shown[first]) == 4 and len(shown[second]) == 2
    merged = await usage(api, user)
    assert as_floats(merged["totals"]) == pytest.approx(totals_added(usage_there, usage_main))
    assert user_rows(main_url, user) == {}, "content of the user stayed on main"
    after = user_rows(user_db_url, user)
    for table, n in on_main_before.items():
        if table != "usage_records":  # merged into one row per day and model
            assert after.get(table, 0) == there_before.get(table, 0) + n, table
    assert count_user(user_db_url, "usage_records", user) == len(merged["items"])

    # Now connected: new content lands on their database only, and a retry changes nothing.
    third = await chat(api, user, "after reconnecting")
    assert count_user(user_db_url, "conversations", user) == 3
    assert user_rows(main_url, user) == {}
    again = await api.post("/api/byod/retry", user)
    assert again.status_code in (200, 202)
    assert (await settle(api, user, again))["connection_status"] == "connected"
    assert set(await visible(api, user)) == {first, second, third}


# -- 2. migrate back, reconnect, migrate back again -----------------------------------------

async def test_migrate_reconnect_migrate_keeps_everything_exactly_once(
        api: Api, main_url: str, user_db_url: str) -> None:
    user = "milo"
    await connect(api, user, user_db_url)
    first = await chat(api, user, "first stay")

    back = await api.post("/api/byod/disconnect", user, json={"mode": "migrate"})
    assert back.status_code == 202, back.text
    state = await api.wait_for_state(user, "disconnected", "error")
    assert state["connection_status"] == "disconnected", state
    assert count_user(main_url, "messages", user) == 2
    assert user_rows(user_db_url, user) == {}

    second = await chat(api, user, "between stays")
    assert user_rows(main_url, user)["messages"] == 4
    usage_before = (await usage(api, user))["totals"]
    assert usage_before["request_count"] == 2

    await connect(api, user, user_db_url)
    shown = await visible(api, user)
    assert set(shown) == {first, second}
    assert all(len(ids) == 2 for ids in shown.values())
    assert user_rows(main_url, user) == {}
    assert count_user(user_db_url, "conversations", user) == 2
    assert count_user(user_db_url, "messages", user) == 4
    third = await chat(api, user, "second stay")
    everything = user_rows(user_db_url, user)

    back = await api.post("/api/byod/disconnect", user, json={"mode": "migrate"})
    assert back.status_code == 202, back.text
    state = await api.wait_for_state(user, "disconnected", "error")
    assert state["connection_status"] == "disconnected", state
    assert user_rows(main_url, user) == everything
    assert user_rows(user_db_url, user) == {}
    shown = await visible(api, user)
    assert set(shown) == {first, second, third}
    assert all(len(ids) == 2 for ids in shown.values())
    assert (await usage(api, user))["totals"]["request_count"] == 3


# -- 3. switching to a different database ----------------------------------------------------

@pytest.mark.parametrize("old_database", [None, "keep", "delete"])
async def test_switching_to_another_database_moves_the_content_there(
        api: Api, main_url: str, user_db_url: str, other_db_url: str,
        old_database: str | None) -> None:
    user = f"sam_{old_database or 'default'}"
    await connect(api, user, user_db_url)
    conversations = {await chat(api, user, "one"), await chat(api, user, "two", messages=2)}
    before = user_rows(user_db_url, user)
    assert before["conversations"] == 2 and before["messages"] == 6

    body: dict[str, Any] = {"url": other_db_url}
    if old_database is not None:
        body["old_database"] = old_database
    saved = await api.put("/api/byod", user, json=body)
    assert saved.status_code == 202, saved.text
    state, during = await watch_until_final(api, user, saved.json())
    assert state["connection_status"] == "connected", state
    assert not state["connection_error"], state
    assert any(shows_a_move(s) for s in during), (
        "GET /api/byod never showed the move while it ran: "
        f"{[(s['connection_status'], s['deployment_progress']) for s in during]}")
    assert other_db_url.rsplit("/", 1)[1] in (state["database"] or ""), state["database"]

    shown = await visible(api, user)
    assert set(shown) == conversations
    assert sorted(len(ids) for ids in shown.values()) == [2, 4]
    assert user_rows(other_db_url, user) == before, "the new database lacks content"
    assert user_rows(main_url, user) == {}
    if old_database == "delete":
        assert user_rows(user_db_url, user) == {}, "the old database still holds content"
    else:
        assert user_rows(user_db_url, user) == before, "the old database lost its copy"

    # Served from the new database: a new conversation lands there only.
    third = await chat(api, user, "three")
    assert count_user(other_db_url, "conversations", user) == 3
    assert count_user(user_db_url, "conversations", user) == (
        0 if old_database == "delete" else 2)
    assert user_rows(main_url, user) == {}
    assert set(await visible(api, user)) == conversations | {third}


@pytest.mark.parametrize("old_database", [None, "delete"])
async def test_new_credentials_for_the_same_database_move_nothing(
        api: Api, main_url: str, user_db_url: str, old_database: str | None) -> None:
    user = f"ned_{old_database or 'default'}"
    await connect(api, user, user_db_url)
    conversations = {await chat(api, user, "stays"), await chat(api, user, "stays too")}
    before = user_rows(user_db_url, user)

    body: dict[str, Any] = {"url": user_db_url + "?application_name=x"}
    if old_database is not None:
        body["old_database"] = old_database  # the "old" database is this one: nothing goes
    saved = await api.put("/api/byod", user, json=body)
    assert saved.status_code == 202, saved.text
    state = await api.wait_for_state(user, "connected", "error")
    assert state["connection_status"] == "connected", state
    assert not state["connection_error"], state

    assert user_rows(user_db_url, user) == before
    assert user_rows(main_url, user) == {}
    shown = await visible(api, user)
    assert set(shown) == conversations
    assert all(len(ids) == 2 for ids in shown.values())
    new = await chat(api, user, "after new credentials")
    assert count_user(user_db_url, "conversations", user) == 3
    assert set(await visible(api, user)) == conversations | {new}


async def test_bad_old_database_value_is_refused_and_changes_nothing(
        api: Api, main_url: str, user_db_url: str, other_db_url: str) -> None:
    user = "bea"
    await connect(api, user, user_db_url)
    conversation = await chat(api, user, "mine")
    before_state = (await api.get("/api/byod", user)).json()
    before_rows = user_rows(user_db_url, user)

    for bad in ("shred", "", 1, ["keep"]):
        refused = await api.put("/api/byod", user,
                                json={"url": other_db_url, "old_database": bad})
        assert refused.status_code == 422, (bad, refused.status_code, refused.text)
        assert refused.json()["error"]["code"], refused.text

    await asyncio.sleep(1.5)  # were a job queued by mistake, give it time to show
    assert (await api.get("/api/byod", user)).json() == before_state
    assert not has_byodb_schema(other_db_url)
    assert user_rows(user_db_url, user) == before_rows
    assert user_rows(main_url, user) == {}
    assert set(await visible(api, user)) == {conversation}


# -- 4. a move that fails for another reason than reachability says so ------------------------

async def test_a_move_refused_by_the_database_is_not_called_unreachable(
        api: Api, main_url: str, user_db_url: str) -> None:
    user = "fern"
    await connect(api, user, user_db_url)  # deploys the schema on their database
    left = await api.post("/api/byod/disconnect", user, json={"mode": "keep"})
    assert left.status_code == 200
    conversation = await chat(api, user, "written on main")
    on_main = user_rows(main_url, user)

    # The database's owner makes the conversations table refuse new rows.
    with psycopg.connect(user_db_url, autocommit=True) as conn:
        conn.execute("create function public.refuse_rows() returns trigger language plpgsql "
                     "as $$ begin raise exception 'conversations are read-only here'; end $$")
        conn.execute("create trigger refuse_rows before insert or update on "
                     "byodb.conversations for each row execute function public.refuse_rows()")

    saved = await api.put("/api/byod", user, json={"url": user_db_url})
    assert saved.status_code == 202, saved.text
    state = await api.wait_for_state(user, "connected", "error")
    assert state["connection_status"] == "error", state
    assert state["connection_error"], state
    assert state["connection_error_code"] not in (None, "unreachable", "timeout"), state
    for text in (state["connection_error"], state["deployment_progress"] or ""):
        assert "unreachable" not in text.lower() and "could not be reached" not in \
            text.lower(), state
    # Nothing was lost: the content is still whole on main, none of it half-copied over.
    assert user_rows(main_url, user) == on_main
    assert user_rows(user_db_url, user) == {}

    # While the cause is still there, a retry must not claim the move happened.
    state = await retry_is_honest(api, user, main_url, before=state)
    assert state["connection_status"] != "connected", state

    with psycopg.connect(user_db_url, autocommit=True) as conn:
        conn.execute("drop trigger refuse_rows on byodb.conversations")
    with recorded_states(main_url) as seen:
        state = await retry_is_honest(api, user, main_url)
    assert state["connection_status"] == "connected", state
    assert user_rows(main_url, user) == {}
    assert user_rows(user_db_url, user) == on_main
    assert set(await visible(api, user)) == {conversation}
    # While the retry's move ran, no state it wrote looked final (``error`` and not
    # deploying): a page or client polling it would have stopped there.
    assert seen[-1] == ("connected", "deployed"), seen
    assert all(deployment == "deploying" for connection, deployment in seen[:-1]
               if connection == "error"), seen


@contextlib.contextmanager
def recorded_states(main_url: str) -> Iterator[list[tuple[str, str]]]:
    """Every (connection, deployment) status written to main's user_database_config while
    the block runs, in order (a trigger on main records them; the list is filled when the
    block ends)."""
    with psycopg.connect(main_url, autocommit=True) as conn:
        row = conn.execute("select n.nspname from pg_class c join pg_namespace n on "
                           "n.oid = c.relnamespace where c.relname = 'user_database_config'"
                           ).fetchone()
        assert row is not None
        schema = sql.Identifier(row[0])
        conn.execute(sql.SQL(
            "create table {s}.test_states (n bigserial, connection text, deployment text);"
            "create function {s}.test_record_state() returns trigger language plpgsql as $$"
            " begin insert into {s}.test_states (connection, deployment) values"
            " (new.connection_status, new.deployment_status); return new; end $$;"
            "create trigger test_record_state after update on {s}.user_database_config"
            " for each row execute function {s}.test_record_state()").format(s=schema))
        seen: list[tuple[str, str]] = []
        yield seen
        seen += [(c, d) for c, d in conn.execute(sql.SQL(
            "select connection, deployment from {}.test_states order by n").format(
            schema)).fetchall()]
