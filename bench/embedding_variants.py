"""What else the shipped WordLlama weights can do: recall@5 of other ways to pool them.

``bench/embeddings.py`` measures the default model as byodb computes it (the mean of the
token embeddings, L2-normalised). This script measures, on the same retrieval set
(``bench/embedding_pairs.py``) and in one run, the variants a static token-embedding model
allows, so a change of the default can be judged on numbers:

- ``lowercase``: the text lower-cased first (the Llama tokenizer is case-sensitive);
- ``stop_words``: English stop words (the hashing model's list) dropped first;
- ``sif``: smooth inverse frequency weights ``a / (a + p(token))`` (Arora et al., 2017),
  ``p`` from the token's rank in the tokenizer's merge order (BPE merges the most frequent
  pairs first: a Zipf estimate, the only frequency the wheel ships);
- ``common_component``: the frequency-weighted mean of the token table, or its first
  principal component, projected out (the "all but the top" correction);
- ``mean_max``: the mean and the element-wise maximum, concatenated;
- ``hybrid``: the default vector and the hashing model's (in the 1,280 padding
  dimensions), weighted so that the cosine is ``(1 - w) · semantic + w · lexical``.

Every variant is reported on all pairs and, separately, on the even- and odd-numbered
halves: a variant worth adopting gains on both halves, not only on the whole set it was
looked at on. Prints one JSON line per variant and a final line with the best.

Usage: ``.venv/bin/python bench/embedding_variants.py``
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file
from tokenizers import Tokenizer

sys.path.insert(0, str(Path(__file__).resolve().parent))

from embedding_pairs import PAIRS

from byodb.assistant.embeddings import STOP_WORDS, hashing_embedding
from byodb.assistant.wordllama_model import MODEL_DIMENSIONS, TENSOR, model_files
from byodb.content.tables._base import EMBEDDING_DIMENSIONS

TOP_K = 5
FIRST_WORD_TOKEN = 259
"""Ids below are ``<unk>``, ``<s>``, ``</s>`` and the 256 byte tokens."""

Pool = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""(token ids, their embeddings) → one text vector."""


def unit(rows: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return rows / np.where(norms > 0, norms, 1.0)


def recall(memories: np.ndarray, questions: np.ndarray, rows: np.ndarray) -> float:
    scores = questions @ memories.T
    right = scores[np.arange(len(scores)), np.arange(len(scores))]
    ranks = (scores > right[:, None]).sum(axis=1)
    return float((ranks[rows] < TOP_K).mean())


def without_stop_words(text: str) -> str:
    kept = [w for w in re.findall(r"[\w'-]+", text)
            if w.lower() not in STOP_WORDS and w.lower().split("'")[0] not in STOP_WORDS]
    return " ".join(kept) or text


def main() -> None:
    files = model_files()
    table = load_file(str(files.weights))[TENSOR].astype(np.float32)
    tokenizer = Tokenizer.from_file(str(files.tokenizer))
    tokenizer.no_padding()
    tokenizer.no_truncation()

    rank = np.maximum(np.arange(len(table), dtype=np.float64) - FIRST_WORD_TOKEN + 1, 1.0)
    zipf = 1.0 / rank
    zipf[:FIRST_WORD_TOKEN] = 0.0
    zipf /= zipf.sum()
    centre = zipf @ table
    spread = ((table - centre) * zipf[:, None]).T @ (table - centre)
    first_component = np.linalg.eigh(spread)[1][:, -1]

    def mean(ids: np.ndarray, vectors: np.ndarray) -> np.ndarray:
        return vectors.mean(axis=0)

    def sif(a: float) -> Pool:
        def pool(ids: np.ndarray, vectors: np.ndarray) -> np.ndarray:
            weights = a / (a + zipf[ids])
            return (vectors * weights[:, None]).sum(axis=0) / weights.sum()
        return pool

    def without(direction: np.ndarray, *, centred: bool) -> Pool:
        direction = direction / np.linalg.norm(direction)

        def pool(ids: np.ndarray, vectors: np.ndarray) -> np.ndarray:
            v = vectors.mean(axis=0) - (centre if centred else 0.0)
            return v - (v @ direction) * direction
        return pool

    def mean_max(ids: np.ndarray, vectors: np.ndarray) -> np.ndarray:
        halves = (vectors.mean(axis=0), vectors.max(axis=0))
        return np.concatenate([h / (np.linalg.norm(h) or 1.0) for h in halves])

    def embed(texts: list[str], pool: Pool, prepare: Callable[[str], str]) -> np.ndarray:
        encodings = tokenizer.encode_batch([prepare(t) for t in texts],
                                           add_special_tokens=False)
        rows = []
        for encoding in encodings:
            ids = np.clip(np.asarray(encoding.ids, dtype=np.int64), 0, len(table) - 1)
            rows.append(pool(ids, table[ids]))
        return unit(np.array(rows))

    memories = [m for m, _ in PAIRS]
    questions = [q for _, q in PAIRS]
    halves = {"all": np.arange(len(PAIRS)), "even": np.arange(0, len(PAIRS), 2),
              "odd": np.arange(1, len(PAIRS), 2)}
    results: dict[str, dict[str, float]] = {}

    def report(name: str, m: np.ndarray, q: np.ndarray) -> None:
        results[name] = {half: round(recall(m, q, rows), 4) for half, rows in halves.items()}
        print(json.dumps({"variant": name, "recall_at_5": results[name]}), flush=True)

    def same(text: str) -> str:
        return text

    def lower(text: str) -> str:
        return text.lower()

    variants: list[tuple[str, Pool, Callable[[str], str]]] = [
        ("mean (the default)", mean, same),
        ("lowercase", mean, lower),
        ("stop_words", mean, without_stop_words),
        ("lowercase+stop_words", mean, lambda t: without_stop_words(t.lower())),
        *[(f"sif a={a:g}", sif(a), same) for a in (1e-4, 1e-3, 1e-2)],
        *[(f"sif a={a:g} lowercase", sif(a), lower) for a in (1e-4, 1e-3, 1e-2)],
        ("common_component mean", without(centre, centred=False), same),
        ("common_component pc1", without(first_component, centred=True), same),
        ("mean_max", mean_max, same),
    ]
    for name, pool, prepare in variants:
        report(name, embed(memories, pool, prepare), embed(questions, pool, prepare))

    semantic = (embed(memories, mean, same), embed(questions, mean, same))
    width = EMBEDDING_DIMENSIONS - MODEL_DIMENSIONS
    lexical = (np.array([hashing_embedding(t, width) for t in memories]),
               np.array([hashing_embedding(t, width) for t in questions]))
    for w in (0.05, 0.1, 0.2, 0.3):
        m, q = (np.hstack([np.sqrt(1 - w) * s, np.sqrt(w) * h])
                for s, h in zip(semantic, lexical, strict=True))
        report(f"hybrid w={w:g}", m, q)

    best = max(results, key=lambda name: (min(results[name]["even"], results[name]["odd"]),
                                          results[name]["all"]))
    print(json.dumps({"benchmark": "embedding_variants", "pairs": len(PAIRS),
                      "default": results["mean (the default)"], "best": best,
                      "best_recall_at_5": results[best]}), flush=True)


if __name__ == "__main__":
    main()
