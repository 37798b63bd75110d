"""Files: the upload (bytes kept in ``files.content`` on the database that holds the user's
content) and the download of the bytes. Text files are cut into overlapping chunks with
embeddings in ``file_chunks`` for semantic search; PDFs and images are stored only.

Listing, metadata and deleting are the declared content area ``areas.FILES``; these two do
not fit a declared write or read: the upload is raw bytes turned into many rows (the file
and its chunks), and the download serves the bytes themselves, not a JSON row.

The upload is one transaction: the file row (status ``ready``) and all its chunks appear
together or not at all. Chunking and embedding happen before it, so no connection of the
user's small pool waits on CPU work or a model.
"""

from __future__ import annotations

import hashlib
import logging
import unicodedata
from dataclasses import dataclass
from pathlib import PurePosixPath, PureWindowsPath
from typing import Any
from uuid import UUID

from sqlalchemy import select

from byodb.assistant.embeddings import EmbeddingError, EmbeddingModel, embed_texts, is_zero

# MAX_FILE_BYTES is re-exported: the upload endpoint takes it from here.
from byodb.content.limits import MAX_FILE_BYTES as MAX_FILE_BYTES
from byodb.content.limits import MAX_FILENAME_CHARS
from byodb.content.tables import file_chunks, files
from byodb.errors import ByodbError, InvalidInput, NotFound
from byodb.ids import new_id
from byodb.routing import Router
from byodb.services.embedding_stamp import embedding_stamp
from byodb.services.rows import Reader, public_columns

log = logging.getLogger(__name__)

_READER = Reader.of(public_columns(files))
_COLUMNS = _READER.columns
# A download: the bytes are cut at MAX_FILE_BYTES + 1 on the server, like any bounded value.
_WITH_CONTENT = Reader.of([*public_columns(files), files.c.content])

CHUNK_CHARS = 1_000
CHUNK_OVERLAP_CHARS = 150
MAX_INDEXED_CHARS = 500_000
"""Text beyond this (about 250 pages) is stored but not chunked; metadata says so."""

TEXT_TYPES: tuple[str, ...] = ("text/plain", "text/markdown", "text/csv", "application/json")
"""Decoded as UTF-8, chunked and embedded."""

STORED_ONLY_TYPES: tuple[str, ...] = ("application/pdf", "image/png", "image/jpeg",
                                      "image/gif", "image/webp")
"""Kept and served back, not indexed (no PDF text extraction or image understanding)."""

ALLOWED_TYPES: tuple[str, ...] = TEXT_TYPES + STORED_ONLY_TYPES

_ALIASES = {"text/x-markdown": "text/markdown", "image/jpg": "image/jpeg",
            "application/x-pdf": "application/pdf", "text/json": "application/json"}
_BY_EXTENSION = {".txt": "text/plain", ".text": "text/plain", ".md": "text/markdown",
                 ".markdown": "text/markdown", ".csv": "text/csv", ".json": "application/json",
                 ".pdf": "application/pdf", ".png": "image/png", ".jpg": "image/jpeg",
                 ".jpeg": "image/jpeg", ".gif": "image/gif", ".webp": "image/webp"}
# Binary types must look like what they claim: the bytes are served back with this type,
# so a mislabelled upload must not become, say, HTML in somebody's browser.
_SIGNATURES: dict[str, tuple[bytes, ...]] = {
    "application/pdf": (b"%PDF-",),
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/gif": (b"GIF87a", b"GIF89a"),
}


class UnsupportedMediaType(ByodbError):
    code = "unsupported_media_type"
    status = 415


class PayloadTooLarge(ByodbError):
    code = "payload_too_large"
    status = 413


def too_large() -> PayloadTooLarge:
    return PayloadTooLarge(f"the file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB",
                           hint="Upload a smaller file or split it.")


def clean_filename(filename: str | None) -> str:
    """The last path component, without control characters, at most 255 characters."""
    name = PureWindowsPath(PurePosixPath(filename or "").name).name
    name = "".join(c for c in name if unicodedata.category(c)[0] != "C").strip()
    return name[:MAX_FILENAME_CHARS] or "upload"


def media_type_of(declared: str | None, filename: str, data: bytes) -> str:
    """The type the file is stored and served as, or :class:`UnsupportedMediaType`.

    The declared type counts; a missing or generic one (``application/octet-stream``) is
    taken from the file name's extension.
    """
    media_type = (declared or "").split(";")[0].strip().lower()
    media_type = _ALIASES.get(media_type, media_type)
    if media_type in ("", "application/octet-stream"):
        media_type = _BY_EXTENSION.get(PurePosixPath(filename.lower()).suffix, "")
    if media_type not in ALLOWED_TYPES:
        raise UnsupportedMediaType(
            "this type of file cannot be uploaded; allowed: " + ", ".join(ALLOWED_TYPES))
    if media_type == "image/webp":
        looks_right = data[:4] == b"RIFF" and data[8:12] == b"WEBP"
    elif media_type in _SIGNATURES:
        looks_right = data.startswith(_SIGNATURES[media_type])
    else:
        looks_right = b"\x00" not in data  # text; PostgreSQL text cannot hold NUL either
    if not looks_right:
        raise UnsupportedMediaType(f"the file's content does not match its type {media_type}")
    return media_type


