"""Embedding models: text → ``vector(1536)`` for semantic search and memory retrieval.

The offline default is :class:`~byodb.assistant.wordllama_model.WordLlamaEmbeddingModel`, a
small semantic model shipped in the ``wordllama`` wheel: no network, no download. The
lexical :class:`HashingEmbeddingModel` stays available (``BYODB_EMBEDDING_PROVIDER=hashing``)
for exact, dependency-free vectors: it hashes word unigrams and bigrams plus character
n-grams (signed hashing, sublinear term frequency, L2 normalisation), so texts that share
words or word stems land near each other; it knows nothing of synonyms. An
OpenAI-compatible ``/embeddings`` endpoint is used when ``BYODB_LLM_BASE_URL`` is configured
(see :func:`embedding_model_from_settings`).

Vectors from different models live in different spaces. Changing the model means old
embeddings no longer compare with new queries (docs/search.md, "Changing the model").
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter
from collections.abc import Sequence
from functools import lru_cache
from itertools import pairwise
from typing import Protocol

import httpx

from byodb.assistant.cpu import run_embedding_work
from byodb.assistant.wordllama_model import WordLlamaEmbeddingModel
from byodb.content.tables._base import EMBEDDING_DIMENSIONS
from byodb.errors import ByodbError
from byodb.settings import Settings

MAX_EMBED_CHARS = 8_000
"""Longer texts are embedded by their beginning (about 2,000 tokens; providers cap input)."""


class EmbeddingError(ByodbError):
    """The embedding model failed or answered with something that is not a usable vector."""

    code = "embedding_failed"
    status = 502


class EmbeddingModel(Protocol):
    """Turns texts into vectors of ``dimensions`` floats, one per text, in order."""

    name: str
    dimensions: int

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        ...


def check_embedding(vector: Sequence[float], *, source: str = "the embedding model",
                    dimensions: int = EMBEDDING_DIMENSIONS) -> list[float]:
    """Return ``vector`` as a list if it fits a ``vector(1536)`` column, else raise.

    The database would reject a wrong width too, but with an error that names neither the
    model nor the fix; finite values matter because pgvector refuses NaN and infinity.
    """
    if len(vector) != dimensions:
        raise EmbeddingError(
            f"{source} returned an embedding of {len(vector)} dimensions; byodb stores "
            f"{dimensions}", code="invalid_embedding",
            hint="Configure an embedding model with 1536 dimensions (BYODB_EMBEDDING_MODEL).")
    values = [float(v) for v in vector]
    if not all(math.isfinite(v) for v in values):
        raise EmbeddingError(f"{source} returned an embedding with non-finite values",
                             code="invalid_embedding")
    return values


def is_zero(vector: Sequence[float]) -> bool:
    """A text without any feature embeds to zeros; cosine distance to it is undefined."""
    return not any(vector)


async def embed_texts(model: EmbeddingModel, texts: Sequence[str]) -> list[list[float]]:
    """Embed ``texts`` with ``model`` and check every vector (count, width, finiteness)."""
    if not texts:
        return []
    vectors = await model.embed([t[:MAX_EMBED_CHARS] for t in texts])
    if len(vectors) != len(texts):
        raise EmbeddingError(f"the embedding model returned {len(vectors)} embeddings for "
                             f"{len(texts)} texts")
    return [check_embedding(v, source=f"the embedding model “{model.name}”") for v in vectors]


# -- offline: lexical embeddings by feature hashing ------------------------------------------

_WORD = re.compile(r"\w+")
STOP_WORDS = frozenset({
    "a", "about", "above", "after", "again", "against", "all", "am", "an", "and", "any", "are",
    "as", "at", "be", "because", "been", "before", "being", "below", "between", "both", "but",
    "by", "can", "could", "did", "do", "does", "doing", "down", "during", "each", "few", "for",
    "from", "further", "had", "has", "have", "having", "he", "her", "here", "hers", "herself",
    "him", "himself", "his", "how", "i", "if", "in", "into", "is", "it", "its", "itself", "just",
    "me", "more", "most", "my", "myself", "no", "nor", "not", "now", "of", "off", "on", "once",
    "only", "or", "other", "our", "ours", "ourselves", "out", "over", "own", "same", "she",
    "should", "so", "some", "such", "than", "that", "the", "their", "theirs", "them",
    "themselves", "then", "there", "these", "they", "this", "those", "through", "to", "too",
    "under", "until", "up", "very", "was", "we", "were", "what", "when", "where", "which",
    "while", "who", "whom", "why", "will", "with", "would", "you", "your", "yours", "yourself",
    "yourselves"
})
"""Common English words that say little about what a text is about."""

# Relative weights of the feature families. Whole words carry most of the meaning; bigrams
# reward shared phrases; character n-grams catch inflections the stemmer misses and typos,
# each weak so that many of them do not drown the words.
_WORD_WEIGHT = 1.0
_BIGRAM_WEIGHT = 0.6
_CHAR_WEIGHT = 0.25
_CHAR_NGRAM_SIZES = (3, 4)


def _stem(word: str) -> str:
    """A deliberately tiny English suffix stripper ("walks", "walked", "walking" → "walk")."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 5 and word.endswith("ing"):
        return word[:-3]
    if len(word) > 4 and word.endswith("ed"):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


@lru_cache(maxsize=100_000)
def _char_ngrams(word: str) -> tuple[str, ...]:
    marked = f"<{word}>"
    return tuple(f"c:{marked[i:i + n]}" for n in _CHAR_NGRAM_SIZES
                 for i in range(len(marked) - n + 1))


