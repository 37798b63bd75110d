"""Users can leave at any time: keep the data where it is, migrate it back, or delete it."""

from __future__ import annotations

from tests.conftest import Api, count_rows


async def _connected_with_content(api: Api, user: str, url: str) -> str:
    await api.put("/api/byod", user, json={"url": url})
    assert (await api.wait_for_state(user, "connected", "error"))["connection_status"] == \
        "connected"
    conversation = (await api.post("/api/conversations", user, json={"title": "mine"})).json()
    await api.post(f"/api/conversations/{conversation['id']}/messages", user,
                   json={"content": "hello"})
    return str(conversation["id"])


async def test_keep_leaves_data_on_their_database_and_forgets_credentials(
        api: Api, main_url: str, user_db_url: str) -> None:
    await _connected_with_content(api, "tom", user_db_url)
    response = await api.post("/api/byod/disconnect", "tom", json={"mode": "keep"})
    assert response.status_code == 200
    assert response.json()["connection_status"] == "disconnected"
    assert count_rows(user_db_url, "select count(*) from byodb.messages where user_id = %s",
                      "tom") == 2
    assert count_rows(main_url, "select count(*) from user_database_config where user_id = "
                      "'tom' and encrypted_url is null") == 1
    assert (await api.get("/api/conversations", "tom")).json()["items"] == []


async def test_migrate_brings_everything_back_to_main(api: Api, main_url: str,
                                                      user_db_url: str) -> None:
    conversation_id = await _connected_with_content(api, "uma", user_db_url)
    response = await api.post("/api/byod/disconnect", "uma", json={"mode": "migrate"})
    assert response.status_code == 202
    assert response.json()["connection_status"] == "moving"
    state = await api.wait_for_state("uma", "disconnected", "error")
    assert state["connection_status"] == "disconnected", state
    assert count_rows(main_url, "select count(*) from byodb.messages where user_id = %s",
                      "uma") == 2
    assert count_rows(user_db_url, "select count(*) from byodb.messages where user_id = %s",
                      "uma") == 0
    listed = (await api.get("/api/conversations", "uma")).json()["items"]
    assert [c["id"] for c in listed] == [conversation_id]


async def test_delete_removes_their_data_from_their_database(api: Api, main_url: str,
                                                             user_db_url: str) -> None:
    await _connected_with_content(api, "vic", user_db_url)
    response = await api.post("/api/byod/disconnect", "vic", json={"mode": "delete"})
    assert response.status_code == 202
    state = await api.wait_for_state("vic", "disconnected", "error")
    assert state["connection_status"] == "disconnected"
    assert count_rows(user_db_url, "select count(*) from pg_namespace where nspname = 'byodb'"
                      ) == 0
    assert count_rows(main_url, "select count(*) from byodb.messages where user_id = %s",
                      "vic") == 0


async def test_bad_disconnect_requests_change_nothing(api: Api, user_db_url: str) -> None:
    nothing = await api.post("/api/byod/disconnect", "wes", json={"mode": "keep"})
    assert nothing.status_code == 409
    await _connected_with_content(api, "wes", user_db_url)
    bad_mode = await api.post("/api/byod/disconnect", "wes", json={"mode": "shred"})
    assert bad_mode.status_code == 422
    assert (await api.get("/api/byod", "wes")).json()["connection_status"] == "connected"
