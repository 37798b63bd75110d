"""A zip archive written as a stream of bytes, never held whole in memory or on disk, and
compressed beside the reading rather than after it.

The archive is written by hand (the format is small: APPNOTE 6.3, with zip64) rather than by
:class:`zipfile.ZipFile`, so that

* deflate is ISA-L's (``isal.isal_zlib``, level 1: several times faster than zlib's level 1
  for a slightly larger archive), with the CRC-32 and the manifest's SHA-256 beside it;
* that work runs on a small thread pool of its own (:data:`EXPORT_THREADS`; ISA-L and
  hashlib release the GIL), never on the event loop or the default pool. Members are written
  into a queue; :meth:`ZipStream.drain` hands what was queued to the pool and returns what
  the previous hand-off compressed, so the database produces the next batch while the last
  one is compressed. At most one hand-off per archive is in flight, so its order holds and
  its memory is bounded by two batches;
* files that are already compressed (images, PDFs, zips, audio, video: :func:`compressed`)
  are stored, not deflated again.

Each member streams with a data descriptor after its bytes (sizes and CRC unknown when it
starts) and zip64 fields (a member may pass 4 GiB); Python's ``zipfile``, ``unzip`` and 7-Zip
read the result.
"""

from __future__ import annotations

import asyncio
import hashlib
import struct
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from isal import isal_zlib

from byodb.executors import SharedThreads

COMPRESS_LEVEL = 1
"""ISA-L's level 1 (of 0-3): an export is bounded by how fast it is made, and JSON still
shrinks about five-fold."""
COMPRESSION_THREADS = 2
"""Threads that deflate and hash for every export of the process (each export has at most
one hand-off in flight, so they share them fairly)."""

_ZIP64_LIMIT = 0xFFFFFFFF
_ZIP64_COUNT_LIMIT = 0xFFFF
_DEFLATED, _STORED = 8, 0
_DESCRIPTOR_FLAG = 0x08
_UTF8_FLAG = 0x800
_ZIP64_VERSION = 45
_DEFAULT_VERSION = 20
_MADE_BY = (3 << 8) | _ZIP64_VERSION  # unix
_FILE_ATTRIBUTES = (0o100644 << 16)

EXPORT_THREADS = SharedThreads(COMPRESSION_THREADS, name="byodb-export")
"""The process's export threads: they deflate and hash, and make a table's JSON lines,
conversations.json and the Markdown (``export``)."""


# --- what is stored rather than deflated ------------------------------------------------

_COMPRESSED_MAGIC = (
    b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"%PDF", b"PK\x03\x04", b"PK\x05\x06", b"\x1f\x8b",
    b"7z\xbc\xaf\x27\x1c", b"Rar!", b"BZh", b"\xfd7zXZ", b"\x28\xb5\x2f\xfd", b"OggS",
    b"fLaC", b"ID3", b"\xff\xfb", b"\xff\xf3", b"\xff\xf2", b"\x1aE\xdf\xa3", b"wOFF", b"wOF2")
_RIFF_COMPRESSED = (b"WEBP", b"AVI ")
_ISO_BRANDS = (b"ftyp",)  # mp4, mov, m4a, heic, avif: "....ftyp" at offset 4


def compressed(data: bytes) -> bool:
    """Whether ``data`` is in a format that is compressed already (by its first bytes, not
    its name: a name says nothing a user could not change)."""
    head = data[:16]
    if head.startswith(_COMPRESSED_MAGIC):
        return True
    if head.startswith(b"RIFF") and head[8:12] in _RIFF_COMPRESSED:
        return True
    return head[4:8] in _ISO_BRANDS


# --- the archive -----------------------------------------------------------------------


@dataclass
class MemberStats:
    """What the manifest says about one member (filled when its hand-off is done)."""

    rows: int = 0
    bytes: int = 0
    sha256: str = ""


@dataclass
class _Entry:
    """A member as the central directory needs it."""

    name: bytes
    flags: int
    method: int
    offset: int = 0
    crc: int = 0
    compressed_size: int = 0
    size: int = 0
    zip64_local: bool = False
    stats: MemberStats = field(default_factory=MemberStats)


