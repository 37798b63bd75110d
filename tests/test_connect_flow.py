"""A user connects their own PostgreSQL: test, save, deploy, move, then content lives there."""

from __future__ import annotations

import psycopg
from psycopg import sql

from byodb.content import CONTENT_SCHEMA_VERSION
from tests.conftest import Api, count_rows
from tests.instances_support import deploy_schema
from tests.providers import ProviderDatabase


async def test_user_without_byod_works_on_main(api: Api, main_url: str) -> None:
    created = await api.post("/api/conversations", "ann", json={"title": "On main"})
    assert created.status_code == 201
    conversation_id = created.json()["id"]
    reply = await api.post(f"/api/conversations/{conversation_id}/messages", "ann",
                           json={"content": "hello"})
    assert reply.status_code == 201
    body = reply.json()
    assert body["user_message"]["content"] == "hello"
    assert body["assistant_message"]["role"] == "assistant"
    assert "offline model" in body["assistant_message"]["content"]
    assert count_rows(main_url, "select count(*) from byodb.messages where user_id = %s",
                      "ann") == 2


async def test_connecting_moves_content_and_new_content_lands_only_on_user_database(
        api: Api, main_url: str, user_db_url: str) -> None:
    before = (await api.post("/api/conversations", "bob", json={"title": "Before"})).json()
    await api.post(f"/api/conversations/{before['id']}/messages", "bob",
                   json={"content": "written while on main"})
    # Someone else on main is not affected by bob's move.
    other = (await api.post("/api/conversations", "carol", json={"title": "Carol's"})).json()

    tested = (await api.post("/api/byod/test", "bob", json={"url": user_db_url})).json()
    assert tested["ok"] is True and tested["code"] == "ok"
    saved = await api.put("/api/byod", "bob", json={"url": user_db_url})
    assert saved.status_code == 202
    assert "****" in saved.json()["database"]
    state = await api.wait_for_state("bob", "connected", "error")
    assert state["connection_status"] == "connected", state
    assert state["deployment_status"] == "deployed"
    assert state["schema_version"] == state["latest_schema_version"] == CONTENT_SCHEMA_VERSION

    # Existing content moved: on bob's database, gone from main.
    assert count_rows(user_db_url, "select count(*) from byodb.messages where user_id = %s",
                      "bob") == 2
    assert count_rows(main_url, "select count(*) from byodb.conversations where user_id = %s",
                      "bob") == 0
    listed = (await api.get("/api/conversations", "bob")).json()["items"]
    assert [c["id"] for c in listed] == [before["id"]]

    # New content: only on bob's database.
    new = (await api.post("/api/conversations", "bob", json={"title": "After"})).json()
    await api.post(f"/api/conversations/{new['id']}/messages", "bob", json={"content": "hi"})
    assert count_rows(user_db_url, "select count(*) from byodb.messages where user_id = %s",
                      "bob") == 4
    assert count_rows(main_url, "select count(*) from byodb.messages where user_id = %s",
                      "bob") == 0
    assert count_rows(main_url, "select count(*) from byodb.conversations where id = %s",
                      other["id"]) == 1
    carol = (await api.get("/api/conversations", "carol")).json()["items"]
    assert [c["id"] for c in carol] == [other["id"]]


async def test_saved_credentials_are_encrypted_and_never_returned(
        api: Api, main_url: str, user_db_url: str, user_server: object) -> None:
    await api.put("/api/byod", "dan", json={"url": user_db_url})
    await api.wait_for_state("dan", "connected", "error")
    password = user_db_url.split(":")[2].split("@")[0]
    with psycopg.connect(main_url) as conn:
        stored = conn.execute("select encrypted_url, key_id from user_database_config "
                              "where user_id = 'dan'").fetchone()
    assert stored is not None
    assert password not in stored[0] and "postgresql://" not in stored[0]
    assert stored[0].startswith(f"v1.{stored[1]}.")
    state_text = (await api.get("/api/byod", "dan")).text
    assert password not in state_text


async def test_bad_url_on_save_is_refused_and_changes_nothing(api: Api, main_url: str,
                                                              user_db_url: str) -> None:
    wrong = user_db_url.replace("@127.0.0.1", "x@127.0.0.1").replace(
        "postgres:", "postgres:wrong", 1)
    response = await api.put("/api/byod", "erin", json={"url": wrong})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "auth_failed"
    assert (await api.get("/api/byod", "erin")).json()["connection_status"] == "none"
    assert count_rows(main_url, "select count(*) from user_database_config") == 0


async def test_connecting_a_database_already_deployed_by_hand_is_recognised(
        api: Api, user_db_url: str) -> None:
    await deploy_schema(user_db_url)
    tested = (await api.post("/api/byod/test", "fay", json={"url": user_db_url})).json()
    assert tested["ok"] is True and tested["deployed_version"] == CONTENT_SCHEMA_VERSION
    await api.put("/api/byod", "fay", json={"url": user_db_url})
    state = await api.wait_for_state("fay", "connected", "error")
    assert state["connection_status"] == "connected"


async def test_updating_credentials_keeps_content_on_the_same_database(
        api: Api, main_url: str, user_database: ProviderDatabase) -> None:
    first = user_database.url
    await api.put("/api/byod", "zoe", json={"url": first})
    assert (await api.wait_for_state("zoe", "connected", "error"))["connection_status"] == \
        "connected"
    kept = (await api.post("/api/conversations", "zoe", json={"title": "kept"})).json()

    # The user resets the owner's password at their provider, then gives byodb the new URL.
    with psycopg.connect(user_database.admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("alter role {} password 'second-pw'").format(
            sql.Identifier(user_database.owner)))
    second = first.replace(f":{user_database.password}@", ":second-pw@", 1)
    assert second != first
    saved = await api.put("/api/byod", "zoe", json={"url": second})
    assert saved.status_code == 202
    assert saved.json()["connection_status"] == "moving"  # held, not shown main's content
    state = await api.wait_for_state("zoe", "connected", "error")
    assert state["connection_status"] == "connected", state
    listed = (await api.get("/api/conversations", "zoe")).json()["items"]
    assert [c["id"] for c in listed] == [kept["id"]]
    assert count_rows(main_url, "select count(*) from byodb.conversations where user_id = %s",
                      "zoe") == 0
