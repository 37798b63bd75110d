"""Shared arrangement of the content-area tests: a signed-in user whose content lives on
main, or on their own connected database (the ``place`` fixture runs each test both ways),
and short helpers to call the API and count rows where they must (not) be."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.conftest import Api, count_rows


@dataclass
class Place:
    """A user and the database that must hold their content (``url``); ``other_url`` is a
    database that must hold none of it (main, for a user on their own database)."""

    api: Api
    user: str
    url: str
    other_url: str | None

    async def call(self, method: str, path: str, *, expect: int | None = None,
                   user: str | None = None, **kwargs: Any) -> httpx.Response:
        response = await self.api.request(method, path, user or self.user, **kwargs)
        if expect is not None:
            assert response.status_code == expect, (method, path, response.text[:500])
        return response

    async def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        created: dict[str, Any] = (await self.call("POST", path, json=body, expect=201)).json()
        return created

    async def items(self, path: str, **params: Any) -> list[dict[str, Any]]:
        body = (await self.call("GET", path, params=params, expect=200)).json()
        items: list[dict[str, Any]] = body["items"]
        return items

    async def patch(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        changed: dict[str, Any] = (await self.call("PATCH", path, json=body,
                                                   expect=200)).json()
        return changed

    async def delete(self, path: str) -> None:
        await self.call("DELETE", path, expect=204)

    async def error(self, method: str, path: str, status: int, code: str,
                    **kwargs: Any) -> str:
        """Call, expect the JSON error ``code`` with ``status``; returns its message."""
        response = await self.call(method, path, **kwargs)
        assert response.status_code == status, (method, path, response.text[:500])
        error = response.json()["error"]
        assert error["code"] == code, error
        message: str = error["message"]
        return message

    def count(self, table: str, where: str = "true", *params: Any) -> int:
        """Rows of this user in ``byodb.<table>`` on their database; asserts that the other
        database has none of them."""
        sql = f"select count(*) from byodb.{table} where user_id = %s and ({where})"
        if self.other_url is not None:
            assert count_rows(self.other_url, sql, self.user, *params) == 0, table
        return count_rows(self.url, sql, self.user, *params)

    async def conversation_with_reply(self, content: str = "hello there"
                                      ) -> tuple[str, dict[str, Any]]:
        conversation = await self.create("/api/conversations", {"title": "Talk"})
        reply = await self.create(f"/api/conversations/{conversation['id']}/messages",
                                  {"content": content})
        return conversation["id"], reply


@pytest.fixture(params=["main", "own"])
async def place(request: pytest.FixtureRequest, api: Api, main_url: str) -> Place:
    """The same test for a user without BYOD and for one connected to their database."""
    user = f"user-{request.param}"
    if request.param == "main":
        return Place(api, user, main_url, None)
    own_url: str = request.getfixturevalue("user_db_url")
    assert (await api.put("/api/byod", user, json={"url": own_url})).status_code == 202
    state = await api.wait_for_state(user, "connected", "error")
    assert state["connection_status"] == "connected", state
    return Place(api, user, own_url, main_url)
