"""Where a test user's content lives: on main, or on their own database (connected through
the public API). Tests of a content area run for both, and assert where rows landed."""

from __future__ import annotations

from dataclasses import dataclass

from tests.conftest import Api

PLACEMENTS = ("main", "own_database")


@dataclass(frozen=True)
class Placed:
    user: str
    url: str
    """The database that must hold the user's content."""
    elsewhere: str
    """The database that must not."""


async def place_user(api: Api, user: str, where: str, main_url: str,
                     user_db_url: str) -> Placed:
    if where == "main":
        return Placed(user, main_url, user_db_url)
    saved = await api.put("/api/byod", user, json={"url": user_db_url})
    assert saved.status_code == 202, saved.text
    state = await api.wait_for_state(user, "connected", "error")
    assert state["connection_status"] == "connected", state
    return Placed(user, user_db_url, main_url)


def content_count(url: str, table: str, user: str) -> int:
    """Rows of ``user`` in ``byodb.<table>``; 0 when the schema is not deployed there."""
    import psycopg

    with psycopg.connect(url) as conn:
        exists = conn.execute("select to_regclass(%s)", (f"byodb.{table}",)).fetchone()
        if not exists or exists[0] is None:
            return 0
        row = conn.execute(f"select count(*) from byodb.{table} where user_id = %s",
                           (user,)).fetchone()
    return int(row[0]) if row else 0
