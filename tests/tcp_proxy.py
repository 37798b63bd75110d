"""A loopback TCP proxy that can *freeze*: a database that stops answering without closing
anything (a paused VM, a black-holed route, a NAT that dropped its state).

The proxy runs in its own thread with its own asyncio loop, so it keeps forwarding (or keeps
holding) while the test's loop is busy or blocked.

- :meth:`FreezableProxy.freeze` — from the moment it returns nothing is forwarded in either
  direction on existing connections, and new connections are accepted but never forwarded:
  sockets stay open, no byte, no FIN, no RST.
- :meth:`FreezableProxy.thaw` — new connections work again; every connection that was open
  or accepted while frozen is closed (their protocol state is unknown to both ends).
- :meth:`FreezableProxy.close` — stops the listener and closes every connection.

Loopback only: it listens on 127.0.0.1 and forwards to a loopback target, never elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import threading
from dataclasses import dataclass, field
from types import TracebackType
from urllib.parse import urlsplit, urlunsplit

LISTEN_HOST = "127.0.0.1"
_CHUNK = 64 * 1024
_CONTROL_TIMEOUT_S = 10.0
_UPSTREAM_CONNECT_TIMEOUT_S = 10.0


def _require_loopback(host: str) -> str:
    """The loopback address ``host`` names; anything else is refused."""
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        raise ValueError(f"cannot resolve proxy target {host!r}") from exc
    addresses = {str(info[4][0]) for info in infos}
    if not addresses or not all(ipaddress.ip_address(a).is_loopback for a in addresses):
        raise ValueError(f"the test proxy forwards to loopback only, not {host!r}")
    return sorted(addresses)[0]


def replace_port(url: str, port: int) -> str:
    """``url`` (``postgresql://user:pw@host:port/db?…``) pointed at 127.0.0.1:``port``."""
    parts = urlsplit(url)
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = f"{userinfo}@{LISTEN_HOST}:{port}" if userinfo else f"{LISTEN_HOST}:{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


@dataclass(eq=False)
class _Link:
    """One client connection and, once forwarded, its upstream connection."""

    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter | None = None
    tainted: bool = False  # open or accepted while frozen: closed on thaw
    closed: bool = False
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def close(self) -> None:
        """Drop both sides at once (buffered bytes are discarded)."""
        if self.closed:
            return
        self.closed = True
        for writer in (self.client, self.upstream):
            if writer is not None:
                writer.transport.abort()

    async def close_gracefully(self) -> None:
        """One side ended: flush what was forwarded, then close both sides."""
        if self.closed:
            return
        writers = [w for w in (self.client, self.upstream) if w is not None]
        for writer in writers:
            writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(
                asyncio.gather(*(w.wait_closed() for w in writers), return_exceptions=True),
                _CONTROL_TIMEOUT_S)
        self.close()


class FreezableProxy:
    """``with FreezableProxy(host, port) as proxy: url = proxy.url_for(server_url)``."""

    def __init__(self, target_host: str, target_port: int):
        self.target_host = _require_loopback(target_host)
        self.target_port = int(target_port)
        self.port: int = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._frozen = False
        self._thawed: asyncio.Event | None = None
        self._closing = False
        self._handlers: set[asyncio.Task[None]] = set()
        self.accepted = 0  # connections accepted, for tests and diagnostics
        self.bytes_up = 0  # client → server bytes forwarded
        self.bytes_down = 0  # server → client bytes forwarded
        self._trigger_up: int | None = None  # freeze when bytes_up would pass this
        self._trigger_down: int | None = None

    @classmethod
    def for_url(cls, url: str) -> FreezableProxy:
        """A proxy (not started) to the host and port of a database URL."""
        parts = urlsplit(url)
        if parts.hostname is None or parts.port is None:
            raise ValueError("the URL needs an explicit host and port")
        return cls(parts.hostname, parts.port)

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> FreezableProxy:
        if self._thread is not None:
            return self
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)  # this thread's own loop
            self._loop = loop
            try:
                loop.run_until_complete(self._listen())
            except BaseException as exc:  # reported to start()
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                # Whatever is left (it should be nothing) is cancelled, never abandoned.
                pending = asyncio.all_tasks(loop)
                for task in pending:
                    task.cancel()
                if pending:
                    loop.run_until_complete(asyncio.wait(pending, timeout=_CONTROL_TIMEOUT_S))
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._thread = threading.Thread(target=run, name=f"tcp-proxy-{self.target_port}",
                                        daemon=True)
        self._thread.start()
        if not ready.wait(_CONTROL_TIMEOUT_S):
            raise RuntimeError("the proxy did not start in time")
        if failure:
            self._thread.join(_CONTROL_TIMEOUT_S)
            self._thread = None
            raise failure[0]
        return self

    async def _listen(self) -> None:
        self._thawed = asyncio.Event()
        self._thawed.set()
        self._server = await asyncio.start_server(self._accept, LISTEN_HOST, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def close(self) -> None:
        """Stop listening, close every connection, stop the thread. Idempotent."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError, TimeoutError):  # loop already stopped
            asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(_CONTROL_TIMEOUT_S)
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(loop.stop)
        thread.join(_CONTROL_TIMEOUT_S)
        self._thread = None

    async def _shutdown(self) -> None:
        self._closing = True  # from now on _accept drops every connection
        # Let accepts already under way reach _accept before the listener closes: asyncio
        # leaks (never closes) a socket accepted just before its server was closed.
        await asyncio.sleep(0.05)
        if self._server is not None:
            self._server.close()
        assert self._thawed is not None
        for link in list(self._links):
            link.close()
        self._thawed.set()  # wake handlers held by a freeze; they see their links closed
        handlers = list(self._handlers)
        if handlers:
            _, late = await asyncio.wait(handlers, timeout=_CONTROL_TIMEOUT_S)
            for task in late:
                task.cancel()
        self._links.clear()
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), _CONTROL_TIMEOUT_S)
        await asyncio.sleep(0)  # let the transports' connection_lost callbacks run

    def __enter__(self) -> FreezableProxy:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- control ---------------------------------------------------------------------------
    @property
    def frozen(self) -> bool:
        return self._frozen

    @property
    def open_connections(self) -> int:
        return len(self._links)

    def url_for(self, url: str) -> str:
        """``url`` with its host and port replaced by this proxy's (127.0.0.1)."""
        if not self.port:
            raise RuntimeError("start the proxy first")
        return replace_port(url, self.port)

    def _call(self, fn_name: str) -> None:
        loop = self._loop
        if loop is None or self._thread is None:
            raise RuntimeError("the proxy is not running")

        async def call() -> None:
            getattr(self, fn_name)()

        asyncio.run_coroutine_threadsafe(call(), loop).result(_CONTROL_TIMEOUT_S)

    def freeze(self) -> None:
        """Forward nothing more, in either direction, on any connection (synchronous: when
        this returns, the freeze is in effect)."""
        self._call("_freeze")

    def thaw(self) -> None:
        """Forward again: connections opened while frozen are closed, new ones work."""
        self._call("_thaw")

    def freeze_after(self, *, upstream_bytes: int | None = None,
                     downstream_bytes: int | None = None) -> None:
        """Freeze by itself, mid-conversation, once this many more bytes would be forwarded
        client → server (``upstream_bytes``) or server → client (``downstream_bytes``); the
        chunk that crosses the line is held, not forwarded."""
        loop = self._loop
        if loop is None or self._thread is None:
            raise RuntimeError("the proxy is not running")

        async def arm() -> None:
            self._trigger_up = None if upstream_bytes is None else \
                self.bytes_up + upstream_bytes
            self._trigger_down = None if downstream_bytes is None else \
                self.bytes_down + downstream_bytes

        asyncio.run_coroutine_threadsafe(arm(), loop).result(_CONTROL_TIMEOUT_S)

    def _freeze(self) -> None:
        self._trigger_up = self._trigger_down = None
        assert self._thawed is not None
        self._frozen = True
        self._thawed.clear()
        for link in self._links:
            link.tainted = True

    def _thaw(self) -> None:
        assert self._thawed is not None
        for link in [link for link in self._links if link.tainted]:
            link.close()
            self._links.discard(link)
        self._frozen = False
        self._thawed.set()

    # -- forwarding (all on the proxy's loop) -------------------------------------------------
    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if self._closing:
            writer.transport.abort()
            return
        link = _Link(client=writer, tainted=self._frozen)
        self._links.add(link)
        handler = asyncio.current_task()
        if handler is not None:
            self._handlers.add(handler)
        try:
            # Frozen: accepted, then held (black hole) until thawed, which closes it.
            if not await self._wait_until_forwarding(link):
                return
            try:
                up_reader, up_writer = await asyncio.wait_for(
                    asyncio.open_connection(self.target_host, self.target_port),
                    _UPSTREAM_CONNECT_TIMEOUT_S)
            except (OSError, TimeoutError):
                link.close()
                return
            if link.closed or self._closing:  # closed (thaw, close) while connecting upstream
                up_writer.transport.abort()
                return
            link.upstream = up_writer
            if self._frozen:  # frozen while connecting upstream: held like the others
                link.tainted = True
            pumps = [asyncio.create_task(self._pump(link, reader, up_writer, upstream=True)),
                     asyncio.create_task(self._pump(link, up_reader, writer, upstream=False))]
            link.tasks.update(pumps)
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            for task in pumps:
                task.cancel()
            await link.close_gracefully()
        except asyncio.CancelledError:  # only from close(): the link is dropped below
            pass
        finally:
            link.close()
            self._links.discard(link)
            for task in link.tasks:
                task.cancel()
            if handler is not None:
                self._handlers.discard(handler)

    def _maybe_trigger(self, size: int, *, upstream: bool) -> None:
        limit = self._trigger_up if upstream else self._trigger_down
        done = self.bytes_up if upstream else self.bytes_down
        if limit is not None and not self._frozen and done + size > limit:
            self._freeze()

    async def _wait_until_forwarding(self, link: _Link) -> bool:
        """Wait while frozen; False when the link was closed meanwhile (thaw or close)."""
        assert self._thawed is not None
        while self._frozen and not link.closed and not self._closing:
            await self._thawed.wait()
        return not link.closed and not self._closing

    async def _pump(self, link: _Link, reader: asyncio.StreamReader,
                    writer: asyncio.StreamWriter, *, upstream: bool) -> None:
        try:
            while not link.closed:
                if not await self._wait_until_forwarding(link):
                    return
                data = await reader.read(_CHUNK)
                if not data:
                    if not await self._wait_until_forwarding(link):
                        return
                    with contextlib.suppress(OSError, RuntimeError):
                        writer.write_eof()
                    return
                self._maybe_trigger(len(data), upstream=upstream)
                # Read just before or during a freeze: held, never delivered while frozen
                # (and dropped when the link is closed on thaw).
                if not await self._wait_until_forwarding(link):
                    return
                writer.write(data)
                if upstream:
                    self.bytes_up += len(data)
                else:
                    self.bytes_down += len(data)
                await writer.drain()
        except (OSError, ConnectionError, asyncio.IncompleteReadError):
            link.close()
