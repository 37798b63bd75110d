"""The path of a message: the reply is returned as soon as it is stored; the exchange's
embedding and memory extraction follow it, under their own deadline, and a closing app
drains them (docs/architecture.md, "The path of a message")."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from typing import Any

import pytest

from byodb.assistant.embeddings import EmbeddingModel
from byodb.safetext import escaped
from byodb.settings import Settings
from tests.conftest import Api, count_rows, running_app

EXCHANGE = "I live in Lisbon and I love sardines"


class HeldEmbedder:
    """The app's embedder, held at its door until the test opens it."""

    def __init__(self, inner: EmbeddingModel) -> None:
        self.inner = inner
        self.name = inner.name
        self.dimensions = inner.dimensions
        self.reached = asyncio.Event()
        self.opened = asyncio.Event()

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.reached.set()
        await self.opened.wait()
        return await self.inner.embed(texts)


def _hold_embedder(api: Api) -> HeldEmbedder:
    runtime = api.app.state.runtime
    held = HeldEmbedder(runtime.embedder)
    runtime.embedder = held
    return held


def _embedded_messages(url: str, user: str) -> int:
    return count_rows(url, "select count(*) from byodb.messages where user_id = %s and "
                           "embedding is not null", user)


def _extracted_memories(url: str, user: str) -> int:
    return count_rows(url, "select count(*) from byodb.memories where user_id = %s and "
                           "source = 'extracted' and embedding is not null", user)


def _sse_events(body: str) -> list[tuple[str, Any]]:
    events = []
    for block in body.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((lines["event"], json.loads(lines["data"])))
    return events


@pytest.mark.parametrize("streamed", [False, True], ids=["post", "stream"])
async def test_the_reply_does_not_wait_for_the_embedding_and_the_memories_follow(
        api: Api, main_url: str, streamed: bool) -> None:
    held = _hold_embedder(api)
    conversation = (await api.post("/api/conversations", "ria", json={})).json()
    path = f"/api/conversations/{conversation['id']}/messages"

    if streamed:
        response = await api.post(path + "/stream", "ria", json={"content": EXCHANGE})
        assert response.status_code == 200, response.text
        kinds = [kind for kind, _ in _sse_events(response.text)]
        assert kinds[0] == "user_message" and kinds[-1] == "assistant_message", kinds
    else:
        response = await api.post(path, "ria", json={"content": EXCHANGE})
        assert response.status_code == 201, response.text
        assert response.json()["assistant_message"]["status"] == "complete"

    # The reply is here and stored while the embedder is still held shut.
    await held.reached.wait()
    assert not held.opened.is_set()
    listed = (await api.get(path, "ria")).json()["items"]
    assert [m["role"] for m in listed] == ["user", "assistant"]
    assert _embedded_messages(main_url, "ria") == 0
    assert _extracted_memories(main_url, "ria") == 0

    held.opened.set()
    await api.app.state.runtime.after_work.settled()
    assert _embedded_messages(main_url, "ria") == 2
    assert _extracted_memories(main_url, "ria") >= 1


async def test_memories_of_an_exchange_deleted_before_they_arrive_are_kept_without_source(
        api: Api, main_url: str) -> None:
    held = _hold_embedder(api)
    conversation = (await api.post("/api/conversations", "una", json={})).json()
    sent = await api.post(f"/api/conversations/{conversation['id']}/messages", "una",
                          json={"content": EXCHANGE})
    assert sent.status_code == 201, sent.text
    await held.reached.wait()
    deleted = await api.request("DELETE", f"/api/conversations/{conversation['id']}", "una")
    assert deleted.status_code == 204

    held.opened.set()
    await api.app.state.runtime.after_work.settled()
    memories = (await api.get("/api/memories", "una")).json()["items"]
    assert memories and all(m["source"] == "extracted" for m in memories)
    assert {(m["source_conversation_id"], m["source_message_id"]) for m in memories} == \
        {(None, None)}


async def test_after_work_past_its_deadline_is_logged_and_a_closed_app_leaves_no_task(
        tmp_path: Any, main_url: str, caplog: pytest.LogCaptureFixture) -> None:
    # A user id with a backslash: the log shows it escaped, so it cannot pose as an escape.
    user = "sam\\x0a"
    settings = Settings(BYODB_DATA_DIR=tmp_path / "data", BYODB_ENV="development",
                        BYODB_ALLOW_PRIVATE_HOSTS=True, BYODB_AFTER_EXCHANGE_TIMEOUT=0.5)
    with caplog.at_level(logging.INFO, logger="byodb.services.after_work"):
        async with running_app(settings, main_url, run_worker=False) as api:
            held = _hold_embedder(api)  # and never opened
            conversation = (await api.post("/api/conversations", user, json={})).json()
            sent = await api.post(f"/api/conversations/{conversation['id']}/messages", user,
                                  json={"content": EXCHANGE})
            assert sent.status_code == 201, sent.text
            await held.reached.wait()
            after_work = api.app.state.runtime.after_work
            assert after_work.pending == 1
        # The app closed: its after-work ended (here at its deadline) and nothing is left.
        assert after_work.pending == 0
        assert not [task for task in asyncio.all_tasks()
                    if "AfterWork" in repr(task.get_coro())]
    ended = [r.getMessage() for r in caplog.records if r.name == "byodb.services.after_work"]
    assert len(ended) == 1, ended
    assert f"for user {escaped(user, 300)} " in ended[0]
    assert f"for user {user} " not in ended[0]
    assert "deadline" in ended[0] or "cancelled" in ended[0]
    assert _embedded_messages(main_url, user) == 0
    # New work after the close is refused (and said), never started.
    with caplog.at_level(logging.INFO, logger="byodb.services.after_work"):
        after_work.start("indexing an exchange", user, asyncio.sleep(0))
    assert after_work.pending == 0
    assert "dropped: the process is closing" in caplog.records[-1].getMessage()
