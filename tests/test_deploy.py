"""Deploy is one transaction: complete or nothing; re-running is a no-op."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine

from byodb.content import CONTENT_SCHEMA_VERSION, content_table_names
from byodb.instances.deploy import DeployError, deploy_content_schema_on
from byodb.maindb.urls import sync_url
from tests.conftest import Api, count_rows


class Boom(Exception):
    pass


def _tables(url: str) -> int:
    return count_rows(url, "select count(*) from pg_tables where schemaname = 'byodb'")


def test_deploy_creates_everything_and_rerun_is_a_noop(user_db_url: str) -> None:
    engine = create_engine(sync_url(user_db_url))
    seen: list[tuple[int, int, str]] = []
    with engine.connect() as conn:
        first = deploy_content_schema_on(conn, progress=lambda *a: seen.append(a))
    with engine.connect() as conn:
        second = deploy_content_schema_on(conn)
    engine.dispose()
    assert first.action == "created" and first.version == CONTENT_SCHEMA_VERSION
    assert second.action == "unchanged" and second.instance_id == first.instance_id
    assert _tables(user_db_url) == len(content_table_names()) + 1
    assert seen[-1][0] == seen[-1][1]  # progress reached its total
    assert any("Creating table" in label for _, _, label in seen)


def test_deploy_dying_half_way_leaves_the_database_as_it_was(user_db_url: str) -> None:
    def die_half_way(step: int, total: int, label: str) -> None:
        if step > total // 2:
            raise Boom("the deploy process died")

    engine = create_engine(sync_url(user_db_url))
    with engine.connect() as conn, pytest.raises(Boom):
        deploy_content_schema_on(conn, progress=die_half_way)
    assert _tables(user_db_url) == 0
    assert count_rows(user_db_url, "select count(*) from pg_namespace where nspname = 'byodb'"
                      ) == 0
    with engine.connect() as conn:  # re-running completes it
        assert deploy_content_schema_on(conn).action == "created"
    engine.dispose()
    assert _tables(user_db_url) == len(content_table_names()) + 1


def test_deploy_past_its_time_limit_rolls_back(user_db_url: str) -> None:
    engine = create_engine(sync_url(user_db_url))
    with engine.connect() as conn, pytest.raises(DeployError) as info:
        deploy_content_schema_on(conn, timeout_s=0.0)
    engine.dispose()
    assert info.value.code == "timeout"
    assert _tables(user_db_url) == 0


def test_deploy_refuses_a_database_newer_than_this_server(user_db_url: str) -> None:
    engine = create_engine(sync_url(user_db_url))
    with engine.connect() as conn:
        deploy_content_schema_on(conn)
        conn.exec_driver_sql("update byodb.byodb_meta set schema_version = 99")
        conn.commit()
    with engine.connect() as conn, pytest.raises(DeployError) as info:
        deploy_content_schema_on(conn)
    engine.dispose()
    assert info.value.code == "unsupported_version"


async def test_failed_deploy_keeps_user_on_main_and_retry_completes(
        api: Api, main_url: str, user_db_url: str) -> None:
    kept = (await api.post("/api/conversations", "rae", json={"title": "kept on main"})).json()
    settings = api.app.state.runtime.settings
    normal_timeout = settings.deploy_timeout_s
    settings.deploy_timeout_s = 0.0  # every deploy now runs out of time
    try:
        assert (await api.put("/api/byod", "rae", json={"url": user_db_url})).status_code == 202
        state = await api.wait_for_state("rae", "error")
    finally:
        settings.deploy_timeout_s = normal_timeout
    assert state["deployment_status"] == "failed"
    assert state["connection_error_code"] == "timeout"
    assert "Deployment failed" in state["deployment_progress"]
    assert _tables(user_db_url) == 0  # nothing half-made on their database
    # Never switched over: the user keeps working on main, content intact.
    listed = await api.get("/api/conversations", "rae")
    assert listed.status_code == 200
    assert [c["id"] for c in listed.json()["items"]] == [kept["id"]]

    retried = await api.post("/api/byod/retry", "rae")
    assert retried.status_code == 202
    state = await api.wait_for_state("rae", "connected")
    assert state["deployment_status"] == "deployed"
    assert count_rows(user_db_url, "select count(*) from byodb.conversations where id = %s",
                      kept["id"]) == 1
    assert count_rows(main_url, "select count(*) from byodb.conversations where user_id = %s",
                      "rae") == 0


async def test_database_with_a_foreign_byodb_schema_is_refused_on_save(
        api: Api, main_url: str, user_db_url: str) -> None:
    import psycopg

    with psycopg.connect(user_db_url, autocommit=True) as conn:
        conn.execute("create schema byodb; create table byodb.other (id int)")
    refused = await api.put("/api/byod", "sam", json={"url": user_db_url})
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "schema_conflict"
    assert count_rows(main_url, "select count(*) from user_database_config") == 0
    assert count_rows(user_db_url, "select count(*) from byodb.other") == 0
