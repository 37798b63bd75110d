"""A byodb export as an import source: ``manifest.json`` and ``tables/<table>.jsonl``."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from typing import Any

from byodb.content.limits import MAX_FILE_BYTES
from byodb.services.portability.archive import ImportInvalid, ImportLimits, SafeZip
from byodb.services.portability.columns import content_tables, table_specs
from byodb.services.portability.export import FORMAT_NAME, FORMAT_VERSION
from byodb.services.portability.ids import derived_id
from byodb.services.portability.jsonstream import ItemReader, JsonLimits, bounded_items
from byodb.services.portability.rowcheck import RowChecker

MANIFEST = "manifest.json"
_MAX_MANIFEST_BYTES = 64 * 1024 * 1024


def _row_limits(limits: ImportLimits) -> JsonLimits:
    return JsonLimits(item_bytes=limits.line_bytes, item_values=limits.row_values,
                      items=limits.rows)


class ByodbExport:
    """Rows keep their ids when the export is the importer's own (a restore: importing it
    again finds every row already there); an export of another account gets ids derived
    from the importer and the original id, the same on every import of the file.

    Each member is read once: its rows are checked as they are read, and its SHA-256 is
    computed from the same bytes (:meth:`verify` compares it with the manifest's)."""

    kind = "byodb"

    def __init__(self, archive: SafeZip, user_id: str, limits: ImportLimits) -> None:
        self._zip = archive
        self._user_id = user_id
        self._limits = limits
        if archive.size(MANIFEST) > _MAX_MANIFEST_BYTES:
            raise ImportInvalid("manifest.json is larger than an export's manifest can be")
        manifest_limits = JsonLimits(item_bytes=_MAX_MANIFEST_BYTES,
                                     item_values=8 * limits.members + 1_000, items=1)
        with archive.open(MANIFEST) as raw:
            values = list(bounded_items(raw, manifest_limits, MANIFEST, "value",
                                        top_level_list=False))
        manifest = values[0] if values else None
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
        self._digests: dict[str, str] = {}
        self._total = sum(archive.size(n) for n in archive.names()
                          if n.startswith(("tables/", "files/")))
        self._done = 0
        self._reader: ItemReader | None = None

    def _id(self, value: uuid.UUID) -> uuid.UUID:
        return value if self._keep_ids else derived_id(self._user_id, "byodb", str(value))

    def _member(self, path: str) -> bytes:
        if not path.startswith("files/") or not self._zip.has(path):
            raise ImportInvalid(f"a files row names {path[:100]!r}, which is not a file of "
                                "the zip")
        if self._zip.size(path) > MAX_FILE_BYTES:
            raise ImportInvalid(f"{path[:100]} is larger than the app's file limit")
        digest = hashlib.sha256()
        with self._zip.open(path, digest) as handle:
            data = handle.read()
        if path not in self._digests:
            self._done += len(data)
        self._digests[path] = digest.hexdigest()
        return data

    def progress(self) -> tuple[int, int]:
        current = self._reader.bytes_done if self._reader is not None else 0
        return self._done + current, self._total

    def records(self) -> Iterator[tuple[str, dict[str, Any], str]]:
        for table in content_tables():
            name = f"tables/{table.name}.jsonl"
            if not self._zip.has(name):
                continue
            checker = RowChecker(table.name, table_specs(table.name), user_id=self._user_id,
                                 ids=self._id, read_member=self._member)
            digest = hashlib.sha256()
            with self._zip.open(name, digest) as raw:
                self._reader = reader = bounded_items(raw, _row_limits(self._limits), name,
                                                      "row", top_level_list=False)
                for data in reader:
                    where = f"{name} row {reader.count + 1}"
                    yield table.name, checker.check(data, where), where
                self._done += reader.bytes_done
                self._reader = None
            self._digests[name] = digest.hexdigest()

    def verify(self, counts: dict[str, int]) -> None:
        """Every table and file the manifest lists is in the zip with its SHA-256, and each
        table has the rows the manifest says."""
        for name, entry in self._files.items():
            if not (name.startswith("tables/") or name.startswith("files/")):
                continue  # the readable copies are not imported
            if not self._zip.has(name):
                raise ImportInvalid(f"the manifest lists {name[:100]}, which the zip lacks")
            if name not in self._digests:  # a member no row read (unknown table, spare file)
                digest = hashlib.sha256()
                with self._zip.open(name, digest) as handle:
                    while handle.read(1024 * 1024):
                        pass
                self._digests[name] = digest.hexdigest()
            if self._digests[name] != entry["sha256"]:
                raise ImportInvalid(f"{name[:100]} does not match its SHA-256 in the manifest",
                                    hint="The export was changed or damaged; download it "
                                         "again.")
            table = name.removeprefix("tables/").removesuffix(".jsonl")
            if name.startswith("tables/") and counts.get(table, 0) != entry["rows"]:
                raise ImportInvalid(f"{name[:100]} has {counts.get(table, 0)} rows, the "
                                    f"manifest says {entry['rows']}")

    def close(self) -> None:
        self._zip.close()
