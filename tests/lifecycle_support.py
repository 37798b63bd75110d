"""A user's whole life with their own database, through the public API only: test, save,
connected, chat, text and semantic search, the admin's health check and fleet migration,
migrate back, reconnect, delete. The end-to-end tests run it against databases shaped like
each provider's (directly, through PgBouncer, over verified TLS)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from byodb.content import CONTENT_SCHEMA_VERSION, MIN_SUPPORTED_SCHEMA_VERSION
from tests.conftest import Api, count_rows
from tests.providers import byodb_schema_exists

OLDEST = MIN_SUPPORTED_SCHEMA_VERSION
ADMIN = "root"
CHAT = ("I repair old bicycles in my garage",
        "The red bicycle needs a new chain",
        "Tomatoes grow well on the balcony",
        "My bicycle tyres are always flat in winter",
        "Remind me to oil the chain every month",
        "Which bicycle pump should I buy?")
"""Six messages: more than psycopg's prepare threshold (5) of requests of one kind on one
connection, so a statement prepared on the server would be reused through the pooler."""


@dataclass
class Connection:
    """What the user gives byodb: a URL (and a CA certificate when their provider has one),
    plus the direct owner URL the test checks rows with."""

    url: str
    direct_url: str
    ca_certificate: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"url": self.url, **self.extra}
        if self.ca_certificate is not None:
            body["ca_certificate"] = self.ca_certificate
        return body


def rows(url: str, table: str, user: str) -> int:
    return count_rows(url, f"select count(*) from byodb.{table} where user_id = %s", user)


def meta_version(url: str) -> int:
    return count_rows(url, "select schema_version from byodb.byodb_meta")


async def connect(api: Api, user: str, target: Connection) -> dict[str, Any]:
    """Test the URL, then save it; the state once connected."""
    tested = await api.post("/api/byod/test", user, json=target.body())
    assert tested.status_code == 200, tested.text
    verdict = tested.json()
    assert verdict["ok"] is True and verdict["code"] == "ok", verdict
    saved = await api.put("/api/byod", user, json=target.body())
    assert saved.status_code == 202, saved.text
    state = await api.wait_for_state(user, "connected", "error", timeout_s=60)
    assert state["connection_status"] == "connected", state
    return state


async def chat(api: Api, user: str, *contents: str) -> str:
    created = await api.post("/api/conversations", user, json={"title": "Workshop"})
    assert created.status_code == 201, created.text
    conversation_id = str(created.json()["id"])
    for content in contents:
        sent = await api.post(f"/api/conversations/{conversation_id}/messages", user,
                              json={"content": content})
        assert sent.status_code == 201, sent.text
        assert sent.json()["assistant_message"]["role"] == "assistant"
    # The reply does not wait for the exchange's embedding and memories: they follow it.
    await api.app.state.runtime.after_work.settled()
    return conversation_id


async def search(api: Api, user: str, q: str, mode: str) -> list[dict[str, Any]]:
    found = await api.get("/api/search", user, params={"q": q, "mode": mode})
    assert found.status_code == 200, found.text
    items: list[dict[str, Any]] = found.json()["items"]
    return items


async def health_check_now(api: Api) -> dict[str, Any]:
    """The admin's "check all connections now"; the finished sweep."""
    admin = api.headers(ADMIN, admin=True)
    before = (await api.client.get("/api/admin/byod/health", headers=admin)).json()
    queued = await api.client.post("/api/admin/byod/health-check", headers=admin)
    assert queued.status_code == 202, queued.text
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        schedule = (await api.client.get("/api/admin/byod/health", headers=admin)).json()
        last = schedule["last_sweep"]
        if last is not None and last != before["last_sweep"] and schedule["running"] is None:
            return dict(last)
        await asyncio.sleep(0.1)
    raise AssertionError("the health sweep never finished")


async def migrate_all(api: Api, to_version: int) -> dict[str, Any]:
    """The admin's fleet schema run to ``to_version``; the ended run."""
    admin = api.headers(ADMIN, admin=True)
    started = await api.client.post("/api/admin/byod/migrations", headers=admin,
                                    json={"to_version": to_version, "canary": 0})
    assert started.status_code == 202, started.text
    run_id = started.json()["id"]
    deadline = time.monotonic() + 90
    run: dict[str, Any] = {}
    while time.monotonic() < deadline:
        run = (await api.client.get(f"/api/admin/byod/migrations/{run_id}",
                                    headers=admin)).json()
        if run["status"] != "running":
            return run
        await asyncio.sleep(0.1)
    raise AssertionError(f"the fleet run never ended: {run}")


async def disconnect(api: Api, user: str, mode: str) -> dict[str, Any]:
    started = await api.post("/api/byod/disconnect", user, json={"mode": mode})
    assert started.status_code == 202, started.text
    state = await api.wait_for_state(user, "disconnected", "error", timeout_s=60)
    assert state["connection_status"] == "disconnected", state
    return state


async def whole_lifecycle(api: Api, main_url: str, user: str, target: Connection) -> None:
    """Everything a user and the operator do with one database, checked where rows land.
    The app's settings must hold new deploys at ``OLDEST`` so the fleet run has work."""
    state = await connect(api, user, target)
    assert state["schema_version"] == OLDEST
    assert meta_version(target.direct_url) == OLDEST

    conversation_id = await chat(api, user, *CHAT)
    assert rows(target.direct_url, "messages", user) == 2 * len(CHAT)
    assert rows(main_url, "messages", user) == 0
    assert count_rows(target.direct_url, "select count(*) from byodb.messages where "
                      "user_id = %s and embedding is not null", user) == 2 * len(CHAT)
    texts = await search(api, user, "bicycle chain", "text")
    assert texts and all(item.get("conversation_id") in (None, conversation_id)
                         for item in texts)
    assert any("chain" in item["snippet"].lower() for item in texts)
    meanings = await search(api, user, "bicycle repairs", "semantic")
    assert meanings and {item["type"] for item in meanings} >= {"message"}

    sweep = await health_check_now(api)
    assert sweep["failed"] == 0, sweep
    state = (await api.get("/api/byod", user)).json()
    assert state["connection_status"] == "connected" and not state["blocked"], state

    run = await migrate_all(api, CONTENT_SCHEMA_VERSION)
    assert run["status"] == "completed", run
    assert meta_version(target.direct_url) == CONTENT_SCHEMA_VERSION
    state = (await api.get("/api/byod", user)).json()
    assert state["schema_version"] == CONTENT_SCHEMA_VERSION, state
    # Still serving after the migration: a message with its embedding, found by meaning.
    await chat(api, user, "A bicycle bell for the new frame")
    assert await search(api, user, "bell", "semantic")

    await disconnect(api, user, "migrate")
    messages = 2 * (len(CHAT) + 1)
    assert rows(main_url, "messages", user) == messages
    assert rows(target.direct_url, "messages", user) == 0
    listed = (await api.get("/api/conversations", user)).json()["items"]
    assert conversation_id in {c["id"] for c in listed}

    await connect(api, user, target)  # back again: the content moves to their database
    assert rows(target.direct_url, "messages", user) == messages
    assert rows(main_url, "messages", user) == 0
    await disconnect(api, user, "delete")
    assert not byodb_schema_exists(target.direct_url)
    assert rows(main_url, "messages", user) == 0
    assert (await api.get("/api/conversations", user)).json()["items"] == []
