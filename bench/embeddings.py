"""Retrieval quality and speed of the offline embedding models, measured in one run.

The retrieval set (``bench/embedding_pairs.py``) holds memory/question pairs written for
this benchmark in everyday language (people, places, preferences, plans, work, health, …);
each question paraphrases its memory rather than repeating it. Every memory is embedded
with a model, then every question, and the memories are ranked by cosine similarity to the
question, as semantic search ranks them; ``recall_at_5`` is the share of questions whose
own memory is among the top 5 of all memories.

Both models run through byodb's own classes (``WordLlamaEmbeddingModel``, the default, and
``HashingEmbeddingModel``, the lexical baseline), on the embedding executor the service
uses. Throughput: ``--throughput-texts`` distinct short texts embedded in one call, after
the model was loaded (load time reported separately).

Prints one JSON line per model and a final line::

    {"benchmark": "embeddings", "pairs", "recall_at_5": {"default", "hashing"},
     "ratio_vs_hashing", "throughput_texts_per_s": {...}, "load_s", "meets_targets"}

Targets: default ``recall_at_5`` ≥ 0.8 and ≥ 1.5 times the hashing model's.

Usage: ``.venv/bin/python bench/embeddings.py [--pairs N] [--throughput-texts N]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from embedding_pairs import PAIRS

from byodb.assistant.embeddings import (
    EmbeddingModel,
    HashingEmbeddingModel,
    embed_texts,
)
from byodb.assistant.wordllama_model import WordLlamaEmbeddingModel

TARGET_RECALL = 0.8
TARGET_RATIO = 1.5
TOP_K = 5


def emit(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


async def recall_at_k(model: EmbeddingModel, pairs: tuple[tuple[str, str], ...],
                      k: int = TOP_K) -> tuple[float, list[str]]:
    """Share of questions whose memory ranks in the top ``k``; and the questions missed."""
    memories = np.array(await embed_texts(model, [m for m, _ in pairs]))
    questions = np.array(await embed_texts(model, [q for _, q in pairs]))
    scores = questions @ memories.T  # unit vectors: cosine similarity
    # Rank of the right memory: how many memories score strictly higher (ties count for it).
    right = scores[np.arange(len(pairs)), np.arange(len(pairs))]
    ranks = (scores > right[:, None]).sum(axis=1)
    missed = [pairs[i][1] for i in np.flatnonzero(ranks >= k)]
    return float((ranks < k).mean()), missed


async def throughput(model: EmbeddingModel, count: int) -> float:
    texts = [f"{PAIRS[i % len(PAIRS)][0]} (note {i})" for i in range(count)]
    started = time.perf_counter()
    await embed_texts(model, texts)
    return count / (time.perf_counter() - started)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=len(PAIRS),
                        help=f"use the first N pairs (all {len(PAIRS)} by default)")
    parser.add_argument("--throughput-texts", type=int, default=1000)
    args = parser.parse_args()
    pairs = PAIRS[:max(2, args.pairs)]

    default = WordLlamaEmbeddingModel()
    started = time.perf_counter()
    await default.embed(["load"])  # the one load of this process
    load_s = time.perf_counter() - started

    recall: dict[str, float] = {}
    rate: dict[str, float] = {}
    for label, model in (("default", default), ("hashing", HashingEmbeddingModel())):
        recall[label], missed = await recall_at_k(model, pairs)
        rate[label] = await throughput(model, args.throughput_texts)
        emit(model=model.name, role=label, pairs=len(pairs),
             recall_at_5=round(recall[label], 4),
             texts_per_s=round(rate[label], 1), missed=len(missed), missed_examples=missed[:5])
    ratio = recall["default"] / recall["hashing"] if recall["hashing"] else float("inf")
    emit(benchmark="embeddings", pairs=len(pairs),
         recall_at_5={k: round(v, 4) for k, v in recall.items()},
         ratio_vs_hashing=round(ratio, 3),
         throughput_texts_per_s={k: round(v, 1) for k, v in rate.items()},
         load_s=round(load_s, 3),
         meets_targets=recall["default"] >= TARGET_RECALL and ratio >= TARGET_RATIO)


if __name__ == "__main__":
    asyncio.run(main())
