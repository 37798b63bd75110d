"""One user's stuck database never delays another (DESIGN.md §7).

A *stuck* database is not a down one: its server stops answering without closing anything
(a paused VM, a black-holed route). :class:`tests.tcp_proxy.FreezableProxy` plays it. The
rules under test:

- every operation on a user database has a deadline that really stops it (the query is
  cancelled, the socket closed), so a stuck user gets ``503 byod_unavailable`` — never a 500,
  never a hang — and is marked unreachable (``error``);
- users without BYOD, and other BYOD users, are served meanwhile, and other users' connects
  still complete (stuck jobs do not hold the queue);
- nothing stays ``moving`` or ``deploying`` forever; a retry after the database is back
  brings the user back with their content.

The deadlines are made short by the ``settings`` fixture below. Times are never asserted as
performance: :func:`bounded` only turns a hang into a failure, with a generous bound.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psycopg
import pytest

from byodb.maindb.embedded import PostgresCluster
from byodb.settings import Settings
from tests.conftest import Api, count_rows
from tests.providers import provider_database
from tests.tcp_proxy import FreezableProxy

T = TypeVar("T")

HANG_BOUND_S = 60.0  # a request or a state change that takes longer than this is a hang
SETTLE_BOUND_S = 90.0  # a background job must reach a recorded state within this

# Short deadlines, so a stuck database is given up on in seconds (docs/operations.md).
SHORT_DEADLINES: dict[str, Any] = {
    "BYODB_CONNECT_TIMEOUT": 2,
    "BYODB_TEST_TIMEOUT": 3,
    "BYODB_DEPLOY_TIMEOUT": 30,
    "BYODB_USER_POOL_SIZE": 2,
    # A routed request's transaction on a user database, end to end, client side.
    "BYODB_USER_REQUEST_TIMEOUT": 5,
    # Per statement on a user database (server side).
    "BYODB_USER_STATEMENT_TIMEOUT": 3,
    "BYODB_USER_LOCK_TIMEOUT": 2,
    "BYODB_MOVE_TIMEOUT": 20,  # one data move as a whole
}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """The suite's settings with short deadlines for user databases."""
    return Settings(BYODB_DATA_DIR=tmp_path / "data", BYODB_ENV="development",
                    BYODB_ALLOW_PRIVATE_HOSTS=True, BYODB_TEST_RATE_LIMIT=1000,
                    **SHORT_DEADLINES)


# -- fixtures: databases behind freezing proxies, and lock holders --------------------------

@dataclass
class ProxiedDatabase:
    name: str
    direct_url: str  # straight to the server: for the test's own checks
    proxy: FreezableProxy

    @property
    def url(self) -> str:  # what the user gives byodb: through the proxy
        return self.proxy.url_for(self.direct_url)


@pytest.fixture
def proxied_databases(api: Api, user_server: PostgresCluster
                      ) -> Iterator[Callable[[], ProxiedDatabase]]:
    """Make fresh databases on ``user_server``, each behind its own freezing proxy.

    Depends on ``api`` so that the proxies close *before* the app shuts down: closing them
    closes every frozen socket, which releases whatever the app still has stuck on one.
    """
    made: list[ProxiedDatabase] = []

    def make() -> ProxiedDatabase:
        made_here = provider_database(user_server, prefix="stuck")
        direct = made_here.url
        proxy = FreezableProxy.for_url(direct).start()
        database = ProxiedDatabase(made_here.name, direct, proxy)
        made.append(database)
        return database

    try:
        yield make
    finally:
        for database in made:
            database.proxy.close()


@pytest.fixture
def fresh_database(api: Api, user_server: PostgresCluster) -> Callable[[], str]:
    """Fresh healthy databases (direct URLs) for newcomers."""
    def make() -> str:
        return provider_database(user_server, prefix="fresh").url
    return make


@pytest.fixture
def lock_holders(api: Api) -> Iterator[list[psycopg.Connection[Any]]]:
    """Connections that hold locks on users' databases; closed before the app shuts down."""
    held: list[psycopg.Connection[Any]] = []
    try:
        yield held
    finally:
        for conn in held:
            try:
                conn.rollback()
            except psycopg.Error:
                pass
            finally:
                conn.close()


