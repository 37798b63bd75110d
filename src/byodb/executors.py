"""The executors of blocking work: each bounded, each for one kind of work, none the default.

asyncio's default thread pool is shared by everything that calls ``asyncio.to_thread`` or
``loop.getaddrinfo``: one busy caller starves the others (an import's parsing once made
another user's connection test on ``localhost`` answer ``dns_failure``). So:

* :class:`SharedThreads` — a process-wide thread pool per kind of work, created on first
  use: host name lookups (:func:`resolve`, here), embeddings (``assistant.cpu``), an export's
  JSON, deflate and hashing (``services.portability.zipstream``).
* :func:`resolve` — host name lookups (the URL guard, the health sweep) on a small thread
  pool of their own (``DNS_THREADS``), with at most ``DNS_PENDING`` lookups queued or
  running: past that a lookup fails at once (the caller reports a DNS failure) instead of
  waiting behind a stuck resolver.
* :class:`ForkedWorkers` — CPU-heavy work (checking an import), each call in a child
  process forked for it: it never holds this process's GIL, so the event loop keeps
  answering, and the memory the call used goes back to the system when it ends. At most
  ``size`` at once (``BYODB_IMPORT_WORKERS``); callers admit work before they submit it.
* :class:`IoThreads` — blocking I/O on a small thread pool of its own: file reads and
  writes that feed an async consumer (an import's checked rows on their way to ``COPY``),
  and main's schema upgrade when the app starts (Alembic is synchronous).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import gc
import os
import pickle
import signal
import socket
import threading
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

DNS_THREADS = 8
DNS_PENDING = 256


class ResolverBusy(OSError):
    """Too many host name lookups are pending; this one was not started."""


class SharedThreads:
    """A thread pool of ``size`` threads for one kind of work, shared by the whole process
    and created on first use (a process that never does that work starts no thread). Its
    threads live as long as the process: the work is the process's, not one runtime's."""

    def __init__(self, size: int, *, name: str) -> None:
        self.size = size
        self.name = name
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None

    @property
    def pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.size, thread_name_prefix=self.name)
            return self._pool

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """``fn(*args, **kwargs)`` on the pool, awaited without blocking the event loop."""
        return await _run(self.pool, fn, *args, **kwargs)


_DNS = SharedThreads(DNS_THREADS, name="byodb-dns")
_dns_slots = threading.BoundedSemaphore(DNS_PENDING)


async def resolve(host: str, port: int, *, kind: int = socket.SOCK_STREAM) -> list[Any]:
    """``socket.getaddrinfo(host, port, type=kind)`` on the DNS pool (the caller sets the
    deadline: a lookup that is still running when it passes finishes on its thread, holding
    one of ``DNS_PENDING`` slots, and its answer is dropped)."""
    if not _dns_slots.acquire(blocking=False):
        raise ResolverBusy(f"more than {DNS_PENDING} host name lookups are pending")
    try:
        future = _DNS.pool.submit(socket.getaddrinfo, host, port, type=kind)
    except BaseException:
        _dns_slots.release()
        raise
    # Done, failed or cancelled before it started: the slot is free again either way.
    future.add_done_callback(lambda _: _dns_slots.release())
    return await asyncio.wrap_future(future)


async def _run(executor: Executor, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    return await asyncio.wrap_future(executor.submit(fn, *args, **kwargs))


WORKER_NICENESS = 10
"""How much lower a worker's CPU priority is than this process's: on a busy machine the
event loop (and the databases) go first, the background work takes what is left."""


_PR_SET_PDEATHSIG = 1
_children = [0]
"""Forked children of this process alive now (all ForkedWorkers together)."""


class WorkerFailed(RuntimeError):
    """A worker process ended without an answer (killed, or it could not send one)."""


class ForkedWorkers:
    """CPU-heavy calls, each in a child process forked for it; at most ``size`` at once.

    A forked child shares this process's memory until either writes to it, so a worker
    costs about what its call uses, and gives all of it back when it exits; it never holds
    this process's GIL. The child runs nothing but ``fn``: signals back to their defaults
    (the event loop's handlers stay with the parent), the garbage collector off (a
    collection would touch, and so copy, every page of the parent's objects), a lower CPU
    priority (``WORKER_NICENESS``), no thread, no event loop, no connection of the parent
    used. ``fn`` must be such a call (computation and files) and return or raise something
    picklable. A call that is cancelled has its child killed.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._slots: asyncio.Semaphore | None = None
        self.pids: set[int] = set()
        """The children running now (for tests and metrics)."""

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.size)
        async with self._slots:
            return await self._fork(functools.partial(fn, *args, **kwargs))

    async def _fork(self, call: Callable[[], T]) -> T:
        read_fd, write_fd = os.pipe()
        # While a child lives, this process's garbage collector leaves the objects the
        # child shares alone: a collection writes to every object it scans, and each page
        # written is then copied (gc.freeze's documented use). Unfrozen when the last ends.
        gc.freeze()
        _children[0] += 1
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # the child: run the call, send its outcome, leave without cleanup
            _child(call, read_fd, write_fd, parent)
        os.close(write_fd)
        self.pids.add(pid)
        try:
            data = await _read_all(read_fd)
            status = await _reaped(pid)
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            await asyncio.shield(_reaped(pid))
            raise
        finally:
            self.pids.discard(pid)
            _children[0] -= 1
            if not _children[0]:
                gc.unfreeze()
        if status != 0 or not data:
            raise WorkerFailed(f"the worker process ended without an answer ({status})")
        kind, value = pickle.loads(data)  # noqa: S301 (written by our own child, above)
        if kind == "error":
            raise value
        result: T = value
        return result


def _die_with_parent(parent: int) -> None:
    """Linux: the kernel kills this child when its parent dies (a server killed with -9
    leaves no check running on); elsewhere the child runs until its deadline."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # it died between the fork and the prctl
        os._exit(1)


def _child(call: Callable[[], Any], read_fd: int, write_fd: int, parent: int) -> None:
    code = 1
    try:
        _die_with_parent(parent)
        os.close(read_fd)
        for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(number, signal.SIG_DFL)
        signal.set_wakeup_fd(-1)
        gc.disable()
        os.nice(WORKER_NICENESS)
        try:
            outcome: tuple[str, Any] = ("ok", call())
        except Exception as exc:
            outcome = ("error", exc)
        try:
            data = pickle.dumps(outcome)
        except Exception as exc:
            data = pickle.dumps(("error", WorkerFailed(f"the worker's answer could not be "
                                                       f"sent ({type(exc).__name__})")))
        with os.fdopen(write_fd, "wb") as out:
            out.write(data)
        code = 0
    finally:
        os._exit(code)


async def _read_all(fd: int) -> bytes:
    """Everything written to the pipe ``fd`` until its writer closed it (then ``fd`` is
    closed)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=2**20)
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(fd, "rb", 0))
    try:
        return await reader.read()
    finally:
        transport.close()


async def _reaped(pid: int) -> int:
    """The exit status of the child ``pid``, once it ended (polled: no thread waits)."""
    delay = 0.001
    while True:
        try:
            done, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return -1
        if done:
            return os.waitstatus_to_exitcode(status)
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.05)


class IoThreads:
    """A thread pool of ``size`` threads for blocking I/O (files, a synchronous driver)
    that an async caller waits on."""

    def __init__(self, size: int, *, name: str) -> None:
        self._pool = ThreadPoolExecutor(size, thread_name_prefix=name)

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        return await _run(self._pool, fn, *args, **kwargs)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
