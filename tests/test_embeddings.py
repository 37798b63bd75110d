"""Embeddings: the offline model puts related texts near each other and never changes its
vectors between processes; an OpenAI-compatible provider is checked as strictly as ours;
a provider that answers with the wrong width fails with a clear error and stores nothing."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from byodb.assistant.embeddings import (
    EmbeddingError,
    HashingEmbeddingModel,
    OpenAICompatibleEmbeddingModel,
    embed_texts,
    embedding_model_from_settings,
    hashing_embedding,
)
from byodb.assistant.wordllama_model import WordLlamaEmbeddingModel
from byodb.settings import Settings
from tests.conftest import Api, count_rows


def _cosine(a: Sequence[float], b: Sequence[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


async def test_related_texts_land_nearer_than_unrelated_ones() -> None:
    dog, walk, tax = await HashingEmbeddingModel().embed([
        "my dog likes walks in the park", "the dog went for a walk in the park",
        "quarterly tax filing deadline"])
    assert _cosine(dog, walk) > 0.4
    assert _cosine(dog, walk) > _cosine(dog, tax) + 0.3


async def test_offline_embeddings_are_unit_vectors_of_1536_dimensions() -> None:
    vectors = await embed_texts(HashingEmbeddingModel(), ["hello world", "a b", "日本語の文章"])
    for vector in vectors:
        assert len(vector) == 1536
        assert math.isclose(math.sqrt(_cosine(vector, vector)), 1.0, rel_tol=1e-9)
    assert not any(hashing_embedding("?! …"))  # no words, no direction


def test_offline_embeddings_are_the_same_in_every_process() -> None:
    """Stored vectors must match query vectors computed by a later process."""
    code = ("import json; from byodb.assistant.embeddings import hashing_embedding; "
            "print(json.dumps(hashing_embedding('Stable vectors across restarts')))")
    outputs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              check=True, env={"PYTHONHASHSEED": seed}).stdout
               for seed in ("1", "2")]
    assert json.loads(outputs[0]) == json.loads(outputs[1]) == \
        hashing_embedding("Stable vectors across restarts")


def _provider(dimensions: int, seen: list[Any] | None = None) -> FastAPI:
    """An OpenAI-compatible embeddings server that answers in reverse index order."""
    app = FastAPI()

    @app.post("/v1/embeddings")
    async def embeddings(request: Request) -> dict[str, Any]:
        body = await request.json()
        if seen is not None:
            seen.append((request.headers.get("authorization"), body))
        data = [{"index": i, "embedding": [float(i + 1)] + [0.0] * (dimensions - 1)}
                for i, _ in enumerate(body["input"])]
        return {"data": list(reversed(data)), "model": body["model"]}

    return app


def _failing_provider(status: int) -> FastAPI:
    app = FastAPI()

    @app.post("/v1/embeddings")
    async def embeddings() -> JSONResponse:
        return JSONResponse({"error": {"message": "overloaded"}}, status_code=status)

    return app


def _remote(app: FastAPI, **kwargs: Any) -> OpenAICompatibleEmbeddingModel:
    return OpenAICompatibleEmbeddingModel("http://provider.test/v1", "sk-test",
                                          "text-embedding-3-small",
                                          transport=httpx.ASGITransport(app=app), **kwargs)


async def test_openai_compatible_provider_batches_and_keeps_the_order() -> None:
    seen: list[Any] = []
    model = _remote(_provider(1536, seen), batch_size=2)
    vectors = await embed_texts(model, ["one", "two", "three"])
    assert [v[0] for v in vectors] == [1.0, 2.0, 1.0]  # two batches, each in index order
    assert [body["input"] for _, body in seen] == [["one", "two"], ["three"]]
    assert seen[0][0] == "Bearer sk-test"
    assert seen[0][1]["model"] == "text-embedding-3-small"


async def test_a_provider_answering_the_wrong_width_is_a_clear_error() -> None:
    with pytest.raises(EmbeddingError) as failure:
        await embed_texts(_remote(_provider(768)), ["hello"])
    assert failure.value.code == "invalid_embedding"
    assert "768" in failure.value.message and "1536" in failure.value.message


async def test_a_failing_provider_is_a_clear_error_without_its_url() -> None:
    with pytest.raises(EmbeddingError) as failure:
        await embed_texts(_remote(_failing_provider(500)), ["hello"])
    assert failure.value.code == "embedding_failed" and "500" in failure.value.message
    assert "provider.test" not in failure.value.message


def test_the_provider_follows_the_settings() -> None:
    offline = Settings(BYODB_LLM_BASE_URL=None, BYODB_EMBEDDING_PROVIDER="auto")
    assert isinstance(embedding_model_from_settings(offline), WordLlamaEmbeddingModel)
    remote = embedding_model_from_settings(Settings(BYODB_LLM_BASE_URL="http://llm.test/v1"))
    assert isinstance(remote, OpenAICompatibleEmbeddingModel)
    assert remote.name == "text-embedding-3-small"
    forced = Settings(BYODB_LLM_BASE_URL="http://llm.test/v1",
                      BYODB_EMBEDDING_PROVIDER="offline")
    assert isinstance(embedding_model_from_settings(forced), WordLlamaEmbeddingModel)
    lexical = Settings(BYODB_LLM_BASE_URL="http://llm.test/v1",
                       BYODB_EMBEDDING_PROVIDER="hashing")
    assert isinstance(embedding_model_from_settings(lexical), HashingEmbeddingModel)


class _WrongWidth:
    name = "broken"
    dimensions = 1536

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return [[0.5] * 3 for _ in texts]


async def test_a_wrong_width_embedding_fails_requests_clearly_and_stores_nothing(
        api: Api, main_url: str) -> None:
    api.app.state.runtime.embedder = _WrongWidth()
    created = await api.post("/api/memories", "kim", json={"content": "Likes tea"})
    assert created.status_code == 502
    assert created.json()["error"]["code"] == "invalid_embedding"
    assert "3 dimensions" in created.json()["error"]["message"]
    found = await api.get("/api/search", "kim", params={"q": "tea", "mode": "semantic"})
    assert found.status_code == 502 and found.json()["error"]["code"] == "invalid_embedding"
    assert count_rows(main_url, "select count(*) from byodb.memories") == 0

    # A text file is still kept, marked as not indexed, with the reason.
    uploaded = await api.post("/api/files", "kim", files={"file": ("n.txt", b"some notes",
                                                                   "text/plain")})
    assert uploaded.status_code == 201
    assert uploaded.json()["status"] == "error"
    assert "could not be indexed" in uploaded.json()["error"]
    assert count_rows(main_url, "select count(*) from byodb.file_chunks") == 0