# -- helpers ----------------------------------------------------------------------------

async def bounded(awaitable: Awaitable[T], what: str, bound_s: float = HANG_BOUND_S) -> T:
    """``awaitable``'s result; a failure (not a hang) when it takes longer than ``bound_s``."""
    try:
        return await asyncio.wait_for(awaitable, bound_s)
    except TimeoutError:
        raise AssertionError(f"hung: {what} did not finish within {bound_s:.0f} s") from None


def assert_unavailable(response: httpx.Response, what: str) -> None:
    assert response.status_code == 503, (what, response.status_code, response.text)
    error = response.json()["error"]
    assert error["code"] == "byod_unavailable", (what, error)
    assert error["message"], (what, error)


def assert_clear_error(response: httpx.Response, what: str) -> None:
    """An error the API meant to give: JSON error with a code, not a 500."""
    assert response.status_code >= 400, (what, response.status_code, response.text)
    assert response.status_code != 500, (what, response.text)
    error = response.json()["error"]
    assert error["code"] and error["message"], (what, error)


async def connect(api: Api, user: str, url: str) -> dict[str, Any]:
    """PUT the URL, then wait until the background job connected the user."""
    saved = await bounded(api.put("/api/byod", user, json={"url": url}), f"PUT for {user}")
    assert saved.status_code == 202, (user, saved.text)
    state = await api.wait_for_state(user, "connected", "error", timeout_s=SETTLE_BOUND_S)
    assert state["connection_status"] == "connected", (user, state)
    return state


async def create_conversation(api: Api, user: str, title: str) -> str:
    created = await bounded(api.post("/api/conversations", user, json={"title": title}),
                            f"create for {user}")
    assert created.status_code == 201, (user, created.text)
    return str(created.json()["id"])


async def conversation_ids(api: Api, user: str) -> set[str]:
    listed = await bounded(api.get("/api/conversations", user), f"list for {user}")
    assert listed.status_code == 200, (user, listed.text)
    return {c["id"] for c in listed.json()["items"]}


async def settle(api: Api, user: str) -> dict[str, Any]:
    """The user's state once no job is under way for them (bounded: never moving forever)."""
    return await api.wait_for_state(user, "connected", "error", "disconnected",
                                    timeout_s=SETTLE_BOUND_S)


async def retry_until_connected(api: Api, user: str) -> dict[str, Any]:
    """POST /api/byod/retry (200 when it reconnects at once, 202 when it queued a redeploy),
    then wait until the user is connected again (bounded)."""
    retried = await bounded(api.post("/api/byod/retry", user), f"retry for {user}")
    assert retried.status_code in (200, 202), (user, retried.text)
    # After a 202 the old ``error`` stays visible until the job starts: wait for connected.
    deadline = asyncio.get_running_loop().time() + SETTLE_BOUND_S
    state: dict[str, Any] = retried.json()
    while not (state["connection_status"] == "connected"
               and state["deployment_status"] != "deploying"):
        assert asyncio.get_running_loop().time() < deadline, \
            f"{user} never came back after a retry: {state}"
        await asyncio.sleep(0.2)
        state = (await bounded(api.get("/api/byod", user), f"state of {user}")).json()
    return state


# -- a) frozen databases block only their owners ------------------------------------------

