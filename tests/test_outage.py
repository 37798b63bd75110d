"""While connected, the app blocks (never falls back to main) when the user's database is
down, and recovers on retry once it is back."""

from __future__ import annotations

import asyncio

import psycopg

from byodb.instances.connection.handle import PING_AFTER_IDLE_S
from byodb.maindb.embedded import PostgresCluster
from tests.conftest import Api, count_rows
from tests.providers import provider_database


async def background_jobs_finished(main_url: str, timeout_s: float = 30) -> None:
    """Wait until no background job (re-embedding, provisioning …) is queued or running."""
    for _ in range(int(timeout_s / 0.1)):
        if count_rows(main_url, "select count(*) from procrastinate_jobs where status in "
                      "('todo', 'doing') and scheduled_at is null") == 0:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("background jobs still running")


async def test_blocked_user_writes_nothing_to_main_and_recovers_on_retry(
        api: Api, main_url: str, own_server: PostgresCluster) -> None:
    url = provider_database(own_server).url
    await api.put("/api/byod", "gus", json={"url": url})
    assert (await api.wait_for_state("gus", "connected", "error"))["connection_status"] == \
        "connected"
    conversation = (await api.post("/api/conversations", "gus", json={"title": "t"})).json()
    # Someone without BYOD, to show they are never blocked.
    assert (await api.post("/api/conversations", "hal", json={})).status_code == 201

    own_server.stop("immediate")
    blocked = await api.post(f"/api/conversations/{conversation['id']}/messages", "gus",
                             json={"content": "are you there?"})
    assert blocked.status_code == 503
    assert blocked.json()["error"]["code"] == "byod_unavailable"
    state = (await api.get("/api/byod", "gus")).json()
    assert state["connection_status"] == "error"
    assert state["connection_error"]
    again = await api.get("/api/conversations", "gus")
    assert again.status_code == 503 and again.json()["error"]["code"] == "byod_unavailable"
    created = await api.post("/api/conversations", "gus", json={"title": "lost?"})
    assert created.status_code == 503
    # Nothing of gus's landed on main.
    for table in ("conversations", "messages"):
        assert count_rows(main_url, f"select count(*) from byodb.{table} where user_id = %s",
                          "gus") == 0
    assert (await api.get("/api/conversations", "hal")).status_code == 200

    # Retry while still down: stays in error with a clear reason.
    retried = await api.post("/api/byod/retry", "gus")
    assert retried.status_code == 200
    assert retried.json()["connection_status"] == "error"
    assert retried.json()["connection_error_code"] == "unreachable"

    PostgresCluster(own_server.root, port=own_server.port).start()
    recovered = await api.post("/api/byod/retry", "gus")
    assert recovered.status_code == 200
    assert recovered.json()["connection_status"] == "connected"
    listed = await api.get("/api/conversations", "gus")
    assert listed.status_code == 200
    assert [c["id"] for c in listed.json()["items"]] == [conversation["id"]]
    sent = await api.post(f"/api/conversations/{conversation['id']}/messages", "gus",
                          json={"content": "back again"})
    assert sent.status_code == 201
    with psycopg.connect(url) as conn:
        row = conn.execute("select count(*) from byodb.messages where user_id = 'gus'"
                           ).fetchone()
    assert row is not None and row[0] == 2


async def test_saved_url_later_pointing_nowhere_blocks_with_clear_error(
        api: Api, main_url: str, own_server: PostgresCluster) -> None:
    await api.put("/api/byod", "ivy", json={"url": provider_database(own_server).url})
    await api.wait_for_state("ivy", "connected", "error")
    # The server goes away for good (its port now closed) before this process has a pool.
    api.app.state.runtime.router.invalidate("ivy")
    await api.app.state.runtime.router.forget_user("ivy")
    own_server.stop("immediate")
    response = await api.get("/api/conversations", "ivy")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "byod_unavailable"
    assert (await api.get("/api/byod", "ivy")).json()["connection_status"] == "error"


async def test_tampered_credentials_block_instead_of_falling_back(
        api: Api, main_url: str, user_db_url: str) -> None:
    await api.put("/api/byod", "jon", json={"url": user_db_url})
    await api.wait_for_state("jon", "connected", "error")
    with psycopg.connect(main_url) as conn:
        ciphertext = conn.execute("select encrypted_url from user_database_config "
                                  "where user_id = 'jon'").fetchone()[0]  # type: ignore[index]
        flipped = ciphertext[:-3] + ("A" if ciphertext[-3] != "A" else "B") + ciphertext[-2:]
        conn.execute("update user_database_config set encrypted_url = %s "
                     "where user_id = 'jon'", (flipped,))
    await api.app.state.runtime.router.forget_user("jon")
    response = await api.get("/api/conversations", "jon")
    assert response.status_code == 503
    assert "credentials" in response.json()["error"]["message"]
    assert count_rows(main_url, "select count(*) from byodb.conversations where user_id = %s",
                      "jon") == 0


async def test_a_restart_of_the_users_server_is_not_an_outage(
        api: Api, main_url: str, own_server: PostgresCluster) -> None:
    """Pooled connections die with a restart; an idle one is replaced before use, so the
    user is not declared unreachable for connections that were merely stale."""
    await api.put("/api/byod", "kai", json={"url": provider_database(own_server).url})
    assert (await api.wait_for_state("kai", "connected", "error"))["connection_status"] == \
        "connected"
    created = await api.post("/api/conversations", "kai", json={"title": "before"})
    assert created.status_code == 201  # the pool now holds a connection from before
    # Nothing of kai's in flight when the server restarts: a request or job running across
    # a restart fails like any other (this test is about connections left idle by it).
    await background_jobs_finished(main_url)
    own_server.stop("fast")
    PostgresCluster(own_server.root, port=own_server.port).start()
    await asyncio.sleep(PING_AFTER_IDLE_S + 0.2)
    listed = await api.get("/api/conversations", "kai")
    assert listed.status_code == 200, listed.text
    assert [c["id"] for c in listed.json()["items"]] == [created.json()["id"]]
    assert (await api.get("/api/byod", "kai")).json()["connection_status"] == "connected"