class _Writer:
    """The byte-level writer. Runs on a compression thread, one hand-off at a time."""

    def __init__(self, dos_time: int, dos_date: int) -> None:
        self.time, self.date = dos_time, dos_date
        self.offset = 0
        self.out: list[bytes] = []
        self._deflate: Any = None
        self._hash: Any = None
        self._entry: _Entry | None = None

    def _emit(self, data: bytes) -> None:
        if data:
            self.out.append(data)
            self.offset += len(data)

    def start(self, entry: _Entry) -> None:
        entry.offset = self.offset
        self._entry, self._hash = entry, hashlib.sha256()
        # Sizes unknown: zip64 fields in the local header, the real ones in the descriptor.
        entry.zip64_local = True
        extra = struct.pack("<HHQQ", 1, 16, 0, 0)
        self._emit(struct.pack("<IHHHHHIIIHH", 0x04034B50, _ZIP64_VERSION, entry.flags,
                               entry.method, self.time, self.date, 0, _ZIP64_LIMIT,
                               _ZIP64_LIMIT, len(entry.name), len(extra)) + entry.name + extra)
        self._deflate = isal_zlib.compressobj(COMPRESS_LEVEL, isal_zlib.DEFLATED, -15)

    def data(self, data: bytes) -> None:
        entry = self._entry
        assert entry is not None
        entry.crc = isal_zlib.crc32(data, entry.crc)
        entry.size += len(data)
        self._hash.update(data)
        out = self._deflate.compress(data)
        entry.compressed_size += len(out)
        self._emit(out)

    def finish(self) -> None:
        entry = self._entry
        assert entry is not None
        tail = self._deflate.flush()
        entry.compressed_size += len(tail)
        self._emit(tail)
        self._emit(struct.pack("<IIQQ", 0x08074B50, entry.crc, entry.compressed_size,
                               entry.size))
        entry.stats.bytes, entry.stats.sha256 = entry.size, self._hash.hexdigest()
        self._entry = self._deflate = self._hash = None

    def stored(self, entry: _Entry, data: bytes) -> None:
        """A whole member stored as it is (sizes known: no descriptor)."""
        entry.offset = self.offset
        entry.crc = isal_zlib.crc32(data)
        entry.size = entry.compressed_size = len(data)
        self._emit(struct.pack("<IHHHHHIIIHH", 0x04034B50, _DEFAULT_VERSION, entry.flags,
                               _STORED, self.time, self.date, entry.crc, len(data), len(data),
                               len(entry.name), 0) + entry.name)
        self._emit(data)
        entry.stats.bytes, entry.stats.sha256 = len(data), hashlib.sha256(data).hexdigest()

    def central_directory(self, entries: list[_Entry]) -> None:
        start = self.offset
        for entry in entries:
            zip64: list[int] = []
            size, compressed_size, offset = entry.size, entry.compressed_size, entry.offset
            if size >= _ZIP64_LIMIT:
                zip64.append(size)
                size = _ZIP64_LIMIT
            if compressed_size >= _ZIP64_LIMIT:
                zip64.append(compressed_size)
                compressed_size = _ZIP64_LIMIT
            if offset >= _ZIP64_LIMIT:
                zip64.append(offset)
                offset = _ZIP64_LIMIT
            extra = struct.pack(f"<HH{len(zip64)}Q", 1, 8 * len(zip64), *zip64) if zip64 \
                else b""
            version = _ZIP64_VERSION if zip64 or entry.zip64_local else _DEFAULT_VERSION
            self._emit(struct.pack(
                "<IHHHHHHIIIHHHHHII", 0x02014B50, _MADE_BY, version, entry.flags,
                entry.method, self.time, self.date, entry.crc, compressed_size, size,
                len(entry.name), len(extra), 0, 0, 0, _FILE_ATTRIBUTES, offset)
                + entry.name + extra)
        size, count = self.offset - start, len(entries)
        if count > _ZIP64_COUNT_LIMIT or start >= _ZIP64_LIMIT or size >= _ZIP64_LIMIT:
            end64 = self.offset
            self._emit(struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, _MADE_BY, _ZIP64_VERSION,
                                   0, 0, count, count, size, start))
            self._emit(struct.pack("<IIQI", 0x07064B50, 0, end64, 1))
        self._emit(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, min(count, _ZIP64_COUNT_LIMIT),
                               min(count, _ZIP64_COUNT_LIMIT), min(size, _ZIP64_LIMIT),
                               min(start, _ZIP64_LIMIT), 0))

    def take(self) -> bytes:
        data = b"".join(self.out)
        self.out.clear()
        return data


Op = Callable[[_Writer], None]


class Member:
    """One member being written: its bytes are queued for the archive (see
    :meth:`ZipStream.drain`)."""

    def __init__(self, stream: ZipStream, entry: _Entry) -> None:
        self._stream = stream
        self._entry = entry
        self.name = entry.name.decode()
        self.closed = False

    @property
    def stats(self) -> MemberStats:
        return self._entry.stats

    def write(self, data: bytes) -> None:
        if data:
            self._stream._queue(lambda w: w.data(data), len(data))

    def close(self) -> MemberStats:
        """Queue the member's end; its stats are complete once the archive is drained."""
        if not self.closed:
            self.closed = True
            self._stream._queue(lambda w: w.finish(), 0)
            self._stream._member_closed(self)
        return self._entry.stats