async def test_frozen_databases_block_only_their_owners(
        api: Api, main_url: str, proxied_databases: Callable[[], ProxiedDatabase],
        fresh_database: Callable[[], str]) -> None:
    stuck = {f"stuck-{i}": proxied_databases() for i in range(12)}
    # Four at a time: a dozen deployments at once on a busy two-core machine can pass the
    # short deploy deadline, which is not what this test is about.
    users = list(stuck.items())
    for first in range(0, len(users), 4):
        await bounded(asyncio.gather(*(connect(api, user, db.url)
                                       for user, db in users[first:first + 4])),
                      "connecting four users", SETTLE_BOUND_S * 2)
    # Each has content on their database and a warm pool (a connection parked in it).
    before = {user: await create_conversation(api, user, "before the freeze")
              for user in stuck}
    for user in stuck:
        assert await conversation_ids(api, user) == {before[user]}

    for db in stuck.values():
        db.proxy.freeze()

    in_flight = 0
    seen_in_flight_by_others: list[int] = []

    async def stuck_request(user: str, method: str) -> httpx.Response:
        nonlocal in_flight
        in_flight += 1
        try:
            if method == "GET":
                return await api.get("/api/conversations", user)
            return await api.post("/api/conversations", user, json={"title": "while frozen"})
        finally:
            in_flight -= 1

    # More concurrent requests per user than their pool holds (size 2 + overflow 2): some
    # wait for a pooled connection and must end as 503 as well.
    requests = [(user, method) for user in stuck for method in ("GET", "POST") * 3]

    async def main_only_user() -> None:
        for n in range(5):
            created = await bounded(api.post("/api/conversations", "free-rider",
                                             json={"title": f"on main {n}"}), "main user")
            seen_in_flight_by_others.append(in_flight)
            assert created.status_code == 201, created.text
            listed = await bounded(api.get("/api/conversations", "free-rider"), "main user")
            assert listed.status_code == 200, listed.text
            assert len(listed.json()["items"]) == n + 1

    async def newcomer() -> None:
        await connect(api, "newcomer", fresh_database())
        await create_conversation(api, "newcomer", "on my healthy database")

    async def stuck_requests() -> list[httpx.Response]:
        return await asyncio.gather(*(bounded(stuck_request(user, method),
                                              f"{method} /api/conversations for {user}")
                                      for user, method in requests))

    responses, _, _ = await asyncio.gather(stuck_requests(), main_only_user(), newcomer())

    for (user, method), response in zip(requests, responses, strict=True):
        assert_unavailable(response, f"{method} for {user}")
    # The user without BYOD was answered while stuck requests were still waiting on their
    # deadlines (their answers did not queue behind them).
    assert seen_in_flight_by_others and seen_in_flight_by_others[0] > 0, \
        seen_in_flight_by_others
    for user in stuck:
        state = (await bounded(api.get("/api/byod", user), f"state of {user}")).json()
        assert state["connection_status"] == "error", (user, state)
        assert state["connection_error"], (user, state)
        # Blocked means blocked: nothing of theirs was written to main instead.
        assert count_rows(main_url, "select count(*) from byodb.conversations "
                          "where user_id = %s", user) == 0
        again = await bounded(api.get("/api/conversations", user), f"again for {user}")
        assert_unavailable(again, f"second GET for {user}")
    assert (await api.get("/api/byod", "newcomer")).json()["connection_status"] == "connected"

    # d) Back: thaw, retry, and each has exactly their content.
    for db in stuck.values():
        db.proxy.thaw()
    for user in stuck:
        await retry_until_connected(api, user)
        assert await conversation_ids(api, user) == {before[user]}


# -- b) databases that freeze in the middle of a job -------------------------------------

