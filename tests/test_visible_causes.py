"""A failed deploy or move says where and why, everywhere someone looks; a move that waits
on the owner's own lock gives up, retries, and fails with the cause, leaving the user where
they were.

- A deploy step the user's server refuses: Settings → Database, the state API, the admin
  dashboard's API and ``byodb instances show`` name the step, the SQLSTATE and the server's
  own words (the password redacted); one log line carries the user id, escaped.
- Content tables locked by the owner's open transaction (a second connection holding
  ``lock table … in access exclusive mode``): the move into their database gives up at its
  lock timeout, is retried on the ladder, then fails with a recorded error — the user stays
  on main with all their content (never ``moving`` until the 30-minute move deadline); the
  move back fails the same way, leaving them connected with their content on their
  database. Released, both go through.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from byodb.content.package import full_schema_script
from byodb.maindb.embedded import PostgresCluster
from byodb.settings import Settings
from tests.cli_support import CliResult, arun_cli
from tests.conftest import Api, count_rows
from tests.lifecycle_support import Connection, connect, rows
from tests.providers import ProviderDatabase, provider_database
from tests.test_pages import page

ADMIN = "root"
# Sign-in refuses line separators and control characters in a user id; quotes and format
# specifiers remain, and in a log line the id must appear quoted, never as log structure.
ODD_USER = "causes' provisioning ok for user \"admin\" %s"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """The suite's settings with a short lock wait for users' databases (the move deadline
    stays at its default, 30 minutes: a move must not wait for it)."""
    return Settings(BYODB_DATA_DIR=tmp_path / "data", BYODB_ENV="development",
                    BYODB_ALLOW_PRIVATE_HOSTS=True, BYODB_TEST_RATE_LIMIT=1000,
                    BYODB_USER_LOCK_TIMEOUT=1)


@pytest.fixture
def holders() -> Iterator[list[psycopg.Connection[Any]]]:
    """The owner's second connections holding locks; rolled back and closed at the end."""
    held: list[psycopg.Connection[Any]] = []
    yield held
    for conn in held:
        if not conn.closed:
            conn.rollback()
            conn.close()


def refuse_creating(db: ProviderDatabase, table: str, message: str) -> None:
    """Make the server refuse ``CREATE TABLE table`` with SQLSTATE 42704 and ``message``
    (an event trigger: only a superuser may create one, so the provider's administrator
    does it; the owner's deploy then meets it like any server error)."""
    with psycopg.connect(db.admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL(
            "create function public.refuse_table() returns event_trigger language plpgsql "
            "as $f$ declare r record; begin "
            "for r in select * from pg_catalog.pg_event_trigger_ddl_commands() loop "
            "if r.object_identity = {} then "
            "raise exception using errcode = '42704', message = {}; "
            "end if; end loop; end $f$").format(sql.Literal(table), sql.Literal(message)))
        conn.execute("create event trigger refuse_table on ddl_command_end "
                     "when tag in ('CREATE TABLE') execute function public.refuse_table()")


async def byodb_cli(settings: Settings, main_url: str, *args: str) -> CliResult:
    env = {"BYODB_DATABASE_URL": main_url,
           "BYODB_DATA_DIR": str(settings.data_dir), "BYODB_ALLOW_PRIVATE_HOSTS": "true"}
    return await arun_cli(*args, env=env)


async def test_a_refused_deploy_step_is_named_with_its_sqlstate_and_words_everywhere(
        api: Api, settings: Settings, main_url: str, user_server: PostgresCluster,
        caplog: pytest.LogCaptureFixture) -> None:
    db = provider_database(user_server, prefix="causes")
    refuse_creating(db, "byodb.messages",
                    f'type "vector" does not exist (password={db.password})')
    user = ODD_USER
    tested = (await api.post("/api/byod/test", user, json={"url": db.url})).json()
    assert tested["ok"] is True, tested  # the test creates no content table: it passes
    caplog.set_level(logging.INFO, logger="byodb.instances.lifecycle")
    saved = await api.put("/api/byod", user, json={"url": db.url})
    assert saved.status_code == 202, saved.text
    state = await api.wait_for_state(user, "connected", "error", timeout_s=60)

    assert state["connection_status"] == "error" and state["deployment_status"] == "failed"
    error = state["connection_error"]
    assert error.startswith("The deployment failed at step "), error
    assert "(Creating table byodb.messages)" in error
    assert 'SQLSTATE 42704: type "vector" does not exist (password=****' in error
    assert db.password not in error and db.password not in state["deployment_progress"]
    assert state["connection_error_code"] == "step_failed"
    # The step it stopped at, as a number too (the progress bar's "Step N of M").
    assert f"at step {state['deployment_step']} of {state['deployment_total_steps']} " \
        in error
    # Nothing was left behind: the deploy is one transaction; the content stayed on main.
    assert count_rows(db.url, "select count(*) from pg_namespace where nspname = 'byodb'") \
        == 0
    still = await api.post("/api/conversations", user, json={"title": "meanwhile"})
    assert still.status_code == 201, still.text
    assert rows(main_url, "conversations", user) == 1

    # Settings → Database (the page's state), the admin dashboard, the operator's CLI.
    settings_page = (await page(api, "/settings/database", user)).text
    assert "Creating table byodb.messages" in settings_page and "42704" in settings_page
    assert db.password not in settings_page
    admin = api.headers(ADMIN, admin=True)
    listed = (await api.client.get("/api/admin/byod", headers=admin)).json()
    [item] = [i for i in listed["instances"] if i["user_id"] == user]
    assert item["connection_error"] == error
    shown = await byodb_cli(settings, main_url, "instances", "show", user)
    assert shown.exit_code == 0, shown.stderr
    assert f"connection_error: {error}" in shown.stdout.splitlines()
    assert db.password not in shown.stdout

    # One log line: the step, the SQLSTATE, the user id escaped (no line break of theirs).
    [record] = [r for r in caplog.records if "provisioning failed" in r.getMessage()]
    line = record.getMessage()
    assert repr(user) in line and "\n" not in line
    assert "42704" in line and "Creating table byodb.messages" in line
    assert db.password not in line


