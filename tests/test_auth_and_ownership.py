"""Auth is a signed JWT; every content query is scoped to the signed-in user."""

from __future__ import annotations

import time
import uuid

import jwt
import pytest

from byodb.web.auth import DEV_AUDIENCE, DEV_ISSUER, _dev_secret
from tests.conftest import Api, count_rows


async def test_expired_token_is_refused(api: Api) -> None:
    claims = {"sub": "kim", "iss": DEV_ISSUER, "aud": DEV_AUDIENCE,
              "iat": int(time.time()) - 100, "exp": int(time.time()) - 10}
    token = jwt.encode(claims, _dev_secret(api.settings), algorithm="HS256")
    response = await api.client.get("/api/conversations",
                                    headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert "expired" in response.json()["error"]["message"]


async def test_forged_token_is_refused(api: Api) -> None:
    claims = {"sub": "kim", "iss": DEV_ISSUER, "aud": DEV_AUDIENCE,
              "exp": int(time.time()) + 100, "byodb_admin": True}
    forged = jwt.encode(claims, "not-the-server-key-at-all-0123456789", algorithm="HS256")
    response = await api.client.get("/api/byod", headers={"Authorization": f"Bearer {forged}"})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthenticated"
    unsigned = jwt.encode(claims, None, algorithm="none")  # type: ignore[arg-type]
    response = await api.client.get("/api/byod",
                                    headers={"Authorization": f"Bearer {unsigned}"})
    assert response.status_code == 401


async def test_no_token_is_refused(api: Api) -> None:
    response = await api.client.get("/api/conversations")
    assert response.status_code == 401


async def test_another_users_conversation_is_not_found_and_untouched(api: Api,
                                                                     main_url: str) -> None:
    mine = (await api.post("/api/conversations", "liz", json={"title": "Liz's"})).json()
    await api.post(f"/api/conversations/{mine['id']}/messages", "liz", json={"content": "x"})
    for method, path, body in [
        ("GET", f"/api/conversations/{mine['id']}", None),
        ("GET", f"/api/conversations/{mine['id']}/messages", None),
        ("POST", f"/api/conversations/{mine['id']}/messages", {"content": "sneaky"}),
        ("PATCH", f"/api/conversations/{mine['id']}", {"title": "pwned"}),
        ("DELETE", f"/api/conversations/{mine['id']}", None),
    ]:
        response = await api.request(method, path, "mal", json=body)
        assert response.status_code == 404, (method, path)
        assert response.json()["error"]["code"] == "not_found"
    assert (await api.get(f"/api/conversations/{mine['id']}", "liz")).json()["title"] == "Liz's"
    assert count_rows(main_url, "select count(*) from byodb.messages where conversation_id = %s",
                      mine["id"]) == 2
    assert (await api.get("/api/conversations", "mal")).json()["items"] == []


async def test_message_to_missing_conversation_is_not_found(api: Api, main_url: str) -> None:
    response = await api.post(f"/api/conversations/{uuid.uuid4()}/messages", "ned",
                              json={"content": "hello?"})
    assert response.status_code == 404
    assert count_rows(main_url, "select count(*) from byodb.messages") == 0


async def test_bad_conversation_input_is_a_clear_error(api: Api, main_url: str) -> None:
    conv = (await api.post("/api/conversations", "ola", json={})).json()
    empty = await api.post(f"/api/conversations/{conv['id']}/messages", "ola",
                           json={"content": ""})
    assert empty.status_code == 422 and empty.json()["error"]["code"] == "invalid_input"
    huge = await api.post("/api/conversations", "ola", json={"title": "x" * 501})
    assert huge.status_code == 422
    not_uuid = await api.get("/api/conversations/not-a-uuid", "ola")
    assert not_uuid.status_code == 422
    assert count_rows(main_url, "select count(*) from byodb.messages") == 0
    assert count_rows(main_url, "select count(*) from byodb.conversations") == 1


async def test_conversation_lifecycle_pinned_first_archive_delete(api: Api,
                                                                  main_url: str) -> None:
    a = (await api.post("/api/conversations", "pam", json={"title": "A"})).json()
    b = (await api.post("/api/conversations", "pam", json={"title": "B"})).json()
    c = (await api.post("/api/conversations", "pam", json={"title": "C"})).json()
    await api.post(f"/api/conversations/{a['id']}/messages", "pam", json={"content": "newest"})
    await api.request("PATCH", f"/api/conversations/{c['id']}", "pam", json={"is_pinned": True})
    await api.request("PATCH", f"/api/conversations/{b['id']}", "pam",
                      json={"is_archived": True, "title": "B renamed"})
    listed = [x["id"] for x in (await api.get("/api/conversations", "pam")).json()["items"]]
    assert listed == [c["id"], a["id"]]
    archived = (await api.get("/api/conversations?archived=true", "pam")).json()["items"]
    assert [x["title"] for x in archived] == ["B renamed"]
    assert (await api.request("DELETE", f"/api/conversations/{a['id']}", "pam")
            ).status_code == 204
    assert count_rows(main_url, "select count(*) from byodb.messages where conversation_id = %s",
                      a["id"]) == 0


async def test_access_log_never_holds_query_strings(api: Api,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    import logging

    with caplog.at_level(logging.INFO, logger="byodb.access"):
        await api.get("/api/search", "quin", params={"q": "my secret diagnosis"})
    lines = [r.getMessage() for r in caplog.records if r.name == "byodb.access"]
    assert any(line.startswith("GET /api/search 200") for line in lines), lines
    assert not any("secret" in line for line in lines)
