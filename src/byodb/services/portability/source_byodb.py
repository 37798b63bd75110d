"""A byodb export as an import source: ``manifest.json`` and ``tables/<table>.jsonl``."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from typing import Any

from byodb.content.limits import MAX_FILE_BYTES
from byodb.services.portability.archive import ImportInvalid, SafeZip
from byodb.services.portability.columns import ColumnSpec
from byodb.services.portability.export import FORMAT_NAME, FORMAT_VERSION
from byodb.services.portability.ids import derived_id
from byodb.services.portability.rowcheck import RowChecker

MANIFEST = "manifest.json"
_MAX_MANIFEST_BYTES = 64 * 1024 * 1024


class ByodbExport:
    """Rows keep their ids when the export is the importer's own (a restore: importing it
    again finds every row already there); an export of another account gets ids derived
    from the importer and the original id, the same on every import of the file."""

    kind = "byodb"

    def __init__(self, archive: SafeZip, user_id: str) -> None:
        self._zip = archive
        self._user_id = user_id
        if archive.size(MANIFEST) > _MAX_MANIFEST_BYTES:
            raise ImportInvalid("manifest.json is larger than an export's manifest can be")
        try:
            manifest = json.loads(archive.read(MANIFEST))
        except ValueError:
            raise ImportInvalid("manifest.json is not JSON") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
            raise ImportInvalid(f"manifest.json does not describe a {FORMAT_NAME}")
        version = manifest.get("format_version")
        if not isinstance(version, int) or not 1 <= version <= FORMAT_VERSION:
            raise ImportInvalid(f"this export's format version ({str(version)[:20]}) is not "
                                f"one this server reads (1 to {FORMAT_VERSION})")
        files = manifest.get("files")
        if not isinstance(files, dict) or not all(
                isinstance(v, dict) and isinstance(v.get("sha256"), str)
                and isinstance(v.get("rows"), int) for v in files.values()):
            raise ImportInvalid("manifest.json: files must map each member to its rows "
                                "and sha256")
        self._files: dict[str, dict[str, Any]] = files
        self._keep_ids = manifest.get("user_id") == user_id

    def _id(self, value: uuid.UUID) -> uuid.UUID:
        return value if self._keep_ids else derived_id(self._user_id, "byodb", str(value))

    def _member(self, path: str) -> bytes:
        if not path.startswith("files/") or not self._zip.has(path):
            raise ImportInvalid(f"a files row names {path[:100]!r}, which is not a file of "
                                "the zip")
        if self._zip.size(path) > MAX_FILE_BYTES:
            raise ImportInvalid(f"{path[:100]} is larger than the app's file limit")
        return self._zip.read(path)

    def rows(self, table: str, specs: list[ColumnSpec]) -> Iterator[dict[str, Any]]:
        name = f"tables/{table}.jsonl"
        if not self._zip.has(name):
            return
        checker = RowChecker(table, specs, user_id=self._user_id, ids=self._id,
                             read_member=self._member)
        for number, line in self._zip.lines(name):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except ValueError:
                raise ImportInvalid(f"{name} line {number} is not JSON") from None
            yield checker.check(data, f"{name} line {number}")

    def verify(self, counts: dict[str, int]) -> None:
        """Every table and file the manifest lists is in the zip with its SHA-256, and each
        table has the rows the manifest says."""
        for name, entry in self._files.items():
            if not (name.startswith("tables/") or name.startswith("files/")):
                continue  # the readable copies are not imported
            if not self._zip.has(name):
                raise ImportInvalid(f"the manifest lists {name[:100]}, which the zip lacks")
            digest = hashlib.sha256()
            with self._zip.open(name) as handle:
                while chunk := handle.read(1024 * 1024):
                    digest.update(chunk)
            if digest.hexdigest() != entry["sha256"]:
                raise ImportInvalid(f"{name[:100]} does not match its SHA-256 in the manifest",
                                    hint="The export was changed or damaged; download it "
                                         "again.")
            table = name.removeprefix("tables/").removesuffix(".jsonl")
            if name.startswith("tables/") and counts.get(table, 0) != entry["rows"]:
                raise ImportInvalid(f"{name[:100]} has {counts.get(table, 0)} rows, the "
                                    f"manifest says {entry['rows']}")

    def close(self) -> None:
        self._zip.close()
