"""One uploaded file of a ``multipart/form-data`` body, streamed straight to where it goes.

Starlette's ``request.form()`` spools every file to a temporary file of its own choosing
first (so a large import was once written to disk twice, outside the data directory). Here
the body is parsed as it arrives (``python-multipart``'s streaming parser) and the one
allowed file field is written to ``dest`` in the caller's I/O pool, counted against a
limit; any other field, a second file or a malformed body is refused.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from python_multipart.multipart import MultipartParser, MultipartState, parse_options_header
from starlette.requests import ClientDisconnect, Request

from byodb.errors import ByodbError, InvalidInput
from byodb.executors import IoThreads

_FLUSH = 1024 * 1024


def upload_schema(description: str) -> dict[str, Any]:
    """The OpenAPI ``requestBody`` of a route taking one file in the multipart field
    ``file`` and nothing else (``description`` says what the file may be)."""
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
        "type": "object", "required": ["file"], "additionalProperties": False,
        "properties": {"file": {"type": "string", "format": "binary",
                                "description": description}},
    }}}}}


class UploadTooLarge(ByodbError):
    code = "import_too_large"
    status = 413


class _Part:
    def __init__(self) -> None:
        self.header_field = b""
        self.header_value = b""
        self.name: str | None = None
        self.is_file = False


async def receive_file(request: Request, dest: Path, io_threads: IoThreads, *, field: str,
                       limit: int, too_large: str,
                       progress: Callable[[int], None] | None = None) -> int:
    """Write the form's file field ``field`` to ``dest``; its size. ``too_large`` is the
    message of the 413 once the file passes ``limit`` bytes. ``progress`` hears the bytes
    received so far, at least once a megabyte and once at the end, refused or not."""
    content_type, options = parse_options_header(request.headers.get("content-type", ""))
    boundary = options.get(b"boundary")
    if content_type != b"multipart/form-data" or not boundary:
        raise InvalidInput(f"send the file as multipart/form-data in a field named {field}")
    parts: list[_Part] = []
    pending = bytearray()
    size = 0
    failure: list[ByodbError] = []

    def on_part_begin() -> None:
        parts.append(_Part())

    def on_header_field(data: bytes, start: int, end: int) -> None:
        parts[-1].header_field += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        parts[-1].header_value += data[start:end]

    def on_header_end() -> None:
        part = parts[-1]
        if part.header_field.lower() == b"content-disposition":
            _, params = parse_options_header(part.header_value)
            name = params.get(b"name")
            part.name = name.decode("latin-1") if name is not None else None
            part.is_file = b"filename" in params
        part.header_field = part.header_value = b""

    def on_headers_finished() -> None:
        part = parts[-1]
        if part.name != field:
            shown = (part.name or "")[:100].encode("unicode_escape").decode()
            failure.append(InvalidInput(f"{shown}: Extra inputs are not permitted"))
        elif sum(1 for p in parts if p.name == field) > 1:
            failure.append(InvalidInput(f"send one file in the field {field}"))
        elif not part.is_file:
            failure.append(InvalidInput(f"{field} must be a file"))

    def on_part_data(data: bytes, start: int, end: int) -> None:
        nonlocal size
        if failure:
            return
        size += end - start
        if size > limit:
            failure.append(UploadTooLarge(too_large))
            return
        pending.extend(data[start:end])

    parser = MultipartParser(boundary, {  # type: ignore[arg-type]
        "on_part_begin": on_part_begin, "on_header_field": on_header_field,
        "on_header_value": on_header_value, "on_header_end": on_header_end,
        "on_headers_finished": on_headers_finished, "on_part_data": on_part_data})
    handle: IO[bytes] = await io_threads.run(dest.open, "wb")
    try:
        async for chunk in request.stream():
            try:
                parser.write(chunk)
            except Exception as exc:  # python-multipart's errors name no user value
                raise InvalidInput(f"the multipart body is malformed ({type(exc).__name__})")\
                    from None
            if failure:
                raise failure[0]
            if len(pending) >= _FLUSH:
                data = bytes(pending)
                pending.clear()
                await io_threads.run(handle.write, data)
                if progress is not None:
                    progress(size)
        parser.finalize()
        if failure:
            raise failure[0]
        if parser.state not in (MultipartState.END, MultipartState.BOUNDARY_PADDING):
            raise InvalidInput("the upload ended before its closing boundary")
        if not any(p.name == field for p in parts):
            raise InvalidInput(f"send the file as multipart/form-data in a field named {field}")
        if pending:
            await io_threads.run(handle.write, bytes(pending))
    except ClientDisconnect:
        raise InvalidInput("the upload was cut off before it ended") from None
    finally:
        if progress is not None:
            progress(size)
        await io_threads.run(handle.close)
    return size
