"""Several app replicas on one main database behave as one: a connection, an outage, a
retry and a disconnect made through one replica are honoured by the other at once (the
other replica learns of it from main, through the cross-process notification)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import psycopg
import pytest

from byodb.maindb.embedded import PostgresCluster
from byodb.settings import Settings
from byodb.web.app import create_app
from tests.conftest import Api, count_rows
from tests.providers import provider_database

USER = "rhea"
NOTIFY_GRACE_S = 5.0  # bound on how long a cross-process notification may take


@pytest.fixture
async def api_b(settings: Settings, main_url: str, api: Api) -> AsyncIterator[Api]:
    """A second replica on the same main database (same settings and key; no job worker:
    ``api`` runs the jobs). Depends on ``api`` so it starts after and stops before it."""
    app = create_app(settings, main_url=main_url, migrate=False, run_worker=False)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://byodb-b.test",
                                     timeout=60) as client:
            yield Api(app, client, settings)


def count_user(url: str, table: str) -> int:
    return count_rows(url, f"select count(*) from byodb.{table} where user_id = %s", USER)


async def eventually(check: Callable[[], Awaitable[bool]], what: str,
                     timeout_s: float = NOTIFY_GRACE_S) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if await check():
            return
        if time.monotonic() > deadline:
            raise AssertionError(what)
        await asyncio.sleep(0.05)


async def test_two_replicas_on_one_main_behave_as_one(
        api: Api, api_b: Api, main_url: str, own_server: PostgresCluster) -> None:
    a, b = api, api_b
    url = provider_database(own_server).url
    # B has looked at the user before they connect (it caches the user's route on main).
    assert (await b.get("/api/conversations", USER)).json()["items"] == []

    # -- connect through A; B writes to the user's database -----------------------------
    saved = await a.put("/api/byod", USER, json={"url": url})
    assert saved.status_code == 202, saved.text
    state = await a.wait_for_state(USER, "connected", "error")
    assert state["connection_status"] == "connected", state
    assert (await b.get("/api/byod", USER)).json()["connection_status"] == "connected"

    created: list[httpx.Response] = []

    async def b_creates() -> bool:
        # A retry-safe 503 ("your data just moved") is allowed only while B's notification
        # is in flight; the write must never land on main.
        response = await b.post("/api/conversations", USER, json={"title": "via B"})
        assert response.status_code in (201, 503), response.text
        assert count_user(main_url, "conversations") == 0, "B wrote the user's content to main"
        created.append(response)
        return response.status_code == 201

    await eventually(b_creates, "B never wrote to the user's database after the connection: "
                     f"{[r.text for r in created]}")
    conversation = created[-1].json()["id"]
    sent = await b.post(f"/api/conversations/{conversation}/messages", USER,
                        json={"content": "hello from B"})
    assert sent.status_code == 201, sent.text
    assert count_user(url, "conversations") == 1
    assert count_user(url, "messages") == 2
    assert count_user(main_url, "conversations") == 0
    assert count_user(main_url, "messages") == 0
    # Both replicas serve the user from their database (and each now holds pooled connections).
    for replica in (a, b):
        listed = await replica.get("/api/conversations", USER)
        assert listed.status_code == 200, listed.text
        assert [c["id"] for c in listed.json()["items"]] == [conversation]
        messages = await replica.get(f"/api/conversations/{conversation}/messages", USER)
        assert len(messages.json()["items"]) == 2

    # -- the user's server goes down: both replicas block ------------------------------------
    own_server.stop("immediate")
    for name, replica in (("A", a), ("B", b)):
        for attempt in range(2):
            blocked = await replica.get("/api/conversations", USER)
            assert blocked.status_code == 503, (name, attempt, blocked.text)
            assert blocked.json()["error"]["code"] == "byod_unavailable", (name, blocked.text)
    written = await b.post("/api/conversations", USER, json={"title": "during the outage"})
    assert written.status_code == 503 and \
        written.json()["error"]["code"] == "byod_unavailable", written.text
    assert count_user(main_url, "conversations") == 0
    assert (await a.get("/api/byod", USER)).json()["connection_status"] == "error"

    # -- it comes back; one retry through A serves the user on both ------------------------
    PostgresCluster(own_server.root, port=own_server.port).start()
    retried = await a.post("/api/byod/retry", USER)
    assert retried.status_code == 200, retried.text
    assert retried.json()["connection_status"] == "connected", retried.text
    listed = await a.get("/api/conversations", USER)
    assert listed.status_code == 200, listed.text
    assert [c["id"] for c in listed.json()["items"]] == [conversation]

    seen: list[str] = []

    async def b_serves() -> bool:
        response = await b.get("/api/conversations", USER)
        seen.append(f"{response.status_code} {response.text[:200]}")
        if response.status_code == 200:
            return True
        # Waiting for B to hear of the retry is fine; B knocking the user back into error
        # (a stale pooled connection from before the outage) is not.
        status = (await a.get("/api/byod", USER)).json()
        assert status["connection_status"] == "connected", (
            f"B's request put the user back into {status['connection_status']} "
            f"({status['connection_error']}) after a successful retry: {seen}")
        return False

    await eventually(b_serves, f"B never served the user again after A's retry: {seen}")
    assert [c["id"] for c in (await b.get("/api/conversations", USER)).json()["items"]] == \
        [conversation]
    again = await b.post(f"/api/conversations/{conversation}/messages", USER,
                         json={"content": "B is back"})
    assert again.status_code == 201, again.text
    assert count_user(url, "messages") == 4
    for replica in (a, b):
        shown = await replica.get(f"/api/conversations/{conversation}/messages", USER)
        assert shown.status_code == 200, shown.text
        assert len(shown.json()["items"]) == 4
    state = (await a.get("/api/byod", USER)).json()
    assert state["connection_status"] == "connected", state

    # -- disconnect (keep) through B; A goes to main at once ----------------------------------
    left = await b.post("/api/byod/disconnect", USER, json={"mode": "keep"})
    assert left.status_code == 200, left.text
    assert left.json()["connection_status"] == "disconnected"

    async def a_on_main() -> bool:
        response = await a.get("/api/conversations", USER)
        assert response.status_code == 200, response.text
        return bool(response.json()["items"] == [])

    await eventually(a_on_main, "A kept serving the user's database after B disconnected")
    fresh = await a.post("/api/conversations", USER, json={"title": "on main now"})
    assert fresh.status_code == 201, fresh.text
    assert count_user(main_url, "conversations") == 1
    assert count_user(url, "conversations") == 1  # keep: their copy stays untouched
    assert count_user(url, "messages") == 4
    for replica in (a, b):
        listed = await replica.get("/api/conversations", USER)
        assert [c["id"] for c in listed.json()["items"]] == [fresh.json()["id"]]
    with psycopg.connect(main_url) as conn:
        row = conn.execute("select encrypted_url from user_database_config where user_id = %s",
                           (USER,)).fetchone()
    assert row is not None and row[0] is None