async def test_databases_freezing_mid_job_end_in_a_recorded_state(
        api: Api, main_url: str, proxied_databases: Callable[[], ProxiedDatabase],
        fresh_database: Callable[[], str]) -> None:
    # Users who move back to main, each with content on their database first.
    leaving = {f"leaving-{i}": proxied_databases() for i in range(3)}
    await bounded(asyncio.gather(*(connect(api, user, db.url)
                                   for user, db in leaving.items())),
                  "connecting the leavers", SETTLE_BOUND_S * 2)
    leaving_content: dict[str, set[str]] = {}
    for user in leaving:
        ids = set()
        for n in range(4):
            conversation = await create_conversation(api, user, f"kept {n}")
            ids.add(conversation)
            reply = await bounded(api.post(f"/api/conversations/{conversation}/messages",
                                           user, json={"content": "hello " * 50}),
                                  f"message for {user}")
            assert reply.status_code == 201, reply.text
        leaving_content[user] = ids

    # Users who connect now: their databases freeze before or during the deployment.
    deploying = {f"deploying-{i}": proxied_databases() for i in range(4)}
    armed_at: dict[str, int] = {}  # bytes forwarded when a mid-job freeze was armed

    for n, (user, db) in enumerate(deploying.items()):
        saved = await bounded(api.put("/api/byod", user, json={"url": db.url}), f"PUT {user}")
        assert saved.status_code == 202, saved.text
        if n % 2 == 0:
            db.proxy.freeze()  # before the job even connects
        else:
            # Some kilobytes into the deployment: the schema's DDL (about 22 kB in 120
            # statements) is being sent when the database stops answering.
            armed_at[user] = db.proxy.bytes_up
            db.proxy.freeze_after(upstream_bytes=8_000)

    for n, (user, db) in enumerate(leaving.items()):
        started = await bounded(api.post("/api/byod/disconnect", user,
                                         json={"mode": "migrate"}), f"disconnect {user}")
        assert started.status_code == 202, started.text
        if n == 0:
            db.proxy.freeze()  # before the job connects
        else:
            # Mid-copy: the job has read a part of the user's rows when it stops answering.
            armed_at[user] = db.proxy.bytes_down
            db.proxy.freeze_after(downstream_bytes=4_000 * n)

    # Meanwhile other users connect healthy databases: the stuck jobs (more of them than
    # one worker runs at once) must not keep them waiting.
    newcomers = [f"newcomer-{i}" for i in range(3)]
    await bounded(asyncio.gather(*(connect(api, user, fresh_database())
                                   for user in newcomers)),
                  "newcomers connecting while others are stuck", SETTLE_BOUND_S * 2)
    assert (await api.post("/api/conversations", "main-user", json={})).status_code == 201

    # Every stuck job ends in a recorded state: never deploying or moving forever.
    for user, db in deploying.items():
        state = await settle(api, user)
        assert db.proxy.frozen, f"test setup: {user}'s proxy never froze"
        if user in armed_at:  # test setup: frozen in the DDL, past the connection handshakes
            assert db.proxy.bytes_up > armed_at[user] + 4_000, (user, db.proxy.bytes_up)
        assert state["connection_status"] == "error", (user, state)
        assert state["deployment_status"] != "deploying", (user, state)
        assert state["connection_error"], (user, state)
        # Their content never left main: they keep working there.
        assert (await bounded(api.get("/api/conversations", user), user)).status_code == 200
    for user, db in leaving.items():
        state = await settle(api, user)
        assert db.proxy.frozen, f"test setup: {user}'s proxy never froze"
        if user in armed_at:  # test setup: frozen while rows were read, past the handshakes
            assert db.proxy.bytes_down > armed_at[user] + 2_000, (user, db.proxy.bytes_down)
        assert state["connection_status"] in ("error", "connected"), (user, state)
        if state["connection_status"] == "error":
            assert state["connection_error"], (user, state)

    # Once the databases answer again, a retry completes what was interrupted.
    for db in [*deploying.values(), *leaving.values()]:
        db.proxy.thaw()
    for user in deploying:
        state = await retry_until_connected(api, user)
        assert state["deployment_status"] == "deployed", (user, state)
        assert (await bounded(api.get("/api/conversations", user), user)).status_code == 200
    for user in leaving:
        state = await settle(api, user)
        if state["connection_status"] == "error":
            await retry_until_connected(api, user)
        # Nothing lost, nothing duplicated: the interrupted move left no copies on main.
        assert await conversation_ids(api, user) == leaving_content[user]
        assert count_rows(main_url, "select count(*) from byodb.conversations "
                          "where user_id = %s", user) == 0


# -- c) content tables locked by the user's own transaction ------------------------------