def chunk_text(text: str, *, size: int = CHUNK_CHARS,
               overlap: int = CHUNK_OVERLAP_CHARS) -> list[str]:
    """Chunks of at most ``size`` characters, cut at a paragraph, line, sentence or word
    boundary where one is in the second half of the window, each starting ``overlap``
    characters before the previous one ended (so a sentence cut in two is whole in one)."""
    chunks: list[str] = []
    start, length = 0, len(text)
    while start < length:
        end = min(start + size, length)
        if end < length:
            window = text[start:end]
            for separator in ("\n\n", "\n", ". ", " "):
                cut = window.rfind(separator)
                if cut > size // 2:
                    end = start + cut + len(separator)
                    break
        chunk = text[start:end].strip()
        if chunk:
            chunks.append(chunk)
        if end >= length:
            break
        next_start = max(end - overlap, start + 1)
        space = text.find(" ", next_start, end)
        start = space + 1 if space != -1 else next_start
    return chunks


@dataclass(frozen=True)
class _Index:
    chunks: list[str]
    vectors: list[list[float]]
    metadata: dict[str, Any]
    error: str | None


async def _index_text(embedder: EmbeddingModel, data: bytes) -> _Index:
    text = data.decode("utf-8-sig", errors="replace")
    indexed = text[:MAX_INDEXED_CHARS]
    chunks = chunk_text(indexed)
    metadata: dict[str, Any] = {"chunks": len(chunks), "indexed_chars": len(indexed),
                                "truncated": len(text) > len(indexed)}
    try:
        vectors = await embed_texts(embedder, chunks)
    except EmbeddingError as exc:
        # The bytes are still worth keeping; the file is marked and says why.
        log.warning("file not indexed: %s", exc.code)
        metadata["chunks"] = 0
        return _Index([], [], metadata, "The file was stored, but its text could not be "
                                        "indexed for search: " + exc.message)
    return _Index(chunks, vectors, metadata, None)


async def upload_file(router: Router, embedder: EmbeddingModel, user_id: str, *,
                      filename: str | None, declared_type: str | None,
                      data: bytes) -> dict[str, Any]:
    """Store an uploaded file (and, for text, its chunks); returns the file's metadata."""
    if not data:
        raise InvalidInput("the file is empty")
    if len(data) > MAX_FILE_BYTES:
        raise too_large()
    name = clean_filename(filename)
    media_type = media_type_of(declared_type, name, data)
    if media_type in TEXT_TYPES:
        index = await _index_text(embedder, data)
    else:
        index = _Index([], [], {"chunks": 0}, None)
    metadata = {**index.metadata, "sha256": hashlib.sha256(data).hexdigest()}
    file_id = new_id()
    stamp = await embedding_stamp(router, user_id, file_chunks, embedder)
    async with router.connect(user_id, files, file_bytes=True) as conn:
        row = (await conn.execute(files.insert().values(
            id=file_id, user_id=user_id, filename=name, mime_type=media_type, size=len(data),
            status="error" if index.error else "ready", error=index.error,
            metadata=metadata, content=data,
        ).returning(*_COLUMNS))).one()
        if index.chunks:
            await conn.execute(file_chunks.insert(), [
                {"id": new_id(), "file_id": file_id, "user_id": user_id, "chunk_index": number,
                 "content": chunk, "embedding": embedding, **stamp.next_to(embedding)}
                for number, (chunk, embedding) in enumerate(
                    zip(index.chunks, (None if is_zero(v) else v for v in index.vectors),
                        strict=True))])
    return _READER.read(row)


async def read_file_content(router: Router, user_id: str,
                            file_id: UUID) -> tuple[dict[str, Any], bytes]:
    """The file's metadata and its bytes."""
    async with router.connect(user_id, files) as conn:
        row = (await conn.execute(select(*_WITH_CONTENT.columns).where(
            files.c.id == file_id, files.c.user_id == user_id))).first()
    if row is None:
        raise NotFound("file not found")
    meta = _WITH_CONTENT.read(row)
    content = meta.pop("content")
    if content is None:
        raise NotFound("this file has no stored content")
    return meta, bytes(content)
