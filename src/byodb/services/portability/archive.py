"""Reading an uploaded file without trusting it: its zip members, their sizes, their names.

An upload is hostile until read (DESIGN.md §6, like a user's database). Before anything is
parsed, :class:`SafeZip` refuses a zip whose members name a path outside the archive (an
absolute path, ``..``, a drive or a backslash), are encrypted, are too many, or declare more
bytes than the limits; while a member is read it counts what really comes out, so a member
that unpacks to more than it declared (or than the limit) stops at the limit.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from byodb.errors import ByodbError

ZIP_MAGIC = b"PK\x03\x04"


class ImportUnsafe(ByodbError):
    """The file is built to harm the reader (unsafe member names, a zip bomb)."""

    code = "import_unsafe_file"
    status = 400


class ImportTooLarge(ByodbError):
    code = "import_too_large"
    status = 413


class ImportInvalid(ByodbError):
    """The file is not a valid export of a known kind, or a row breaks the API's rules."""

    code = "import_invalid"
    status = 422


@dataclass(frozen=True)
class ImportLimits:
    """What one import may hold (docs/import.md)."""

    file_bytes: int
    """The uploaded file (``BYODB_MAX_IMPORT_BYTES``)."""
    unpacked_bytes: int
    """All members of a zip together, unpacked (8 times ``file_bytes``)."""
    members: int = 200_000
    rows: int = 5_000_000
    line_bytes: int = 16 * 1024 * 1024
    """One row of a ``.jsonl`` (the largest row the API can write fits)."""
    row_values: int = 300_000
    """Values of one row (a JSON column of 256 KiB holds at most about 130,000)."""
    conversation_bytes: int = 32 * 1024 * 1024
    """One conversation of a ChatGPT or Claude ``conversations.json``."""
    conversation_values: int = 300_000
    """Values of one conversation (ChatGPT writes 40 to 60 values a message: room for about
    5,000 messages)."""

    @staticmethod
    def for_upload(file_bytes: int) -> ImportLimits:
        return ImportLimits(file_bytes=file_bytes, unpacked_bytes=8 * file_bytes)


def is_zip(path: Path) -> bool:
    with path.open("rb") as handle:
        return handle.read(4) == ZIP_MAGIC


def _unsafe_name(name: str) -> bool:
    if not name or "\\" in name or "\x00" in name or name.startswith("/"):
        return True
    if any(ord(ch) < 32 for ch in name):
        return True
    parts = name.rstrip("/").split("/")
    return any(part in ("", ".", "..") for part in parts) or ":" in parts[0]


class _Counted(io.RawIOBase):
    """A member's bytes, refused past ``limit`` (zipfile itself stops at the declared size
    and then checks the CRC, so a member that lies about its size fails either way), and
    hashed into ``digest`` as they are read."""

    def __init__(self, raw: IO[bytes], name: str, limit: int,
                 digest: hashlib._Hash | None = None) -> None:
        super().__init__()
        self._raw = raw
        self._name = name
        self._left = limit
        self._digest = digest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        try:
            data = self._raw.read(len(buffer))
        except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
            raise ImportInvalid(f"{self._name} in the zip is damaged ({exc})",
                                hint="Download the export again.") from None
        self._left -= len(data)
        if self._left < 0:
            raise ImportTooLarge(f"{self._name} unpacks to more than the import limit",
                                 hint="Split the export, or ask the operator for a higher "
                                      "BYODB_MAX_IMPORT_BYTES.")
        if self._digest is not None:
            self._digest.update(data)
        buffer[:len(data)] = data
        return len(data)

    def close(self) -> None:
        self._raw.close()
        super().close()


class SafeZip:
    """A zip whose member names and declared sizes were checked when it was opened."""

    def __init__(self, path: Path, limits: ImportLimits) -> None:
        try:
            self._zip = zipfile.ZipFile(path)
            infos = self._zip.infolist()
        except (zipfile.BadZipFile, OSError, ValueError) as exc:
            raise ImportInvalid(f"the file is not a readable zip ({exc})",
                                hint="Upload the export as it was downloaded.") from None
        if len(infos) > limits.members:
            raise ImportUnsafe(f"the zip has {len(infos)} members, more than the "
                               f"{limits.members} an import reads")
        declared = 0
        self._members: dict[str, zipfile.ZipInfo] = {}
        for info in infos:
            shown = info.filename[:100].encode("unicode_escape").decode()
            if _unsafe_name(info.filename):
                raise ImportUnsafe(f"the zip has a member with an unsafe name ({shown!r}): "
                                   "a path outside the archive",
                                   hint="Nothing was imported. Use an export made by the app "
                                        "you are leaving, unchanged.")
            if info.flag_bits & 0x1:
                raise ImportUnsafe(f"the zip member {shown!r} is encrypted")
            if info.filename in self._members:
                raise ImportUnsafe(f"the zip has the member {shown!r} twice")
            declared += info.file_size
            if info.file_size > limits.unpacked_bytes or declared > limits.unpacked_bytes:
                raise ImportTooLarge(
                    f"the zip's members unpack to more than {limits.unpacked_bytes} bytes "
                    f"({shown!r} declares {info.file_size})",
                    hint="Nothing was imported. Split the export, or ask the operator for a "
                         "higher BYODB_MAX_IMPORT_BYTES.")
            self._members[info.filename] = info
        self._limits = limits

    def names(self) -> list[str]:
        return [n for n in self._members if not n.endswith("/")]

    def has(self, name: str) -> bool:
        return name in self._members

    def size(self, name: str) -> int:
        return self._members[name].file_size

    def open(self, name: str, digest: hashlib._Hash | None = None) -> IO[bytes]:
        """The member's bytes (hashed into ``digest`` as they are read, when given)."""
        info = self._members.get(name)
        if info is None:
            raise ImportInvalid(f"the zip has no member {name[:100]!r}")
        try:
            raw = self._zip.open(info)
        except (zipfile.BadZipFile, NotImplementedError, OSError, ValueError) as exc:
            raise ImportInvalid(f"{name[:100]} in the zip cannot be read ({exc})") from None
        limit = min(info.file_size, self._limits.unpacked_bytes)
        return io.BufferedReader(_Counted(raw, name[:100], limit, digest), 1024 * 1024)

    def read(self, name: str) -> bytes:
        with self.open(name) as handle:
            return handle.read()

    def close(self) -> None:
        self._zip.close()