class ZipStream:
    """Members are written one at a time (zip allows no other order when streaming)."""

    def __init__(self, *, executor: Executor | None = None,
                 now: datetime | None = None) -> None:
        when = (now or datetime.now(UTC)).astimezone(UTC)
        year = min(max(when.year, 1980), 2107)
        self._writer = _Writer((when.hour << 11) | (when.minute << 5) | (when.second // 2),
                               ((year - 1980) << 9) | (when.month << 5) | when.day)
        self._executor = executor or EXPORT_THREADS.pool
        self._entries: list[_Entry] = []
        self._ops: list[Op] = []
        self._queued = 0
        self._ready: list[bytes] = []
        self._ready_bytes = 0
        self._inflight: asyncio.Future[bytes] | None = None
        self._member: Member | None = None
        self._closed = False

    # -- writing (synchronous: only queues) -------------------------------------------------
    def _queue(self, op: Op, size: int) -> None:
        if self._closed:
            raise ValueError("the archive is closed")
        self._ops.append(op)
        self._queued += size

    def _member_closed(self, member: Member) -> None:
        if self._member is member:
            self._member = None

    def _entry(self, name: str, method: int, *, descriptor: bool) -> _Entry:
        if self._member is not None:
            raise ValueError("a member is still open: close it first")
        encoded = name.encode()
        flags = (_DESCRIPTOR_FLAG if descriptor else 0) | (0 if name.isascii() else _UTF8_FLAG)
        entry = _Entry(encoded, flags, method)
        self._entries.append(entry)
        return entry

    def open(self, name: str) -> Member:
        """A deflated member, written in pieces."""
        entry = self._entry(name, _DEFLATED, descriptor=True)
        self._queue(lambda w: w.start(entry), 0)
        self._member = Member(self, entry)
        return self._member

    def add(self, name: str, data: bytes) -> MemberStats:
        """A whole member: stored when ``data`` is compressed already, else deflated."""
        if compressed(data):
            entry = self._entry(name, _STORED, descriptor=False)
            self._queue(lambda w: w.stored(entry, data), len(data))
            return entry.stats
        member = self.open(name)
        member.write(data)
        return member.close()

    @property
    def pending(self) -> int:
        """Bytes queued (uncompressed) and compressed, not yet taken."""
        return self._queued + self._ready_bytes

    # -- handing off ------------------------------------------------------------------------
    async def drain(self, *, wait: bool = False) -> bytes:
        """Hand the queued members to the compression pool and return what is compressed
        so far (the previous hand-off). ``wait``: also wait for this one (the archive's
        end)."""
        if self._inflight is not None:
            # Shielded: a deadline that cancels the export while it waits here must not
            # cancel the hand-off (its thread runs to the end anyway), or the archive could
            # not be closed with what it holds (``export._Archive.incomplete``).
            self._collect(await asyncio.shield(self._inflight))
            self._inflight = None
        if self._ops:
            ops, self._ops, self._queued = self._ops, [], 0
            writer = self._writer

            def run() -> bytes:
                for op in ops:
                    op(writer)
                return writer.take()

            self._inflight = asyncio.get_running_loop().run_in_executor(self._executor, run)
            if wait:
                self._collect(await asyncio.shield(self._inflight))
                self._inflight = None
        return self._take_ready()

    def _collect(self, data: bytes) -> None:
        if data:
            self._ready.append(data)
            self._ready_bytes += len(data)

    def _take_ready(self) -> bytes:
        data = b"".join(self._ready)
        self._ready.clear()
        self._ready_bytes = 0
        return data

    def close_open_member(self) -> str | None:
        """Close the member being written, if one is (its bytes so far stay); its name."""
        member = self._member
        if member is None or member.closed:
            return None
        member.close()
        return member.name

    async def close(self) -> bytes:
        """Write the central directory; the archive's last bytes."""
        entries = self._entries
        self._queue(lambda w: w.central_directory(entries), 0)
        self._closed = True
        return await self.drain(wait=True)

    def abandon(self) -> None:
        """Give up an unfinished archive (its reader failed or the client left): what is
        queued is dropped; a hand-off in flight ends on its own, its result ignored."""
        self._ops.clear()
        self._ready.clear()
        self._closed = True
        if self._inflight is not None:
            self._inflight.add_done_callback(
                lambda done: done.cancelled() or done.exception())
            self._inflight = None
