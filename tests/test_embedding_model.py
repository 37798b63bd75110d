"""Schema version 2 records which embedding model made each stored vector (messages,
memories, file chunks), on main and on a user's own database alike, so vectors of an old
model can be found when the model changes."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from byodb.assistant.wordllama_model import MODEL_NAME
from tests.conftest import Api, count_rows
from tests.placement import PLACEMENTS, Placed, place_user

MODEL = MODEL_NAME


@pytest.fixture(params=PLACEMENTS)
async def eve(request: pytest.FixtureRequest, api: Api, main_url: str,
              user_db_url: str) -> Placed:
    return await place_user(api, f"eve-{uuid.uuid4().hex[:6]}", request.param, main_url,
                            user_db_url)


def _by_model(url: str, table: str, user: str) -> set[tuple[bool, str | None]]:
    """(has an embedding, its model) of every row of ``user`` in ``table``."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(f"select embedding is not null, embedding_model from byodb.{table} "
                            "where user_id = %s", (user,)).fetchall()
    return {(bool(has), model) for has, model in rows}


async def test_every_stored_vector_names_the_model_that_made_it(api: Api, eve: Placed) -> None:
    memory = await api.post("/api/memories", eve.user, json={"content": "Plays the cello"})
    assert memory.status_code == 201, memory.text
    conversation = (await api.post("/api/conversations", eve.user, json={})).json()
    sent = await api.post(f"/api/conversations/{conversation['id']}/messages", eve.user,
                          json={"content": "I live in Lisbon and I love sardines"})
    assert sent.status_code == 201, sent.text
    await api.app.state.runtime.after_work.settled()  # the exchange's embedding follows the reply
    uploaded = await api.post("/api/files", eve.user, files={
        "file": ("cello.md", b"# Cello\n\nRosin the bow before playing.", "text/markdown")})
    assert uploaded.status_code == 201, uploaded.text

    assert _by_model(eve.url, "messages", eve.user) == {(True, MODEL)}
    assert _by_model(eve.url, "memories", eve.user) == {(True, MODEL)}
    assert _by_model(eve.url, "file_chunks", eve.user) == {(True, MODEL)}
    # An edit re-embeds and records the model again (not left from before).
    changed = await api.request("PATCH", f"/api/memories/{memory.json()['id']}", eve.user,
                                json={"content": "Plays the viola"})
    assert changed.status_code == 200, changed.text
    assert count_rows(eve.url, "select count(*) from byodb.memories where id = %s and "
                      "embedding_model = %s", memory.json()["id"], MODEL) == 1
    # The model is internal: the API does not return it.
    assert "embedding_model" not in changed.json()
