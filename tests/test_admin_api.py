"""The admin BYOD API: admins only (checked on the server), correct fleet totals, instances
errors-first, one instance's migration history, and never a password or ciphertext."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from byodb.content import latest_schema_version
from tests.conftest import Api

SECRET_CIPHERTEXT = "v1.k1.dGhpcy1pcy10aGUtY2lwaGVydGV4dA"


LATEST = latest_schema_version()


def add_instance(main_url: str, user_id: str, status: str, *, deployment: str = "deployed",
                 version: int | None = LATEST, error: str | None = None,
                 updated_minutes_ago: int = 0) -> None:
    updated = datetime.now(UTC) - timedelta(minutes=updated_minutes_ago)
    with psycopg.connect(main_url) as conn:
        conn.execute("insert into users (id) values (%s) on conflict do nothing", (user_id,))
        conn.execute(
            "insert into user_database_config (user_id, encrypted_url, credential_version, "
            "redacted_url, host, connection_status, deployment_status, schema_version, "
            "connection_error, connection_error_code, last_connection_test, updated_at) "
            "values (%s, %s, 1, %s, %s, %s, %s, %s, %s, %s, now(), %s)",
            (user_id, SECRET_CIPHERTEXT, f"postgresql://{user_id}:****@db-{user_id}.example.com"
             f":5432/app", f"db-{user_id}.example.com", status, deployment, version, error,
             "unreachable" if error else None, updated))


def add_user(main_url: str, user_id: str) -> None:
    with psycopg.connect(main_url) as conn:
        conn.execute("insert into users (id) values (%s)", (user_id,))


def add_migration(main_url: str, user_id: str, from_version: int, to_version: int,
                  status: str, error: str | None = None) -> None:
    with psycopg.connect(main_url) as conn:
        conn.execute(
            "insert into byod_migrations (id, user_id, from_version, to_version, status, "
            "attempts, error, started_at, completed_at, duration_ms) "
            "values (%s, %s, %s, %s, %s, 1, %s, now(), now(), 1234)",
            (uuid.uuid4(), user_id, from_version, to_version, status, error))


async def admin_get(api: Api, path: str) -> Any:
    response = await api.client.get(path, headers=api.headers("root", admin=True))
    assert response.status_code == 200, response.text
    return response.json()


async def test_admin_api_refuses_non_admins(api: Api, main_url: str) -> None:
    add_instance(main_url, "ann", "connected")
    for path in ("/api/admin/byod", "/api/admin/byod/instances/ann"):
        anonymous = await api.client.get(path)
        assert anonymous.status_code == 401, path
        user = await api.get(path, "ann")
        assert user.status_code == 403, path
        assert user.json()["error"]["code"] == "forbidden"
        assert "ann.example.com" not in user.text


async def test_admin_sees_fleet_totals_versions_and_instances(api: Api, main_url: str) -> None:
    latest = latest_schema_version()
    add_user(main_url, "no-byod")
    add_instance(main_url, "ok-1", "connected", updated_minutes_ago=30)
    add_instance(main_url, "ok-2", "connected", updated_minutes_ago=1)
    add_instance(main_url, "old", "connected", version=latest - 1, updated_minutes_ago=5)
    add_instance(main_url, "down", "error", error="Your database stopped answering.",
                 updated_minutes_ago=60)
    add_instance(main_url, "new", "pending", deployment="deploying", version=None)
    add_instance(main_url, "gone", "disconnected", deployment="not_started", version=None,
                 updated_minutes_ago=2)

    body = await admin_get(api, "/api/admin/byod")
    assert body["latest_schema_version"] == latest
    # "root" signed in for this request and has no database: counted as not configured.
    assert body["totals"] == {"connected": 3, "pending": 1, "moving": 0, "error": 1,
                              "disconnected": 1, "none": 2}
    assert body["users"] == 8
    assert body["versions"] == [{"schema_version": latest, "count": 3},
                                {"schema_version": latest - 1, "count": 1}]
    assert body["behind_latest"] == 1
    assert body["instance_count"] == 6

    order = [item["user_id"] for item in body["instances"]]
    assert order == ["down", "new", "ok-2", "gone", "old", "ok-1"]  # errors, then newest
    down = body["instances"][0]
    assert down["host"] == "db-down.example.com"
    assert down["connection_error"] == "Your database stopped answering."
    assert down["last_connection_test"] is not None
    assert {i["user_id"]: i["behind_latest"] for i in body["instances"]}["old"] is True
    assert SECRET_CIPHERTEXT not in str(body) and "encrypted_url" not in str(body)

    only_errors = await admin_get(api, "/api/admin/byod?status=error")
    assert [i["user_id"] for i in only_errors["instances"]] == ["down"]


async def test_fleet_actions_are_reported_unavailable_until_their_backend_exists(
        api: Api) -> None:
    body = await admin_get(api, "/api/admin/byod")
    actions = {a["id"]: a for a in body["fleet_actions"]}
    assert set(actions) == {"migrate_all", "health_check"}
    assert {a["path"] for a in actions.values()} == {"/api/admin/byod/migrations",
                                                    "/api/admin/byod/health-check"}
    # Health check: its backend exists (web/api/admin_health.py), so the dashboard offers it.
    assert actions["health_check"]["available"] is True
    assert actions["health_check"]["reason"] is None
    # Schema migrations: its backend exists (web/api/admin_migrations.py) and answers.
    assert actions["migrate_all"]["available"] is True
    assert actions["migrate_all"]["reason"] is None
    answered = await api.client.post(actions["migrate_all"]["path"], json={},
                                     headers=api.headers("root", admin=True))
    assert answered.status_code == 202 and "id" in answered.json()


async def test_admin_sees_one_instance_with_its_migration_history(api: Api,
                                                                  main_url: str) -> None:
    add_instance(main_url, "mo", "connected", version=2)
    add_migration(main_url, "mo", 1, 2, "completed")
    add_migration(main_url, "mo", 2, 3, "failed", error="statement timeout")
    add_migration(main_url, "someone-else", 1, 2, "completed")

    body = await admin_get(api, "/api/admin/byod/instances/mo")
    assert body["instance"]["user_id"] == "mo"
    assert body["instance"]["database"] == "postgresql://mo:****@db-mo.example.com:5432/app"
    assert [(m["from_version"], m["to_version"], m["status"]) for m in body["migrations"]] == \
        [(2, 3, "failed"), (1, 2, "completed")]
    assert body["migrations"][0]["error"] == "statement timeout"
    assert body["migrations"][0]["duration_ms"] == 1234
    assert SECRET_CIPHERTEXT not in str(body)

    missing = await api.client.get("/api/admin/byod/instances/nobody",
                                   headers=api.headers("root", admin=True))
    assert missing.status_code == 404


async def test_a_real_connection_shows_up_for_the_admin(api: Api, user_db_url: str) -> None:
    await api.put("/api/byod", "pat", json={"url": user_db_url})
    await api.wait_for_state("pat", "connected", "error")
    body = await admin_get(api, "/api/admin/byod")
    assert body["totals"]["connected"] == 1
    (pat,) = [i for i in body["instances"] if i["user_id"] == "pat"]
    assert pat["host"] == "127.0.0.1" and pat["schema_version"] == latest_schema_version()
    password = user_db_url.split(":")[2].split("@")[0]
    assert password not in str(body) and "****" in pat["database"]


async def test_check_all_now_queues_one_sweep_that_reports_its_time_and_duration(
        api: Api, main_url: str) -> None:
    """The dashboard's "Check all connections now": admins only, 202, and the sweep it
    queued shows as the last sweep (time, duration, counts)."""
    refused = await api.post("/api/admin/byod/health-check", "someone")
    assert refused.status_code == 403
    queued = await api.client.post("/api/admin/byod/health-check",
                                   headers=api.headers("root", admin=True))
    assert queued.status_code == 202
    assert queued.json()["interval_s"] == api.settings.health_interval_s
    deadline = time.monotonic() + 60
    operator_sweeps = 0
    while time.monotonic() < deadline and operator_sweeps == 0:
        await asyncio.sleep(0.2)
        with psycopg.connect(main_url) as conn:
            row = conn.execute("select count(*) from health_sweeps where trigger = 'operator' "
                               "and finished_at is not null").fetchone()
        operator_sweeps = row[0] if row else 0
    assert operator_sweeps == 1
    schedule = await admin_get(api, "/api/admin/byod/health")
    assert schedule["last_sweep"]["duration_ms"] is not None
    assert schedule["last_sweep"]["finished_at"] and schedule["next_sweep_after"]
