"""The health sweep: a server that stops takes its users to ``error`` only after the
configured failed checks, with one alert (grouped when many) and nothing of theirs written
to main; when it is back they are connected again by themselves, with one recovery email.
A black-holed server costs one deadline; a database that lost its schema or holds another
one is an error of its own; two sweepers do one sweep; a refusing mail server breaks
nothing; no email or log holds a password."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from procrastinate.periodic import PeriodicDeferrer

from byodb.instances.health.sweep import SweepSummary
from byodb.instances.lifecycle.config_store import URL_FIELD
from byodb.jobs.queue import bound_job_app
from byodb.maindb.embedded import PostgresCluster
from byodb.runtime import build_runtime
from byodb.settings import Settings
from byodb.vault import Secret
from tests.blackhole import BlackHole
from tests.conftest import Api, count_rows
from tests.instances_support import deploy_schema
from tests.providers import ProviderDatabase, provider_database
from tests.smtp_support import Inbox, smtp_inbox
from tests.test_pages import page

SMTP_PASSWORD = "smtp-pw-9f8e7d"
USERS = ("ana", "ben", "cai")
HEALTH_TIMEOUT_S = 1.5


@pytest.fixture
def inbox() -> Iterator[Inbox]:
    with smtp_inbox(user="alerts", password=SMTP_PASSWORD) as box:
        yield box


@pytest.fixture
def settings(tmp_path: Path, inbox: Inbox) -> Settings:
    return Settings(BYODB_DATA_DIR=tmp_path / "data", BYODB_ENV="development",
                    BYODB_ALLOW_PRIVATE_HOSTS=True, BYODB_TEST_RATE_LIMIT=1000,
                    BYODB_SMTP_URL=inbox.url, BYODB_ALERT_EMAILS="ops@example.test",
                    BYODB_ALERT_GROUP_THRESHOLD=2, BYODB_HEALTH_FAILURES=2,
                    BYODB_HEALTH_TIMEOUT=HEALTH_TIMEOUT_S)


async def connect_users(api: Api, server: PostgresCluster,
                        users: tuple[str, ...]) -> dict[str, ProviderDatabase]:
    """Connect each user to a database of their own, made as providers make it; then
    settle their re-embedding (nothing to do) and let the worker's start-up sweep end, so
    no background job visits their databases while a test counts what its sweeps do."""
    databases = {user: provider_database(server, prefix="sweep") for user in users}
    for user, database in databases.items():
        saved = await api.put("/api/byod", user, json={"url": database.url})
        assert saved.status_code == 202, saved.text
    for user in users:
        assert (await api.wait_for_state(user, "connected", "error"))["connection_status"] \
            == "connected"
        await api.settle_reembedding(user)
    await api.worker_swept_once()
    return databases


async def sweep(api: Api) -> SweepSummary:
    """One sweep now (waiting out the worker's scheduled one if it holds the lock)."""
    summary = await api.app.state.runtime.health.sweeper.sweep_when_free(patience_s=60)
    assert summary is not None, "the sweep lock was never free"
    return summary


async def statuses(api: Api, users: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    return {user: (await api.get("/api/byod", user)).json() for user in users}


def notifications(main_url: str, kind: str) -> int:
    return count_rows(main_url, "select count(*) from notifications where kind = %s",
                      kind)


async def test_stopped_server_blocks_its_users_after_the_failures_and_they_recover_alone(
        api: Api, main_url: str, own_server: PostgresCluster, inbox: Inbox,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    await connect_users(api, own_server, USERS)
    conversation = (await api.post("/api/conversations", "ana", json={"title": "t"})).json()
    healthy = await sweep(api)
    assert (healthy.checked, healthy.healthy, healthy.failed) == (3, 3, 0)

    own_server.stop("immediate")
    first = await sweep(api)
    assert (first.checked, first.failed) == (3, 3)
    # One failed check is below BYODB_HEALTH_FAILURES=2: still connected, nobody alerted.
    assert {s["connection_status"] for s in (await statuses(api, USERS)).values()} == \
        {"connected"}
    assert inbox.subjects == []

    second = await sweep(api)
    assert second.failed == 3
    now = await statuses(api, USERS)
    assert {s["connection_status"] for s in now.values()} == {"error"}
    assert {s["connection_error_code"] for s in now.values()} == {"unreachable"}
    # Three went down in one sweep, over the group threshold of 2: one email lists them.
    assert inbox.subjects == ["[byodb] 3 user databases went down"]
    body = inbox.bodies()[0]
    for user in USERS:
        assert f"user {user} on host 127.0.0.1 — unreachable" in body
    assert notifications(main_url, "byod_down") == 3

    await sweep(api)  # still down: no second email, no second notification
    assert len(inbox.subjects) == 1
    assert notifications(main_url, "byod_down") == 3
    blocked = await api.post(f"/api/conversations/{conversation['id']}/messages", "ana",
                             json={"content": "anyone?"})
    assert blocked.status_code == 503
    assert blocked.json()["error"]["code"] == "byod_unavailable"
    for table in ("conversations", "messages"):
        assert count_rows(main_url, f"select count(*) from byodb.{table} where user_id = "
                          "any(%s)", list(USERS)) == 0

    PostgresCluster(own_server.root, port=own_server.port).start()
    back = await sweep(api)
    assert (back.checked, back.healthy, back.recovered) == (3, 3, 3)
    assert {s["connection_status"] for s in (await statuses(api, USERS)).values()} == \
        {"connected"}
    # No retry pressed: the blocked route was dropped, the user works again at once.
    sent = await api.post(f"/api/conversations/{conversation['id']}/messages", "ana",
                          json={"content": "back"})
    assert sent.status_code == 201
    assert inbox.subjects == ["[byodb] 3 user databases went down",
                              "[byodb] 3 user databases recovered"]
    assert notifications(main_url, "byod_recovered") == 3
    settings_page = await page(api, "/settings/database", "ana")
    assert "Your database stopped answering." in settings_page.text
    assert "Your database is back: you are connected again." in settings_page.text
    await sweep(api)
    assert len(inbox.subjects) == 2
    # The admin dashboard shows each instance's last check, its latency and error.
    overview = (await api.client.get("/api/admin/byod",
                                     headers=api.headers("root", admin=True))).json()
    ana = next(i for i in overview["instances"] if i["user_id"] == "ana")
    assert ana["last_health_check_at"] and ana["health_latency_ms"] is not None
    assert ana["health_error_code"] is None and ana["outage_reported_at"] is None
    assert count_rows(main_url, "select count(*) from email_alerts "
                      "where sent_at is not null") == 2
    # Neither the users' database password nor the SMTP password is in any email or log.
    everything = b"".join(inbox.raw).decode() + caplog.text
    assert own_server.password not in everything
    assert SMTP_PASSWORD not in everything
    sweeps = count_rows(main_url, "select count(*) from health_sweeps where "
                        "trigger = 'operator' and finished_at is not null and checked = 3")
    assert sweeps == 6


async def test_lost_or_foreign_schema_is_its_own_error_with_one_email_each(
        api: Api, main_url: str, user_server: PostgresCluster, inbox: Inbox) -> None:
    users = ("dee", "eli")
    databases = await connect_users(api, user_server, users)
    for user in users:  # the owner drops their schema (the owner may)
        with psycopg.connect(databases[user].url, autocommit=True) as conn:
            conn.execute("drop schema byodb cascade")
    await deploy_schema(databases["eli"].url)  # another instance's schema now
    await sweep(api)
    await sweep(api)
    now = await statuses(api, users)
    assert now["dee"]["connection_status"] == "error"
    assert now["dee"]["connection_error_code"] == "schema_missing"
    assert now["eli"]["connection_status"] == "error"
    assert now["eli"]["connection_error_code"] == "schema_conflict"
    # Two went down, not over the threshold: one email each, with the code in it.
    # The subject is byodb's own words; who it is about is in the body.
    assert inbox.subjects == ["[byodb] a user database went down"] * 2
    bodies = sorted(inbox.bodies())
    assert "user dee on host 127.0.0.1 — schema_missing" in bodies[0]
    assert "user eli on host 127.0.0.1 — schema_conflict" in bodies[1]


async def test_black_holed_server_costs_one_deadline_and_delays_no_one(
        api: Api, main_url: str, own_server: PostgresCluster) -> None:
    await connect_users(api, own_server, ("fay", "gil"))
    runtime = api.app.state.runtime
    async with BlackHole() as hole:
        # fay's provider now sends her host to a machine that accepts and never answers.
        async with runtime.main.begin() as conn:
            await conn.exec_driver_sql(
                "update user_database_config set encrypted_url = %(u)s "
                "where user_id = 'fay'",
                {"u": runtime.vault.encrypt(Secret(hole.url(password="hole-pw-1")),
                                            user_id="fay", field=URL_FIELD)})
        started = time.monotonic()
        summary = await sweep(api)
        took = time.monotonic() - started
        assert hole.accepted == 1
        await asyncio.sleep(0)  # let the listener see the client's close
        assert hole.open_connections == 0  # the check really let go of the socket
    assert (summary.checked, summary.healthy, summary.failed) == (2, 1, 1)
    assert took < 2 * HEALTH_TIMEOUT_S  # one deadline, not one per retry or per step
    rows = {row[0]: row[1:] for row in _health_facts(main_url)}
    assert rows["fay"][0] == "timeout"
    assert rows["gil"][0] is None and rows["gil"][1] is not None  # gil checked, latency kept


def _health_facts(main_url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(main_url) as conn:
        return conn.execute("select user_id, health_error_code, health_latency_ms "
                            "from user_database_config").fetchall()


@pytest.fixture
async def two_processes(settings: Settings, main_url: str) -> AsyncIterator[list[Any]]:
    """Two runtimes on one main database, as two app replicas have them."""
    runtimes = [build_runtime(settings, main_url) for _ in range(2)]
    yield runtimes
    for runtime in runtimes:
        await runtime.close()


async def test_two_processes_on_the_same_tick_do_one_sweep(
        two_processes: list[Any], main_url: str) -> None:
    def sweeps() -> int:
        return count_rows(main_url, "select count(*) from health_sweeps")

    tick = time.time()
    outcomes = await asyncio.gather(*(rt.health.sweeper.sweep_if_due(tick, 300)
                                      for rt in two_processes))
    assert sum(1 for o in outcomes if o is not None) == 1
    assert sweeps() == 1
    # The next minute's tick: the interval has not passed, nobody sweeps.
    later = await asyncio.gather(*(rt.health.sweeper.sweep_if_due(tick + 60, 300)
                                   for rt in two_processes))
    assert later == [None, None] and sweeps() == 1
    # Five minutes on, one of them sweeps again.
    due = await asyncio.gather(*(rt.health.sweeper.sweep_if_due(tick + 300, 300)
                                 for rt in two_processes))
    assert sum(1 for o in due if o is not None) == 1 and sweeps() == 2


async def test_refusing_mail_server_does_not_break_the_sweep_and_is_retried(
        api: Api, main_url: str, own_server: PostgresCluster, inbox: Inbox) -> None:
    await connect_users(api, own_server, ("hal",))
    inbox.refuse = True
    own_server.stop("immediate")
    await sweep(api)
    summary = await sweep(api)
    assert summary.failed == 1 and summary.alerts.failed == 1
    assert (await api.get("/api/byod", "hal")).json()["connection_status"] == "error"
    assert inbox.refused == 1 and inbox.subjects == []
    with psycopg.connect(main_url) as conn:
        row = conn.execute("select attempts, sent_at, last_error from email_alerts"
                           ).fetchone()
    assert row is not None and row[0] == 1 and row[1] is None
    assert SMTP_PASSWORD not in row[2]
    inbox.refuse = False
    await sweep(api)  # the next sweep delivers it; the outage is not reported twice
    assert inbox.subjects == ["[byodb] a user database went down"]
    assert "user hal on host" in inbox.bodies()[0]


async def test_every_worker_defers_the_same_tick_and_one_job_is_queued(main_url: str) -> None:
    """Each replica's workers run procrastinate's periodic deferrer; for one tick of the
    health schedule only one job reaches the queue (unique periodic id + timestamp)."""
    async with bound_job_app(main_url) as app:
        [tick_task] = [task for (name, _), task in app.periodic_registry.periodic_tasks.items()
                       if name == "health:scheduled_sweep"]
        tick = int(time.time()) // 60 * 60
        for _ in range(3):  # three workers (or replicas) reaching the same minute
            await PeriodicDeferrer(app.periodic_registry).defer_jobs([(tick_task, tick)])
    assert count_rows(main_url, "select count(*) from procrastinate_jobs where task_name = "
                      "'health:scheduled_sweep'") == 1
