"""A zip archive written as a stream of bytes, never held whole in memory or on disk.

The standard library's :class:`zipfile.ZipFile` writes to any object with ``write``; when
that object cannot ``seek`` it puts each member's sizes and CRC in a data descriptor after
the member, so the archive can go out as it is made. :class:`ZipStream` gives it such a sink
and hands out what was written so far (:meth:`take`), while it records each member's
SHA-256 and length for the manifest.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import zipfile
from dataclasses import dataclass
from typing import IO

COMPRESS_LEVEL = 1
"""Deflate's fastest level: an export is bounded by how fast it is made, and JSON still
shrinks about five-fold at level 1."""


class _Sink(io.RawIOBase):
    """Collects what zipfile writes; has no ``seek``/``tell``, so zipfile streams."""

    def __init__(self) -> None:
        super().__init__()
        self._chunks: list[bytes] = []
        self.pending = 0

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        chunk = bytes(data)
        self._chunks.append(chunk)
        self.pending += len(chunk)
        return len(chunk)

    def flush(self) -> None:
        # Nothing is buffered here; an abandoned archive's ZipFile.__del__ flushes after
        # the sink was closed, which must not raise.
        pass

    def take(self) -> bytes:
        data = b"".join(self._chunks)
        self._chunks.clear()
        self.pending = 0
        return data


@dataclass
class MemberStats:
    """What the manifest says about one member."""

    rows: int = 0
    bytes: int = 0
    sha256: str = ""


class Member:
    """One member being written: its bytes go to the archive and into its SHA-256."""

    def __init__(self, handle: IO[bytes]) -> None:
        self._handle = handle
        self._hash = hashlib.sha256()
        self.stats = MemberStats()

    def write(self, data: bytes) -> None:
        self._handle.write(data)
        self._hash.update(data)
        self.stats.bytes += len(data)

    def close(self) -> MemberStats:
        self._handle.close()
        self.stats.sha256 = self._hash.hexdigest()
        return self.stats


class ZipStream:
    """Members are written one at a time (zip allows no other order when streaming)."""

    def __init__(self) -> None:
        self._sink = _Sink()
        self._zip = zipfile.ZipFile(self._sink, "w", compression=zipfile.ZIP_DEFLATED,
                                    compresslevel=COMPRESS_LEVEL)
        self._member: Member | None = None

    def open(self, name: str) -> Member:
        # force_zip64: a member's size is unknown when it starts and may pass 4 GiB. (By
        # name, so the archive's compression level applies.)
        self._member = Member(self._zip.open(name, "w", force_zip64=True))
        return self._member

    @property
    def pending(self) -> int:
        """Bytes written and not yet taken."""
        return self._sink.pending

    def take(self) -> bytes:
        return self._sink.take()

    def close(self) -> bytes:
        """Write the central directory; the archive's last bytes."""
        self._zip.close()
        return self._sink.take()

    def abandon(self) -> None:
        """Give up an unfinished archive (its reader failed or the client left): whatever is
        still open is closed into the sink, which is dropped."""
        with contextlib.suppress(Exception):
            if self._member is not None:
                self._member.close()
            self._zip.close()
        self._sink.take()
