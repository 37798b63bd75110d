""""Migrate back" from a database whose owner is hostile, end to end through the API: the
owner controls every row, function, operator and setting of their database. Whatever they
plant, other users' rows on main stay untouched, nothing of theirs lands on main, the user
gets a clear error, and their own data stays where it was — whether byodb reaches the database
directly or through a transaction pooler."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from tests.conftest import Api, count_rows
from tests.providers import ProviderDatabase

VICTIM = "victim"
ATTACKER = "mallory"


def _main_rows(main_url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(main_url) as conn:
        return conn.execute(
            "select id, user_id, title, updated_at from byodb.conversations order by id"
        ).fetchall()


def _reuse_a_victims_id(owner: psycopg.Connection, victim_id: str) -> None:
    owner.execute("update byodb.conversations set id = %s where title = 'mine'", (victim_id,))


def _plant_a_row_of_the_victim(owner: psycopg.Connection, victim_id: str) -> None:
    owner.execute("insert into byodb.conversations (id, user_id, title) values "
                  "(gen_random_uuid(), %s, 'planted')", (VICTIM,))


def _a_filter_that_lies(owner: psycopg.Connection, victim_id: str) -> None:
    """With user_id turned into varchar and an always-true `=` for varchar in schema byodb
    (which is on the pinned search_path), the source's own filter returns every row."""
    owner.execute("alter table byodb.conversations alter column user_id type varchar")
    owner.execute("create function byodb.always(varchar, varchar) returns boolean "
                  "language sql immutable as 'select true'")
    owner.execute("create operator byodb.= (leftarg = varchar, rightarg = varchar, "
                  "function = byodb.always)")
    _plant_a_row_of_the_victim(owner, victim_id)


def _always_true_equals(owner: psycopg.Connection, victim_id: str) -> None:
    """A public `=` for text that always holds, first on the database's search_path, and a
    row of the victim: an unpinned `where user_id = $1` would select it."""
    owner.execute("create function public.always(text, text) returns boolean "
                  "language sql immutable as 'select true'")
    owner.execute("create operator public.= (leftarg = text, rightarg = text, "
                  "function = public.always)")
    owner.execute("select pg_catalog.set_config('search_path', 'public, pg_catalog', false)")
    dbname = owner.execute("select current_database()").fetchone()
    assert dbname is not None
    owner.execute(f'alter database "{dbname[0]}" set search_path = public, pg_catalog')
    _plant_a_row_of_the_victim(owner, victim_id)


def _five_megabyte_title(owner: psycopg.Connection, victim_id: str) -> None:
    owner.execute("alter table byodb.conversations drop constraint if exists "
                  "ck_conversations_title_length")
    owner.execute("update byodb.conversations set title = repeat('x', 5 * 1024 * 1024)")


# code None: the attack is defeated before it matters (the pinned search_path keeps the
# owner's operator out of the filter), so the move completes with the user's own rows only.
@pytest.mark.parametrize(("attack", "code"), [
    (_reuse_a_victims_id, "move_id_conflict"),
    (_plant_a_row_of_the_victim, None),
    (_always_true_equals, None),
    (_a_filter_that_lies, "move_foreign_rows"),
    (_five_megabyte_title, "move_invalid_content"),
])
@pytest.mark.parametrize("route", ["direct", "transaction_pooler"])
async def test_a_hostile_database_cannot_touch_main_through_migrate_back(
        api: Api, main_url: str, user_database: ProviderDatabase, route: str,
        request: pytest.FixtureRequest,
        attack: Callable[[psycopg.Connection, str], None], code: str | None) -> None:
    # byodb reaches the owner's database straight or through PgBouncer in transaction mode
    # (Neon's pooled endpoint): the pinned path must hold per transaction there too. The
    # attacker plants directly, as the owner.
    user_db_url = user_database.url
    byodb_url = user_db_url if route == "direct" else \
        request.getfixturevalue(route).add(user_database)
    victim = (await api.post("/api/conversations", VICTIM, json={"title": "private"})).json()
    await api.put("/api/byod", ATTACKER, json={"url": byodb_url})
    assert (await api.wait_for_state(ATTACKER, "connected", "error"))["connection_status"] == \
        "connected"
    assert (await api.post("/api/conversations", ATTACKER, json={"title": "mine"})
            ).status_code == 201
    with psycopg.connect(user_db_url, autocommit=True) as owner:
        attack(owner, victim["id"])
    before_main = _main_rows(main_url)
    before_theirs = count_rows(user_db_url, "select count(*) from byodb.conversations")

    started = await api.post("/api/byod/disconnect", ATTACKER, json={"mode": "migrate"})
    assert started.status_code == 202
    state = await api.wait_for_state(ATTACKER, "connected", "error", "disconnected")

    listed = (await api.get("/api/conversations", VICTIM)).json()["items"]
    assert [(c["id"], c["title"]) for c in listed] == [(victim["id"], "private")]
    victims_on_main = [row for row in _main_rows(main_url) if row[1] == VICTIM]
    assert victims_on_main == [row for row in before_main if row[1] == VICTIM]
    if code is None:
        # Moved back: exactly the attacker's own row, nothing planted.
        assert state["connection_status"] == "disconnected", state
        assert count_rows(main_url, "select count(*) from byodb.conversations where "
                          "user_id = %s", ATTACKER) == 1
        assert count_rows(main_url, "select count(*) from byodb.conversations where "
                          "title = 'planted'") == 0
        return
    # A clear error, the user still connected to their (working) database, main exactly as
    # before (nothing of the attacker's), their database as it was.
    assert state["connection_status"] == "connected", state
    assert state["connection_error_code"] == code
    assert "nothing was moved" in state["connection_error"]
    assert _main_rows(main_url) == before_main
    assert count_rows(main_url, "select count(*) from byodb.conversations where user_id = %s",
                      ATTACKER) == 0
    assert count_rows(user_db_url, "select count(*) from byodb.conversations") == before_theirs
