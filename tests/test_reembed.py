"""Changing the embedding model: stored rows are re-embedded in the background, batch by
batch, and a search during the change compares only rows of the current model — on main
and on a user's own database."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path

import pytest

from byodb.assistant.embeddings import HashingEmbeddingModel
from byodb.assistant.wordllama_model import MODEL_NAME
from byodb.jobs.reembed import queue_user
from byodb.runtime import Runtime
from byodb.services.reembed import Reembedder, ReembedLimits, due_users
from byodb.settings import Settings
from tests.conftest import Api, count_rows, running_app
from tests.placement import PLACEMENTS, place_user
from tests.test_offline_embeddings import PARAPHRASES

OLD_MODEL = HashingEmbeddingModel.name


def _settings(tmp_path: Path, **extra: object) -> Settings:
    return Settings(BYODB_DATA_DIR=tmp_path / "data", BYODB_ENV="development",
                    BYODB_ALLOW_PRIVATE_HOSTS=True, BYODB_TEST_RATE_LIMIT=1000, **extra)


def _models(url: str, user: str) -> dict[str, str | None]:
    """Memory content → the model of its vector."""
    import psycopg

    with psycopg.connect(url) as conn:
        rows = conn.execute("select content, embedding_model from byodb.memories "
                            "where user_id = %s", (user,)).fetchall()
    return {content: model for content, model in rows}


async def _search(api: Api, user: str, q: str) -> list[dict[str, object]]:
    found = await api.get("/api/search", user, params={"q": q, "mode": "semantic",
                                                        "limit": 10})
    assert found.status_code == 200, found.text
    items: list[dict[str, object]] = found.json()["items"]
    return items


@pytest.mark.parametrize("where", PLACEMENTS)
async def test_a_model_change_re_embeds_stored_rows_and_search_never_mixes_models(
        tmp_path: Path, main_url: str, user_db_url: str, where: str) -> None:
    user = f"rex-{uuid.uuid4().hex[:6]}"
    # Before: the lexical model made every stored vector.
    async with running_app(_settings(tmp_path, BYODB_EMBEDDING_PROVIDER="hashing"), main_url,
                           timeout_s=60) as before:
        placed = await place_user(before, user, where, main_url, user_db_url)
        ids = {}
        for memory, _ in PARAPHRASES:
            created = await before.post("/api/memories", user, json={"content": memory})
            assert created.status_code == 201, created.text
            ids[created.json()["id"]] = memory
    assert set(_models(placed.url, user).values()) == {OLD_MODEL}

    # After: the default (semantic) model; its worker is held back so the test sees the
    # change half-way.
    async with running_app(_settings(tmp_path), main_url, run_worker=False,
                           timeout_s=60) as after:
        runtime: Runtime = after.app.state.runtime
        assert runtime.embedder.name == MODEL_NAME
        assert user in await due_users(runtime.main, MODEL_NAME, 1000)
        # Nothing of the new model yet: no old vector is compared with the new query's.
        for _, question in PARAPHRASES:
            assert await _search(after, user, question) == []

        # One batch of two rows: only those two can be found, by the new model.
        halfway = await Reembedder(runtime.router, runtime.embedder,
                                   ReembedLimits(batch_rows=2, budget_s=0)).run(user)
        assert (halfway.status, halfway.done) == ("running", 2)
        assert halfway.remaining == len(PARAPHRASES) - 2
        models = _models(placed.url, user)
        renewed = {content for content, model in models.items() if model == MODEL_NAME}
        assert len(renewed) == 2 and set(models.values()) == {MODEL_NAME, OLD_MODEL}
        seen: set[str] = set()
        for _, question in PARAPHRASES:
            found = {ids[str(item["id"])] for item in await _search(after, user, question)}
            assert found <= renewed
            seen |= found
        assert seen == renewed

        # The rest, resumed where it stopped: every paraphrase finds its memory.
        finished = await runtime.reembedder.run(user)
        assert (finished.status, finished.remaining) == ("done", 0)
        assert set(_models(placed.url, user).values()) == {MODEL_NAME}
        for memory, question in PARAPHRASES:
            found = await _search(after, user, question)
            assert found and ids[str(found[0]["id"])] == memory, (question, found)
        # Done for this model at this place: not due again; another model would be.
        assert user not in await due_users(runtime.main, MODEL_NAME, 1000)
        assert user in await due_users(runtime.main, OLD_MODEL, 1000)
        overview = await after.client.get("/api/admin/byod",
                                          headers=after.headers("root-admin", admin=True))
        assert overview.status_code == 200, overview.text
        embeddings = overview.json()["embeddings"]
        assert embeddings["model"] == MODEL_NAME
        assert any(item["status"] == "done" and item["model"] == MODEL_NAME
                   for item in embeddings["by_status"])
    # Nothing of the user's content went anywhere else.
    assert count_rows(placed.elsewhere, "select count(*) from information_schema.tables "
                      "where table_schema = 'byodb' and table_name = 'memories'") == 0 or \
        count_rows(placed.elsewhere, "select count(*) from byodb.memories where user_id = %s",
                   user) == 0


async def test_the_durable_job_re_embeds_a_users_rows_and_records_its_progress(
        api: Api, main_url: str) -> None:
    user = f"sam-{uuid.uuid4().hex[:6]}"
    created = await api.post("/api/memories", user, json={"content": "I grow chillies"})
    assert created.status_code == 201, created.text
    # As an older model left it (and no run recorded since).
    count_rows(main_url, "update byodb.memories set embedding_model = %s where user_id = %s "
               "returning 1", OLD_MODEL, user)
    count_rows(main_url, "delete from jobs where kind = 'reembed' and user_id = %s "
               "returning 1", user)
    assert await queue_user(api.app.state.job_app, user)
    deadline = time.monotonic() + 60
    status = None
    while time.monotonic() < deadline:
        import psycopg

        with psycopg.connect(main_url) as conn:
            row = conn.execute("select status, detail from jobs where kind = 'reembed' and "
                               "user_id = %s", (user,)).fetchone()
        if row and row[0] == "done":
            status = row[0]
            detail = json.loads(row[1])
            break
        await asyncio.sleep(0.2)
    assert status == "done"
    assert detail["model"] == MODEL_NAME and detail["remaining"] == 0
    assert detail["done"] == 1 and detail["place"] == "main"
    assert count_rows(main_url, "select count(*) from byodb.memories where user_id = %s and "
                      "embedding_model = %s", user, MODEL_NAME) == 1
