"""Writes are held while a user's content moves: a request that chose main just before the
move started waits for it, then is told to retry — its row never lands behind the move."""

from __future__ import annotations

import asyncio

import psycopg

from byodb.instances.connection.guard import parse_database_url
from byodb.instances.lifecycle import config_store
from byodb.instances.lifecycle.holds import user_lock_key
from byodb.vault import Secret
from tests.conftest import Api, count_rows


async def test_write_racing_a_move_waits_and_never_lands_on_main(api: Api, main_url: str,
                                                                 user_db_url: str) -> None:
    rt = api.app.state.runtime
    await config_store.save_credentials(rt.main, rt.vault, "ula",
                                        parse_database_url(user_db_url), Secret(user_db_url))
    assert (await api.get("/api/conversations", "ula")).status_code == 200  # route: main
    with psycopg.connect(main_url, autocommit=True) as mover:
        mover.execute("select pg_advisory_lock(%s)", (user_lock_key("ula"),))
        write = asyncio.create_task(api.post("/api/conversations", "ula",
                                             json={"title": "raced"}))
        await asyncio.sleep(0.5)
        assert not write.done()  # held behind the move
        # The move completes: the user is now on their own database.
        mover.execute("update user_database_config set connection_status = 'connected', "
                      "deployment_status = 'deployed', content_placement = 'user' "
                      "where user_id = 'ula'")
        mover.execute("select pg_advisory_unlock(%s)", (user_lock_key("ula"),))
    response = await write
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "byod_unavailable"
    assert count_rows(main_url, "select count(*) from byodb.conversations where user_id = %s",
                      "ula") == 0
