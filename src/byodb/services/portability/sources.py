"""Which kind of file an upload is, and its rows.

Decision order (the first that fits; anything else is refused, nothing is guessed):

1. A zip with ``manifest.json``: a byodb export.
2. A zip with ``conversations.json``: a ChatGPT export (the zip ChatGPT mails), or a Claude
   export, told apart by the first conversation's keys (``mapping`` / ``chat_messages``).
3. A JSON file that is a list: a ChatGPT or Claude ``conversations.json`` on its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from byodb.services.portability.archive import ImportInvalid, ImportLimits, SafeZip, is_zip
from byodb.services.portability.source_byodb import MANIFEST, ByodbExport
from byodb.services.portability.source_chats import ChatExport

CONVERSATIONS = "conversations.json"


class Source(Protocol):
    kind: str

    def records(self) -> Iterator[tuple[str, dict[str, Any], str]]:
        """(table, row, where) of every row of the file, each checked, in one reading of
        it; ``where`` names the row in errors (``tables/notes.jsonl row 3``)."""
        ...

    def progress(self) -> tuple[int, int]:
        """(bytes read, bytes to read) of the file's content."""
        ...

    def verify(self, counts: dict[str, int]) -> None:
        """Checks over the whole file once its rows were read (counts: rows per table)."""
        ...

    def close(self) -> None: ...


def open_source(path: Path, user_id: str, limits: ImportLimits) -> Source:
    size = path.stat().st_size
    if size > limits.file_bytes:
        raise ImportInvalid("the file is larger than the import limit")
    if not is_zip(path):
        return ChatExport(path.open("rb"), size, limits, user_id)
    archive = SafeZip(path, limits)
    try:
        if archive.has(MANIFEST):
            return ByodbExport(archive, user_id, limits)
        if archive.has(CONVERSATIONS):
            return ChatExport(archive.open(CONVERSATIONS), archive.size(CONVERSATIONS),
                              limits, user_id, close=archive.close)
    except BaseException:
        archive.close()
        raise
    archive.close()
    raise ImportInvalid("the zip is neither a byodb export (manifest.json) nor a ChatGPT or "
                        "Claude export (conversations.json)")
