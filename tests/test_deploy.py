"""Deploy is one transaction: complete or nothing; re-running is a no-op."""

from __future__ import annotations

import dataclasses

import psycopg
import pytest

from byodb.content import CONTENT_SCHEMA_VERSION, content_table_names
from byodb.content.deploy import (
    DeployError,
    SchemaConflict,
    deploy_content_schema,
    deployed_schema,
)
from tests.conftest import Api, count_rows


class Boom(Exception):
    pass


def _tables(url: str) -> int:
    return count_rows(url, "select count(*) from pg_tables where schemaname = 'byodb'")


async def test_deploy_creates_everything_and_rerun_is_a_noop(user_db_url: str) -> None:
    seen: list[tuple[int, int, str]] = []

    async def progress(step: int, total: int, label: str) -> None:
        seen.append((step, total, label))

    async with await psycopg.AsyncConnection.connect(user_db_url, autocommit=True) as conn:
        first = await deploy_content_schema(conn, progress=progress)
        second = await deploy_content_schema(conn)
    assert first.action == "created" and first.version == CONTENT_SCHEMA_VERSION
    assert second.action == "unchanged" and second.instance_id == first.instance_id
    assert _tables(user_db_url) == len(content_table_names()) + 1
    assert seen[-1][0] == seen[-1][1]  # progress reached its total
    assert any("Creating table" in label for _, _, label in seen)


async def test_deploy_dying_half_way_leaves_the_database_as_it_was(user_db_url: str) -> None:
    async def die_half_way(step: int, total: int, label: str) -> None:
        if step > total // 2:
            raise Boom("the deploy process died")

    async with await psycopg.AsyncConnection.connect(user_db_url, autocommit=True) as conn:
        with pytest.raises(Boom):
            await deploy_content_schema(conn, progress=die_half_way)
        assert _tables(user_db_url) == 0
        assert count_rows(user_db_url,
                          "select count(*) from pg_namespace where nspname = 'byodb'") == 0
        assert (await deploy_content_schema(conn)).action == "created"  # re-running completes
    assert _tables(user_db_url) == len(content_table_names()) + 1


async def test_deploy_refuses_a_database_newer_than_this_server(user_db_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(user_db_url, autocommit=True) as conn:
        await deploy_content_schema(conn)
        await conn.execute("update byodb.byodb_meta set schema_version = 99")
        with pytest.raises(DeployError) as info:
            await deploy_content_schema(conn)
    assert info.value.code == "unsupported_version"


async def test_a_meta_row_byodb_never_writes_is_a_schema_conflict(user_db_url: str) -> None:
    """byodb_meta is read from an untrusted database: a value byodb never writes is refused
    with a clear code, not used."""
    async with await psycopg.AsyncConnection.connect(user_db_url, autocommit=True) as conn:
        await deploy_content_schema(conn)
        # A hostile owner can drop our constraints and write anything.
        await conn.execute("alter table byodb.byodb_meta drop constraint "
                           "ck_byodb_meta_schema_version_positive")
        await conn.execute("update byodb.byodb_meta set schema_version = -7")
        with pytest.raises(SchemaConflict):
            await deployed_schema(conn)
        with pytest.raises(SchemaConflict):
            await deploy_content_schema(conn)


async def test_failed_deploy_keeps_user_on_main_and_retry_completes(
        api: Api, main_url: str, user_db_url: str) -> None:
    kept = (await api.post("/api/conversations", "rae", json={"title": "kept on main"})).json()
    lifecycle = api.app.state.runtime.lifecycle
    normal = lifecycle.limits
    lifecycle.limits = dataclasses.replace(normal, deploy_s=0.0)  # every deploy runs out
    try:
        assert (await api.put("/api/byod", "rae", json={"url": user_db_url})).status_code == 202
        state = await api.wait_for_state("rae", "error")
    finally:
        lifecycle.limits = normal
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
    with psycopg.connect(user_db_url, autocommit=True) as conn:
        conn.execute("create schema byodb; create table byodb.other (id int)")
    refused = await api.put("/api/byod", "sam", json={"url": user_db_url})
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "schema_conflict"
    assert count_rows(main_url, "select count(*) from user_database_config") == 0
    assert count_rows(user_db_url, "select count(*) from byodb.other") == 0