@lru_cache(maxsize=400_000)
def _slot(feature: str, dimensions: int) -> tuple[int, float]:
    """Bucket and sign of a feature. blake2b, not ``hash()``: stored vectors must not change
    between processes (Python salts ``hash`` per process)."""
    digest = int.from_bytes(hashlib.blake2b(feature.encode(), digest_size=8).digest(), "big")
    return digest % dimensions, (1.0 if digest >> 63 else -1.0)


def _features(text: str) -> Counter[str]:
    words = _WORD.findall(text.lower())
    # Stop words are dropped before stemming: the list holds them in their written form.
    content = [_stem(w) for w in words if w not in STOP_WORDS]
    if not content:
        content = [_stem(w) for w in words]  # a text of stop words only deserves a vector too
    counts: Counter[str] = Counter("w:" + w for w in content)
    counts.update(f"b:{a} {b}" for a, b in pairwise(content))
    for word in content:
        counts.update(_char_ngrams(word))
    return counts


_FAMILY_WEIGHT = {"w": _WORD_WEIGHT, "b": _BIGRAM_WEIGHT, "c": _CHAR_WEIGHT}


def hashing_embedding(text: str, dimensions: int = EMBEDDING_DIMENSIONS) -> list[float]:
    """The lexical embedding of one text (all zeros when it has no word characters)."""
    vector = [0.0] * dimensions
    for feature, count in _features(text).items():
        index, sign = _slot(feature, dimensions)
        # Sublinear tf: the tenth mention of a word adds much less than the first.
        vector[index] += sign * _FAMILY_WEIGHT[feature[0]] * (1.0 + math.log(count))
    norm = math.sqrt(sum(v * v for v in vector))
    if norm == 0.0:
        return vector
    return [v / norm for v in vector]


class HashingEmbeddingModel:
    """Offline, deterministic lexical embeddings (see the module docstring)."""

    name = "byodb-hashing-v1"

    def __init__(self, dimensions: int = EMBEDDING_DIMENSIONS):
        self.dimensions = dimensions

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if sum(len(t) for t in texts) < 20_000:
            return [hashing_embedding(t, self.dimensions) for t in texts]
        # Big batches (file chunks) are CPU work: keep the event loop answering meanwhile.
        batch = list(texts)
        return await run_embedding_work(
            lambda: [hashing_embedding(t, self.dimensions) for t in batch])


# -- OpenAI-compatible ------------------------------------------------------------------------

class OpenAICompatibleEmbeddingModel:
    """Any server speaking the OpenAI ``POST /embeddings`` API."""

    def __init__(self, base_url: str, api_key: str | None, model: str, *,
                 dimensions: int = EMBEDDING_DIMENSIONS, batch_size: int = 64,
                 transport: httpx.AsyncBaseTransport | None = None):
        self._base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._batch_size = batch_size
        self._transport = transport
        self.name = model
        self.dimensions = dimensions

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        vectors: list[list[float]] = []
        async with httpx.AsyncClient(timeout=httpx.Timeout(60.0, connect=10.0),
                                     transport=self._transport) as client:
            for start in range(0, len(texts), self._batch_size):
                batch = list(texts[start:start + self._batch_size])
                vectors += await self._embed_batch(client, headers, batch)
        return vectors

    async def _embed_batch(self, client: httpx.AsyncClient, headers: dict[str, str],
                           batch: list[str]) -> list[list[float]]:
        try:
            response = await client.post(f"{self._base_url}/embeddings", headers=headers,
                                         json={"model": self.name, "input": batch})
        except httpx.HTTPError as exc:
            # The exception text may hold the URL; name only its kind.
            raise EmbeddingError(f"the embedding service could not be reached "
                                 f"({type(exc).__name__})") from None
        if response.status_code != 200:
            raise EmbeddingError(f"the embedding service answered HTTP {response.status_code}")
        try:
            data = sorted(response.json()["data"], key=lambda item: item["index"])
            vectors = [list(item["embedding"]) for item in data]
        except (ValueError, KeyError, TypeError):
            raise EmbeddingError("the embedding service answered in an unexpected "
                                 "format") from None
        if len(vectors) != len(batch):
            raise EmbeddingError(f"the embedding service returned {len(vectors)} embeddings "
                                 f"for {len(batch)} texts")
        return [check_embedding(v, source=f"the embedding model “{self.name}”",
                                dimensions=self.dimensions) for v in vectors]


PROVIDERS = ("auto", "offline", "hashing", "openai")


def embedding_model_from_settings(settings: Settings) -> EmbeddingModel:
    """``BYODB_EMBEDDING_PROVIDER``: ``auto`` (the default) uses the OpenAI-compatible
    endpoint when ``BYODB_LLM_BASE_URL`` is set, else the offline semantic model;
    ``offline`` (the WordLlama model), ``hashing`` (the lexical model) and ``openai`` force
    one."""
    provider = settings.embedding_provider
    if provider not in PROVIDERS:
        raise ByodbError(f"unknown embedding provider {provider!r}: use "
                         f"{', '.join(PROVIDERS[:-1])} or {PROVIDERS[-1]}",
                         code="configuration_error")
    if provider == "hashing":
        return HashingEmbeddingModel()
    if provider == "offline" or (provider == "auto" and not settings.llm_base_url):
        return WordLlamaEmbeddingModel()
    if not settings.llm_base_url:
        raise ByodbError("BYODB_EMBEDDING_PROVIDER=openai needs BYODB_LLM_BASE_URL",
                         code="configuration_error")
    return OpenAICompatibleEmbeddingModel(settings.llm_base_url, settings.llm_api_key,
                                          settings.embedding_model)
