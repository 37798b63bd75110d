"""Conversations, memories and files follow the rules every declared content area follows
(``services/areas.py``): a value the column cannot hold is refused as bad input, never a
server error."""

from __future__ import annotations

from tests.conftest import Api


async def test_null_for_a_flag_is_refused_and_changes_nothing(api: Api) -> None:
    conversation = (await api.post("/api/conversations", "ida",
                                   json={"title": "  Trip  "})).json()
    assert conversation["title"] == "Trip"
    memory = (await api.post("/api/memories", "ida", json={"content": "Likes trains"})).json()
    for path, flag in ((f"/api/conversations/{conversation['id']}", "is_archived"),
                       (f"/api/conversations/{conversation['id']}", "is_pinned"),
                       (f"/api/memories/{memory['id']}", "is_active")):
        refused = await api.request("PATCH", path, "ida", json={flag: None})
        assert refused.status_code == 422, (path, flag, refused.text)
        assert refused.json()["error"]["code"] == "invalid_input"
        assert (await api.get(path, "ida")).json()[flag] is (flag == "is_active")
    blank = await api.request("PATCH", f"/api/conversations/{conversation['id']}", "ida",
                              json={"title": "   "})
    assert blank.status_code == 200 and blank.json()["title"] is None
