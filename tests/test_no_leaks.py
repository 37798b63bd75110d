"""Nothing of a user's content or credentials lands in logs or error texts."""

from __future__ import annotations

import logging

import psycopg
import pytest

from tests.conftest import Api


async def test_unexpected_database_error_is_answered_generically_and_logged_without_content(
        api: Api, user_db_url: str, caplog: pytest.LogCaptureFixture) -> None:
    await api.put("/api/byod", "yan", json={"url": user_db_url})
    await api.wait_for_state("yan", "connected", "error")
    first = await api.post("/api/conversations", "yan", json={"title": "my secret diagnosis"})
    assert first.status_code == 201, first.text
    # The user's own database rejects this title a second time, by a kind of constraint no
    # content area expects (a check would be 422 invalid_input, as in every area);
    # PostgreSQL's error text would print the conflicting key, title included.
    with psycopg.connect(user_db_url, autocommit=True) as conn:
        conn.execute("alter table byodb.conversations add constraint no_secrets "
                     "exclude using btree (title with =)")
    with caplog.at_level(logging.DEBUG):
        response = await api.post("/api/conversations", "yan",
                                  json={"title": "my secret diagnosis"})
    assert response.status_code == 500
    assert response.json()["error"] == {"code": "internal_error",
                                        "message": "something went wrong on our side"}
    password = user_db_url.split(":")[2].split("@")[0]
    for record in caplog.records:
        text = record.getMessage() + (record.exc_text or "") + str(record.exc_info or "")
        assert "secret diagnosis" not in text, record.name
        assert password not in text, record.name
    assert any("unexpected error: IntegrityError" in r.getMessage() for r in caplog.records)
    # The user is not blocked by a refused statement: their database is reachable.
    assert (await api.get("/api/byod", "yan")).json()["connection_status"] == "connected"


async def test_values_postgresql_refuses_are_bad_input_not_server_errors(
        api: Api, main_url: str) -> None:
    from tests.conftest import count_rows

    for path, body in (("/api/memories", {"content": "nul \x00 inside"}),
                       ("/api/notes", {"title": "nul \x00", "content": "x"}),
                       ("/api/conversations", {"title": "nul \x00 title"})):
        response = await api.post(path, "zed", json=body)
        assert response.status_code == 422, (path, response.text)
        assert response.json()["error"]["code"] == "invalid_input"
        assert "\x00" not in response.text
    for table in ("memories", "notes", "conversations"):
        assert count_rows(main_url, f"select count(*) from byodb.{table}") == 0
