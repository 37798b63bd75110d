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
from typing import IO, Any, Protocol

from byodb.services.portability.archive import ImportInvalid, ImportLimits, SafeZip, is_zip
from byodb.services.portability.columns import ColumnSpec
from byodb.services.portability.source_byodb import MANIFEST, ByodbExport
from byodb.services.portability.source_chats import ChatExport, detect

CONVERSATIONS = "conversations.json"


class Source(Protocol):
    kind: str

    def rows(self, table: str, specs: list[ColumnSpec]) -> Iterator[dict[str, Any]]:
        """The table's rows, each checked; parents' rows come from earlier calls."""
        ...

    def verify(self, counts: dict[str, int]) -> None:
        """Checks over the whole file once its rows were read (counts: rows per table)."""
        ...

    def close(self) -> None: ...


def open_source(path: Path, user_id: str, limits: ImportLimits) -> Source:
    if path.stat().st_size > limits.file_bytes:
        raise ImportInvalid("the file is larger than the import limit")
    if not is_zip(path):
        def open_file() -> IO[bytes]:
            return path.open("rb")
        return ChatExport(detect(open_file, limits), open_file, limits, user_id)
    archive = SafeZip(path, limits)
    try:
        if archive.has(MANIFEST):
            return ByodbExport(archive, user_id)
        if archive.has(CONVERSATIONS):
            def open_member() -> IO[bytes]:
                return archive.open(CONVERSATIONS)
            return ChatExport(detect(open_member, limits), open_member, limits, user_id,
                              close=archive.close)
    except BaseException:
        archive.close()
        raise
    archive.close()
    raise ImportInvalid("the zip is neither a byodb export (manifest.json) nor a ChatGPT or "
                        "Claude export (conversations.json)")