async def connected_again(api: Api, user: str) -> None:
    """Wait (bounded) until a queued redeploy has connected the user; the old ``error``
    stays visible until its job starts."""
    for _ in range(600):
        state = (await api.get("/api/byod", user)).json()
        if state["connection_status"] == "connected" and \
                state["deployment_status"] != "deploying":
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{user} never came back after a retry: {state}")


def deploy_by_hand(db: ProviderDatabase) -> None:
    with psycopg.connect(db.url, autocommit=True) as conn:
        conn.execute(full_schema_script().encode())


def lock_content_tables(db: ProviderDatabase, holders: list[psycopg.Connection[Any]]) -> None:
    """The owner, in a second session, holds their content tables in an open transaction."""
    holder = psycopg.connect(db.url)
    holders.append(holder)
    holder.execute("lock table byodb.conversations in access exclusive mode")


async def test_a_move_in_waiting_on_the_owners_lock_fails_with_the_cause_and_stays_on_main(
        api: Api, main_url: str, user_server: PostgresCluster,
        holders: list[psycopg.Connection[Any]], caplog: pytest.LogCaptureFixture) -> None:
    db = provider_database(user_server, prefix="locked")
    deploy_by_hand(db)  # so the owner has tables to lock before byodb moves anything
    user = "locked-in"
    created = await api.post("/api/conversations", user, json={"title": "on main"})
    assert created.status_code == 201
    conversation = created.json()["id"]
    lock_content_tables(db, holders)

    caplog.set_level(logging.INFO, logger="byodb.instances.lifecycle")
    saved = await api.put("/api/byod", user, json={"url": db.url})
    assert saved.status_code == 202, saved.text
    # Bounded far below the move deadline (30 minutes): it gives up at its lock timeout.
    state = await api.wait_for_state(user, "connected", "error", timeout_s=90)

    assert state["connection_status"] == "error", state
    error = state["connection_error"]
    assert "Moving your content failed while moving your content from byodb's database to " \
        "yours" in error, error
    assert "SQLSTATE 55P03" in error and "lock" in error
    assert state["connection_error_code"] == "lock_timeout"
    retries = [r for r in caplog.records if "retrying a step" in r.getMessage()
               and repr(user) in r.getMessage()]
    assert len(retries) == 3, [r.getMessage() for r in caplog.records]
    # Where they were: their content on main, served from there.
    assert rows(main_url, "conversations", user) == 1
    listed = await api.get("/api/conversations", user)
    assert listed.status_code == 200
    assert conversation in {c["id"] for c in listed.json()["items"]}

    # The owner ends their transaction (their table can be read again): nothing had moved;
    # a retry moves everything over.
    holders[0].rollback()
    assert rows(db.url, "conversations", user) == 0
    retried = await api.post("/api/byod/retry", user)
    assert retried.status_code in (200, 202), retried.text
    await connected_again(api, user)
    assert rows(db.url, "conversations", user) == 1
    assert rows(main_url, "conversations", user) == 0


async def test_a_move_back_waiting_on_the_owners_lock_fails_and_leaves_them_connected(
        api: Api, main_url: str, user_server: PostgresCluster,
        holders: list[psycopg.Connection[Any]]) -> None:
    db = provider_database(user_server, prefix="locked")
    user = "locked-out"
    await connect(api, user, Connection(db.url, db.url))
    created = await api.post("/api/conversations", user, json={"title": "theirs"})
    assert created.status_code == 201
    lock_content_tables(db, holders)

    started = await api.post("/api/byod/disconnect", user, json={"mode": "migrate"})
    assert started.status_code == 202, started.text
    state = await api.wait_for_state(user, "connected", "error", "disconnected", timeout_s=90)

    assert state["connection_status"] == "connected", state
    assert state["connection_error_code"] == "lock_timeout"
    assert "while moving your data back to byodb's database" in state["connection_error"]
    assert "SQLSTATE 55P03" in state["connection_error"]
    assert rows(main_url, "conversations", user) == 0

    holders[0].rollback()
    assert rows(db.url, "conversations", user) == 1
    listed = await api.get("/api/conversations", user)  # served from their database
    assert listed.status_code == 200 and len(listed.json()["items"]) == 1
    started = await api.post("/api/byod/disconnect", user, json={"mode": "migrate"})
    assert started.status_code == 202, started.text
    state = await api.wait_for_state(user, "connected", "error", "disconnected", timeout_s=60)
    assert state["connection_status"] == "disconnected", state
    assert rows(main_url, "conversations", user) == 1
