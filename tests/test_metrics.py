"""``GET /metrics``: Prometheus text an operator can scrape and alert on — instances by
status and schema version, the last health sweep, migrations by state, job queue depth,
request latency by placement — with nothing per-user in it, optionally behind a token, and
an answer even when main hangs."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from byodb.content import latest_schema_version
from byodb.instances.lifecycle.jobs import CONNECT_QUEUE
from byodb.settings import Settings
from tests.conftest import Api, app_behind_proxy, running_app
from tests.tcp_proxy import FreezableProxy

BYOD_USER = "metrics-byod-user-7f3a"
MAIN_USER = "metrics-main-user-c21e"


def parse(text: str) -> list[Sample]:
    """Every sample of a scrape (raises on anything that is not the text format)."""
    return [sample for family in text_string_to_metric_families(text)
            for sample in family.samples]


async def scrape(api: Api, headers: dict[str, str] | None = None) -> list[Sample]:
    response = await api.client.get("/metrics", headers=headers or {})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return parse(response.text)


def value(samples: list[Sample], name: str, **labels: str) -> float:
    found = [s.value for s in samples if s.name == name and s.labels == labels]
    assert len(found) == 1, f"{name}{labels}: {found}"
    return found[0]


def names(samples: list[Sample]) -> set[str]:
    return {s.name for s in samples}


async def connect_user(api: Api, user: str, url: str) -> None:
    saved = await api.put("/api/byod", user, json={"url": url})
    assert saved.status_code == 202, saved.text
    state = await api.wait_for_state(user, "connected", "error")
    assert state["connection_status"] == "connected", state


def serving(settings: Settings, main_url: str) -> AbstractAsyncContextManager[Api]:
    """The app without a job worker: no scheduled sweep writes rows while a test looks."""
    return running_app(settings, main_url, run_worker=False)


def latency_count(samples: list[Sample], placement: str) -> float:
    return value(samples, "byodb_request_duration_seconds_count", placement=placement)


async def test_instances_by_status_and_schema_version(api: Api, user_db_url: str) -> None:
    before = await scrape(api)
    assert value(before, "byodb_metrics_main_complete") == 1
    assert value(before, "byodb_instances", status="connected") == 0
    assert value(before, "byodb_instances", status="error") == 0
    assert "byodb_instances_by_schema_version" not in names(before)

    await connect_user(api, BYOD_USER, user_db_url)
    after = await scrape(api)
    assert value(after, "byodb_instances", status="connected") == 1
    assert value(after, "byodb_instances", status="none") == 0
    latest = str(latest_schema_version())
    assert value(after, "byodb_instances_by_schema_version", schema_version=latest) == 1
    assert value(after, "byodb_content_schema_latest_version") == latest_schema_version()


async def test_every_status_and_version_is_counted(settings: Settings, main_url: str) -> None:
    # Rows as the lifecycle leaves them; no worker runs, so no sweep changes them meanwhile.
    rows = [("u-error-1", "error", 1), ("u-error-2", "error", 2), ("u-moving", "moving", None),
            ("u-connected", "connected", 2), ("u-gone", "disconnected", 1),
            ("u-pending", "pending", None)]
    with psycopg.connect(main_url, autocommit=True) as conn:
        for user, status, version in rows:
            conn.execute("insert into user_database_config (user_id, connection_status, "
                         "schema_version) values (%s, %s, %s)", (user, status, version))
    async with serving(settings, main_url) as api:
        samples = await scrape(api)
    for status, count in (("error", 2), ("moving", 1), ("connected", 1), ("disconnected", 1),
                          ("pending", 1), ("none", 0)):
        assert value(samples, "byodb_instances", status=status) == count, status
    # By version: the instances whose database is in use (connected, error, moving) only.
    assert value(samples, "byodb_instances_by_schema_version", schema_version="1") == 1
    assert value(samples, "byodb_instances_by_schema_version", schema_version="2") == 2
    assert value(samples, "byodb_instances_by_schema_version", schema_version="unknown") == 1


async def test_the_last_finished_health_sweep_is_reported(settings: Settings,
                                                          main_url: str) -> None:
    async with serving(settings, main_url) as api:
        await check_last_sweep(api, main_url)


async def check_last_sweep(api: Api, main_url: str) -> None:
    assert "byodb_health_sweep_last_finished_timestamp_seconds" not in names(await scrape(api))
    with psycopg.connect(main_url, autocommit=True) as conn:
        conn.execute(
            "insert into health_sweeps (id, trigger, started_at, finished_at, checked, "
            "healthy, failed, recovered, duration_ms) values (%s, 'schedule', "
            "'2026-01-02 03:04:00+00', '2026-01-02 03:04:05+00', 40, 37, 3, 2, 4250)",
            (uuid.uuid4(),))
        # A sweep still running (started later, not finished) is not "the last sweep".
        conn.execute("insert into health_sweeps (id, trigger, started_at) values "
                     "(%s, 'operator', '2026-01-02 03:09:00+00')", (uuid.uuid4(),))
    samples = await scrape(api)
    assert value(samples, "byodb_health_sweep_last_finished_timestamp_seconds") == \
        1767323045.0  # 2026-01-02T03:04:05Z
    assert value(samples, "byodb_health_sweep_last_duration_seconds") == 4.25
    assert value(samples, "byodb_health_sweep_last_checked") == 40
    assert value(samples, "byodb_health_sweep_last_healthy") == 37
    assert value(samples, "byodb_health_sweep_last_failed") == 3
    assert value(samples, "byodb_health_sweep_last_recovered") == 2


async def test_migrations_by_state_and_job_queue_depth(api: Api, main_url: str) -> None:
    before = await scrape(api)
    for state in ("pending", "running", "completed", "failed"):
        assert value(before, "byodb_instance_migrations", state=state) == 0
    connect_todo = value(before, "byodb_job_queue_depth", queue=CONNECT_QUEUE, status="todo")
    with psycopg.connect(main_url, autocommit=True) as conn:
        for user, status in (("m1", "pending"), ("m2", "pending"), ("m3", "failed"),
                             ("m4", "completed")):
            conn.execute("insert into byod_migrations (id, user_id, from_version, to_version, "
                         "status) values (%s, %s, 1, 2, %s)", (uuid.uuid4(), user, status))
        # Jobs not due for a day: no worker takes them while the test looks.
        for queue in (CONNECT_QUEUE, "someone-elses-queue"):
            conn.execute("insert into procrastinate_jobs (queue_name, task_name, "
                         "scheduled_at) values (%s, 'metrics.test', now() + interval '1 day')",
                         (queue,))
    response = await api.get("/metrics")
    samples = parse(response.text)
    assert value(samples, "byodb_instance_migrations", state="pending") == 2
    assert value(samples, "byodb_instance_migrations", state="failed") == 1
    assert value(samples, "byodb_instance_migrations", state="completed") == 1
    assert value(samples, "byodb_instance_migrations", state="running") == 0
    assert value(samples, "byodb_job_queue_depth", queue=CONNECT_QUEUE,
                 status="todo") == connect_todo + 1
    # A queue byodb does not own is counted, under "other", never by its name.
    assert value(samples, "byodb_job_queue_depth", queue="other", status="todo") == 1
    assert "someone-elses-queue" not in response.text


async def test_request_latency_is_counted_by_placement(api: Api, user_db_url: str) -> None:
    await connect_user(api, BYOD_USER, user_db_url)
    await api.post("/api/conversations", MAIN_USER, json={"title": "on main"})

    before = await scrape(api)
    listed = await api.get("/api/conversations", BYOD_USER)
    assert listed.status_code == 200
    after_byod = await scrape(api)
    assert latency_count(after_byod, "user") == latency_count(before, "user") + 1
    assert latency_count(after_byod, "main") == latency_count(before, "main")

    listed = await api.get("/api/conversations", MAIN_USER)
    assert listed.status_code == 200
    after_main = await scrape(api)
    assert latency_count(after_main, "main") == latency_count(after_byod, "main") + 1
    assert latency_count(after_main, "user") == latency_count(after_byod, "user")
    # Requests that reach no database are not requests "on" either placement.
    await api.get("/healthz")
    after_probe = await scrape(api)
    assert latency_count(after_probe, "main") == latency_count(after_main, "main")
    assert latency_count(after_probe, "user") == latency_count(after_main, "user")


async def test_nothing_per_user_in_any_label_or_value_line(
        api: Api, main_url: str, user_db_url: str) -> None:
    await connect_user(api, BYOD_USER, user_db_url)
    await api.post("/api/conversations", MAIN_USER, json={"title": "on main"})
    await api.get("/api/conversations", BYOD_USER)
    with psycopg.connect(main_url, autocommit=True) as conn:
        conn.execute("insert into byod_migrations (id, user_id, from_version, to_version, "
                     "status) values (%s, %s, 1, 2, 'failed')", (uuid.uuid4(), BYOD_USER))
    response = await api.get("/metrics")
    samples = parse(response.text)
    assert value(samples, "byodb_instances", status="connected") == 1  # bob is in it
    parts = urlsplit(user_db_url)
    forbidden = [BYOD_USER, MAIN_USER, str(parts.hostname), f":{parts.port}",
                 parts.path.strip("/"), "postgresql", str(parts.password)]
    for sample in samples:
        for label in sample.labels.values():
            for secret in forbidden:
                assert secret not in label, (sample, secret)
    value_lines = [line for line in response.text.splitlines() if not line.startswith("#")]
    for secret in forbidden:
        assert not any(secret in line for line in value_lines), secret


@pytest.fixture
async def guarded(settings: Settings, main_url: str) -> AsyncIterator[Api]:
    """The app with ``BYODB_METRICS_TOKEN`` set."""
    async with serving(settings.model_copy(update={"metrics_token": "scrape-me-7d1c"}),
                       main_url) as api:
        yield api


async def test_the_token_guards_the_metrics(guarded: Api) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"},
                    {"Authorization": "Bearer scrape-me-7d1"},  # a prefix of the token
                    {"Authorization": "Basic scrape-me-7d1c"},
                    {"Authorization": "Bearer "}):
        refused = await guarded.client.get("/metrics", headers=headers)
        assert refused.status_code == 401, headers
        assert refused.json()["error"]["code"] == "unauthenticated"
        assert "byodb_" not in refused.text

    # A user's sign-in token is not the metrics token either.
    signed_in = await guarded.get("/metrics", MAIN_USER)
    assert signed_in.status_code == 401

    samples = await scrape(guarded, headers={"Authorization": "Bearer scrape-me-7d1c"})
    assert value(samples, "byodb_metrics_main_complete") == 1


async def test_open_without_a_token(api: Api) -> None:
    assert api.settings.metrics_token is None
    assert (await api.get("/metrics")).status_code == 200


@pytest.fixture
async def proxied(settings: Settings, main_url: str) -> AsyncIterator[tuple[Api, Any]]:
    """The app with main behind a proxy the test can freeze."""
    fast = settings.model_copy(update={"metrics_timeout_s": 1.0})
    async with app_behind_proxy(fast, main_url) as (api, proxy):
        yield api, proxy


async def test_a_hung_main_gives_a_partial_scrape_not_a_hung_one(
        proxied: tuple[Api, FreezableProxy]) -> None:
    api, proxy = proxied
    assert value(await scrape(api), "byodb_metrics_main_complete") == 1

    proxy.freeze()
    # Twice: the second scrape shares the read still stuck on main instead of piling on.
    for _ in range(2):
        samples = await scrape(api)
        assert value(samples, "byodb_metrics_main_complete") == 0
        assert "byodb_instances" not in names(samples)
        # What this process knows on its own is still there.
        assert latency_count(samples, "main") >= 0
        assert value(samples, "byodb_content_schema_latest_version") == \
            latest_schema_version()
    proxy.thaw()
