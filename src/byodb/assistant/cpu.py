"""The process's executor for embedding work: a small, dedicated thread pool.

Embedding is CPU work (tokenising, table lookups, hashing). It must not run on the event
loop, which would stop answering requests meanwhile, nor in the loop's default executor,
which other libraries share for blocking calls (``asyncio.to_thread`` and DNS lookups among
them) and which grows with the number of cores. This pool is created on first use and has
:data:`EMBEDDING_THREADS` threads: at most that many embeddings run at once in a process,
others wait their turn, and the rest of the process keeps its threads.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")

EMBEDDING_THREADS = 2
"""numpy and the tokenizer release the GIL for their inner loops; two threads keep one
request's batch from waiting behind another's without taking every core of a small host."""

_lock = threading.Lock()
_executor: ThreadPoolExecutor | None = None


def embedding_executor() -> ThreadPoolExecutor:
    """The shared pool (created once per process, on first use)."""
    global _executor
    with _lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=EMBEDDING_THREADS,
                                           thread_name_prefix="byodb-embed")
        return _executor


async def run_embedding_work(fn: Callable[[], T]) -> T:
    """``fn()`` on the embedding pool, awaited without blocking the event loop."""
    return await asyncio.get_running_loop().run_in_executor(embedding_executor(), fn)
