"""The executors of blocking work: each bounded, each for one kind of work, none the default.

asyncio's default thread pool is shared by everything that calls ``asyncio.to_thread`` or
``loop.getaddrinfo``: one busy caller starves the others (an import's parsing once made
another user's connection test on ``localhost`` answer ``dns_failure``). So:

* :func:`resolve` — host name lookups (the URL guard, the health sweep) on a small thread
  pool of their own (``DNS_THREADS``), with at most ``DNS_PENDING`` lookups queued or
  running: past that a lookup fails at once (the caller reports a DNS failure) instead of
  waiting behind a stuck resolver.
* :class:`WorkerProcesses` — CPU-heavy work (checking an import) in worker processes: it
  never holds this process's GIL, so the event loop keeps answering, and the memory a worker
  used goes back to the system when its task ends (each process runs one task). Its size is
  the caller's (``BYODB_IMPORT_WORKERS``); callers admit work before they submit it.
* :class:`IoThreads` — file reads and writes that feed an async consumer (an import's
  checked rows on their way to ``COPY``), on a small thread pool of their own.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import socket
import threading
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

DNS_THREADS = 4
DNS_PENDING = 64


class ResolverBusy(OSError):
    """Too many host name lookups are pending; this one was not started."""


_dns_lock = threading.Lock()
_dns_pool: ThreadPoolExecutor | None = None
_dns_slots = threading.BoundedSemaphore(DNS_PENDING)


def _dns() -> ThreadPoolExecutor:
    global _dns_pool
    with _dns_lock:
        if _dns_pool is None:
            _dns_pool = ThreadPoolExecutor(DNS_THREADS, thread_name_prefix="byodb-dns")
        return _dns_pool


async def resolve(host: str, port: int, *, kind: int = socket.SOCK_STREAM) -> list[Any]:
    """``socket.getaddrinfo(host, port, type=kind)`` on the DNS pool (the caller sets the
    deadline: a lookup that is still running when it passes finishes on its thread, holding
    one of ``DNS_PENDING`` slots, and its answer is dropped)."""
    if not _dns_slots.acquire(blocking=False):
        raise ResolverBusy(f"more than {DNS_PENDING} host name lookups are pending")
    try:
        future = _dns().submit(socket.getaddrinfo, host, port, type=kind)
    except BaseException:
        _dns_slots.release()
        raise
    # Done, failed or cancelled before it started: the slot is free again either way.
    future.add_done_callback(lambda _: _dns_slots.release())
    return await asyncio.wrap_future(future)


async def _run(executor: Executor, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    return await asyncio.wrap_future(executor.submit(fn, *args, **kwargs))


class WorkerProcesses:
    """A pool of ``size`` worker processes, each running one task and then replaced.

    Workers are forked from a small server process (``forkserver``) that imported
    ``preload`` (and the main module) once, so a task starts in milliseconds without sharing
    this process's threads or locks. ``fn`` and its arguments must be picklable
    (module-level functions, plain data); the main module must guard its start-up with
    ``if __name__ == "__main__"``, as multiprocessing requires.
    """

    def __init__(self, size: int, *, preload: tuple[str, ...] = ()) -> None:
        context = multiprocessing.get_context("forkserver")
        # "__main__" too: the server imports the main module once, so a new worker finds it
        # there instead of importing it again (multiprocessing does that for every worker
        # whose server lacks it).
        context.set_forkserver_preload(["__main__", *preload])
        self.size = size
        self._pool = ProcessPoolExecutor(size, mp_context=context, max_tasks_per_child=1)

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        return await _run(self._pool, fn, *args, **kwargs)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class IoThreads:
    """A thread pool of ``size`` threads for file I/O that an async caller waits on."""

    def __init__(self, size: int, *, name: str) -> None:
        self._pool = ThreadPoolExecutor(size, thread_name_prefix=name)

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        return await _run(self._pool, fn, *args, **kwargs)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
