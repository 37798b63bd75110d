"""The process's executor for embedding work: a small, dedicated thread pool.

Embedding is CPU work (tokenising, table lookups, hashing). It must not run on the event
loop, which would stop answering requests meanwhile, nor in the loop's default executor,
which other libraries share for blocking calls (``asyncio.to_thread`` and DNS lookups among
them) and which grows with the number of cores. This pool is created on first use and has
:data:`EMBEDDING_THREADS` threads: at most that many embeddings run at once in a process,
others wait their turn, and the rest of the process keeps its threads.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from byodb.executors import SharedThreads

T = TypeVar("T")

EMBEDDING_THREADS = 2
"""numpy and the tokenizer release the GIL for their inner loops; two threads keep one
request's batch from waiting behind another's without taking every core of a small host."""

EMBEDDING = SharedThreads(EMBEDDING_THREADS, name="byodb-embed")


async def run_embedding_work(fn: Callable[[], T]) -> T:
    """``fn()`` on the embedding pool, awaited without blocking the event loop."""
    return await EMBEDDING.run(fn)
