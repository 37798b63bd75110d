"""Property: whatever several users do — some on main, two sharing one database of their own —
nobody ever sees, changes or deletes another user's rows, through any route, search included.

Hypothesis draws programs of operations; each user may aim at any id that exists, their own
or someone else's. The model knows who owns what and what every answer must be.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import Api

MAIN_USERS = ("main-ann", "main-bob")
OWN_USERS = ("own-cat", "own-dan")  # both on the same database of their own
USERS = MAIN_USERS + OWN_USERS
KINDS = ("conversations", "notes", "tasks", "memories", "tags")
WORDS = ("apple", "river", "violin", "granite", "orbit", "saffron", "harbor", "lantern")


@dataclass
class World:
    owner: dict[str, str] = field(default_factory=dict)  # id -> user
    kind: dict[str, str] = field(default_factory=dict)  # id -> collection
    alive: set[str] = field(default_factory=set)
    links: set[tuple[str, str]] = field(default_factory=set)  # (conversation, tag)

    def add(self, user: str, kind: str, row_id: str) -> None:
        self.owner[row_id], self.kind[row_id] = user, kind
        self.alive.add(row_id)

    def mine(self, user: str, kind: str | None = None) -> set[str]:
        return {i for i in self.alive if self.owner[i] == user
                and (kind is None or self.kind[i] == kind)}


def _body(kind: str, word: str, n: int) -> dict[str, Any]:
    return {"conversations": {"title": f"{word} talk {n}"},
            "notes": {"title": f"{word} note", "content": f"all about {word} number {n}"},
            "tasks": {"title": f"{word} task {n}"},
            "memories": {"content": f"The user likes {word} ({n})."},
            "tags": {"name": f"{word}-{n}"}}[kind]


create = st.tuples(st.just("create"), st.sampled_from(USERS), st.sampled_from(KINDS),
                   st.sampled_from(WORDS), st.integers(0, 10**6))
tag_link = st.tuples(st.just("tag"), st.sampled_from(USERS), st.integers(0, 10**6),
                     st.integers(0, 10**6))
operation = st.one_of(
    create, create, create, tag_link,
    st.tuples(st.just("get"), st.sampled_from(USERS), st.integers(0, 10**6)),
    st.tuples(st.just("patch"), st.sampled_from(USERS), st.integers(0, 10**6)),
    st.tuples(st.just("delete"), st.sampled_from(USERS), st.integers(0, 10**6)),
    st.tuples(st.just("message"), st.sampled_from(USERS), st.integers(0, 10**6),
              st.sampled_from(WORDS)),
    st.tuples(st.just("tag"), st.sampled_from(USERS), st.integers(0, 10**6),
              st.integers(0, 10**6)),
    st.tuples(st.just("list"), st.sampled_from(USERS), st.sampled_from(KINDS)),
    st.tuples(st.just("search"), st.sampled_from(USERS), st.sampled_from(WORDS),
              st.sampled_from(["text", "semantic"])),
)


def _pick(world: World, index: int, kind: str | None = None,
          user: str | None = None) -> str | None:
    """An existing id: odd indexes aim at the user's own rows, even ones at anybody's."""
    candidates = sorted(i for i in world.alive if (kind is None or world.kind[i] == kind)
                        and (user is None or index % 2 == 0 or world.owner[i] == user))
    return candidates[index // 2 % len(candidates)] if candidates else None


async def _run(api: Api, world: World, op: tuple[Any, ...]) -> None:
    action, user = op[0], op[1]
    if action == "create":
        _, _, kind, word, n = op
        response = await api.post(f"/api/{kind}", user, json=_body(kind, word, n))
        if kind == "tags" and response.status_code == 409:
            return  # the user already has a tag of that name: nothing was created
        assert response.status_code == 201, response.text
        world.add(user, kind, response.json()["id"])
    elif action in ("get", "patch", "delete"):
        target = _pick(world, op[2], user=user)
        if target is None:
            return
        kind, path = world.kind[target], f"/api/{world.kind[target]}/{target}"
        change = {"tags": {"color": "#ff0000"}, "memories": {"importance": 0.5}}.get(
            kind, {"title": "changed by " + user})
        method = {"get": "GET", "patch": "PATCH", "delete": "DELETE"}[action]
        response = await api.request(method, path, user,
                                     json=change if action == "patch" else None)
        if world.owner[target] != user:
            assert response.status_code == 404, (op, response.text)
            assert response.json()["error"]["code"] == "not_found"
            return
        assert response.status_code == (204 if action == "delete" else 200), response.text
        if action == "delete":
            world.alive.discard(target)
            world.links = {link for link in world.links if target not in link}
        else:
            assert response.json()["user_id"] == user
    elif action == "message":
        target = _pick(world, op[2], "conversations", user)
        if target is None:
            return
        response = await api.post(f"/api/conversations/{target}/messages", user,
                                  json={"content": f"I like {op[3]}"})
        expected = 201 if world.owner[target] == user else 404
        assert response.status_code == expected, (op, response.text)
    elif action == "tag":
        conversation = _pick(world, op[2], "conversations", user)
        tag = _pick(world, op[3] * 2 + op[2] % 2, "tags", user)  # same aim as the conversation
        if conversation is None or tag is None:
            return
        response = await api.post(f"/api/conversations/{conversation}/tags", user,
                                  json={"tag_id": tag})
        if world.owner[conversation] != user or world.owner[tag] != user:
            assert response.status_code == 404, (op, response.text)
        elif (conversation, tag) in world.links:
            assert response.status_code == 409, (op, response.text)
        else:
            assert response.status_code == 201, (op, response.text)
            world.links.add((conversation, tag))
    elif action == "list":
        kind = op[2]
        params = {"archived": "true"} if kind == "conversations" else {}
        listed: set[str] = set()
        response = await api.get(f"/api/{kind}", user, params={**params, "limit": 200})
        assert response.status_code == 200, response.text
        listed |= {item["id"] for item in response.json()["items"]}
        if kind == "conversations":
            active = await api.get("/api/conversations", user, params={"limit": 200})
            listed |= {item["id"] for item in active.json()["items"]}
        known = world.mine(user, kind)
        if kind == "memories":
            # Extraction adds memories of the user's own messages; never anyone else's.
            assert known <= listed
            assert not listed & {i for i in world.owner if world.owner[i] != user}
        else:
            assert listed == known, (op, listed ^ known)
    elif action == "search":
        response = await api.get("/api/search", user, params={"q": op[2], "mode": op[3]})
        assert response.status_code == 200, response.text
        others = {i for i in world.owner if world.owner[i] != user}
        for item in response.json()["items"]:
            assert item["id"] not in others, (op, item)
            for ref in ("conversation_id", "file_id"):
                assert item.get(ref) not in others, (op, item)


@pytest.fixture
async def isolated_world(api: Api, user_db_url: str) -> tuple[Api, World, str]:
    for user in OWN_USERS:
        await api.put("/api/byod", user, json={"url": user_db_url})
        state = await api.wait_for_state(user, "connected", "error")
        assert state["connection_status"] == "connected", state
    return api, World(), user_db_url


@settings(max_examples=15, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.too_slow])
@given(program=st.lists(operation, min_size=5, max_size=30))
async def test_nobody_sees_changes_or_deletes_another_users_rows(
        isolated_world: tuple[Api, World, str], main_url: str,
        program: list[tuple[Any, ...]]) -> None:
    api, world, user_db_url = isolated_world
    for op in program:
        await _run(api, world, op)
    # Every row of every content table is where its owner's content lives, nowhere else.
    with psycopg.connect(main_url) as main, psycopg.connect(user_db_url) as own:
        for table in ("conversations", "messages", "notes", "tasks", "memories", "tags",
                      "conversation_tags"):
            on_main = {r[0] for r in main.execute(
                f"select distinct user_id from byodb.{table}").fetchall()}
            on_own = {r[0] for r in own.execute(
                f"select distinct user_id from byodb.{table}").fetchall()}
            assert on_main <= set(MAIN_USERS), (table, on_main)
            assert on_own <= set(OWN_USERS), (table, on_own)
        # Rows the model says exist are exactly there, with their owner.
        for row_id in world.alive:
            db = own if world.owner[row_id] in OWN_USERS else main
            row = db.execute(f"select user_id from byodb.{world.kind[row_id]} where id = %s",
                             (row_id,)).fetchone()
            assert row is not None and row[0] == world.owner[row_id]