async def test_locked_tables_on_a_users_database_time_out_the_request_not_the_user(
        api: Api, main_url: str, fresh_database: Callable[[], str],
        lock_holders: list[psycopg.Connection[Any]]) -> None:
    locked = {f"locked-{i}": fresh_database() for i in range(3)}
    healthy = {"unlocked": fresh_database()}
    await bounded(asyncio.gather(*(connect(api, user, url)
                                   for user, url in {**locked, **healthy}.items())),
                  "connecting", SETTLE_BOUND_S * 2)
    content = {user: await create_conversation(api, user, "mine")
               for user in [*locked, *healthy]}
    # What is measured is the users' own requests: no background re-embedding of theirs
    # waits on the locks beside them (a job's failure is its own test's matter).
    for user in [*locked, *healthy]:
        await api.settle_reembedding(user)

    for url in locked.values():
        holder = psycopg.connect(url)
        lock_holders.append(holder)
        holder.execute("lock table byodb.conversations in access exclusive mode")
        holder.execute("lock table byodb.messages in access exclusive mode")

    in_flight = 0
    seen_in_flight_by_others: list[int] = []

    async def locked_request(user: str, method: str) -> httpx.Response:
        nonlocal in_flight
        in_flight += 1
        try:
            if method == "GET":
                return await api.get("/api/conversations", user)
            return await api.post("/api/conversations", user, json={"title": "while locked"})
        finally:
            in_flight -= 1

    async def others() -> None:
        for n in range(3):
            for user in ("main-user", *healthy):
                created = await bounded(api.post("/api/conversations", user,
                                                 json={"title": f"n{n}"}), user)
                seen_in_flight_by_others.append(in_flight)
                assert created.status_code == 201, (user, created.text)

    requests = [(user, method) for user in locked for method in ("GET", "POST")]
    responses, _ = await asyncio.gather(
        asyncio.gather(*(bounded(locked_request(user, method), f"{method} for {user}")
                         for user, method in requests)),
        others())
    for (user, method), response in zip(requests, responses, strict=True):
        # Slow is not down: the database answered (its lock limit fired), so this request
        # gets byod_timeout with Retry-After, and the user stays connected.
        assert response.status_code == 503, (method, user, response.text)
        assert response.json()["error"]["code"] == "byod_timeout", (method, user, response.text)
        assert response.headers.get("retry-after"), (method, user)
    # Served while the locked requests were still waiting (not queued behind them).
    assert seen_in_flight_by_others and seen_in_flight_by_others[0] > 0, \
        seen_in_flight_by_others
    for user in locked:
        state = (await bounded(api.get("/api/byod", user), user)).json()
        assert state["connection_status"] == "connected", (user, state)

    # Released: they work again at once, no retry needed.
    for holder in lock_holders:
        holder.rollback()
    for user in locked:
        assert content[user] in await conversation_ids(api, user)
        await create_conversation(api, user, "after the lock")
    assert count_rows(main_url, "select count(*) from byodb.conversations where user_id "
                      "like %s", "locked-%") == 0


# -- d) thawed, retried, back with the content ------------------------------------------

async def test_a_thawed_database_comes_back_on_retry_with_its_content(
        api: Api, main_url: str, proxied_databases: Callable[[], ProxiedDatabase]) -> None:
    db = proxied_databases()
    # Content written on main first, moved over by the connect.
    on_main = await create_conversation(api, "returning", "from main")
    await connect(api, "returning", db.url)
    on_theirs = await create_conversation(api, "returning", "on my database")
    assert await conversation_ids(api, "returning") == {on_main, on_theirs}

    db.proxy.freeze()
    blocked = await bounded(api.post("/api/conversations", "returning",
                                     json={"title": "lost in the freeze"}), "blocked POST")
    assert_unavailable(blocked, "POST while frozen")
    assert (await api.get("/api/byod", "returning")).json()["connection_status"] == "error"

    # Retry while still frozen: a recorded answer within the deadline, still error.
    still = await bounded(api.post("/api/byod/retry", "returning"), "retry while frozen")
    assert still.status_code in (200, 202), still.text
    assert (await settle(api, "returning"))["connection_status"] == "error"

    db.proxy.thaw()
    await retry_until_connected(api, "returning")
    assert await conversation_ids(api, "returning") == {on_main, on_theirs}
    after = await create_conversation(api, "returning", "after the thaw")
    assert count_rows(db.direct_url, "select count(*) from byodb.conversations "
                      "where user_id = %s", "returning") == 3
    assert count_rows(main_url, "select count(*) from byodb.conversations "
                      "where user_id = %s", "returning") == 0
    assert after in await conversation_ids(api, "returning")

