"""A black-holed database server: a loopback listener that accepts TCP connections and
never answers a byte (a paused VM, a firewall that drops replies). It counts what it
accepted and what is still open, so a test can see a client really let go."""

from __future__ import annotations

import asyncio
from types import TracebackType


class BlackHole:
    def __init__(self) -> None:
        self.accepted = 0
        self._open: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None
        self.port = 0

    @property
    def open_connections(self) -> int:
        return len(self._open)

    def url(self, *, user: str = "postgres", password: str = "pw",  # noqa: S107
            database: str = "db") -> str:
        return f"postgresql://{user}:{password}@127.0.0.1:{self.port}/{database}"

    async def _hold(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self._open.add(writer)
        try:
            while await reader.read(65536):  # swallow what the client sends, answer nothing
                pass
        except OSError:
            pass
        finally:
            self._open.discard(writer)
            writer.transport.abort()

    async def __aenter__(self) -> BlackHole:
        self._server = await asyncio.start_server(self._hold, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._open):
            writer.transport.abort()
        await self._server.wait_closed()
