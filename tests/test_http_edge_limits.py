"""The HTTP edge: bodies are size-limited before they are read, an unsafe API request is
authenticated before its body is read, and the access log writes one line per request
(DESIGN.md §6). Bodies are real streams: async generators httpx pulls from only when the
app asks for more, so counting the chunks pulled shows how much the app read."""

from __future__ import annotations

import base64
import json
import logging
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from fastapi.routing import APIRoute

from byodb.content.limits import MAX_FILE_BYTES, MAX_INLINE_BYTES, MAX_MESSAGE_CHARS
from byodb.web.deps import get_principal
from byodb.web.edge_limits import SAFE_METHODS, BodyLimits
from tests.conftest import Api, count_rows

CHUNK = 64 * 1024
HUGE = 300 * 1024 * 1024  # the reported attack: a 300 MB JSON body


class Stream:
    """A body of ``total`` bytes in 64 KiB chunks that counts how many were pulled."""

    def __init__(self, total: int, *, first: bytes = b'{"title": "'):
        self.total = total
        self.first = first
        self.pulled = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        sent = 0
        while sent < self.total:
            chunk = self.first if sent == 0 else b"a" * min(CHUNK, self.total - sent)
            self.pulled += 1
            sent += len(chunk)
            yield chunk

    @property
    def bytes_pulled_at_most(self) -> int:
        return self.pulled * CHUNK


def limits(api: Api) -> BodyLimits:
    return BodyLimits.from_settings(api.settings)


def assert_error(response: Any, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"]["code"] == code
    assert body["error"]["message"]


def conversations_on_main(main_url: str, user: str) -> int:
    return count_rows(main_url, "select count(*) from byodb.conversations where user_id = %s",
                      user)


# -- 1. size limits ----------------------------------------------------------------------


async def test_a_body_declared_too_large_is_refused_before_a_byte_is_read(
        api: Api, main_url: str) -> None:
    stream = Stream(HUGE)
    response = await api.client.post("/api/conversations", content=stream,
                              headers={**api.headers("ann"), "Content-Length": str(HUGE),
                                       "Content-Type": "application/json"})
    assert_error(response, 413, "payload_too_large")
    assert str(limits(api).json) in response.json()["error"]["message"]
    assert stream.pulled == 0
    assert conversations_on_main(main_url, "ann") == 0


async def test_a_chunked_body_is_cut_off_at_the_limit_and_the_rest_never_read(
        api: Api, main_url: str) -> None:
    stream = Stream(HUGE)  # no Content-Length: httpx sends it chunked
    response = await api.client.post("/api/conversations", content=stream,
                              headers={**api.headers("ann"),
                                       "Content-Type": "application/json"})
    assert_error(response, 413, "payload_too_large")
    limit = limits(api).json
    # Pulled: up to the chunk that passed the limit, and not one more.
    assert limit < stream.bytes_pulled_at_most <= limit + 2 * CHUNK
    assert conversations_on_main(main_url, "ann") == 0


async def test_an_unauthenticated_large_body_gets_its_401_unread(
        api: Api, main_url: str) -> None:
    chunked = Stream(HUGE)
    response = await api.client.post("/api/conversations", content=chunked,
                              headers={"Content-Type": "application/json"})
    assert_error(response, 401, "unauthenticated")
    assert chunked.pulled == 0

    forged = Stream(HUGE)
    response = await api.client.post("/api/conversations", content=forged,
                              headers={"Content-Type": "application/json",
                                       "Authorization": "Bearer not-a-token"})
    assert_error(response, 401, "unauthenticated")
    assert forged.pulled == 0

    # Declared too large: refused on the header alone, before any credential check.
    declared = Stream(HUGE)
    response = await api.client.post("/api/conversations", content=declared,
                              headers={"Content-Type": "application/json",
                                       "Content-Length": str(HUGE)})
    assert_error(response, 413, "payload_too_large")
    assert declared.pulled == 0
    assert count_rows(main_url, "select count(*) from byodb.conversations") == 0


async def test_an_upload_above_the_upload_limit_is_refused_unread(
        api: Api, main_url: str) -> None:
    limit = limits(api).upload
    declared = Stream(limit + 1, first=b"--b\r\n")
    response = await api.client.post("/api/files", content=declared, headers={
        **api.headers("ann"), "Content-Length": str(limit + 1),
        "Content-Type": "multipart/form-data; boundary=b"})
    assert_error(response, 413, "payload_too_large")
    assert declared.pulled == 0

    part = (b'--b\r\nContent-Disposition: form-data; name="file"; filename="x.png"\r\n'
            b"Content-Type: image/png\r\n\r\n\x89PNG\r\n\x1a\n")
    chunked = Stream(HUGE, first=part)
    response = await api.client.post("/api/files", content=chunked, headers={
        **api.headers("ann"), "Content-Type": "multipart/form-data; boundary=b"})
    assert_error(response, 413, "payload_too_large")
    assert chunked.bytes_pulled_at_most <= limit + 2 * CHUNK
    assert count_rows(main_url, "select count(*) from byodb.files") == 0


async def test_bodies_within_the_limits_still_work(api: Api) -> None:
    created = await api.post("/api/conversations", "ann", json={"title": "hello"})
    assert created.status_code == 201, created.text

    # The largest message, every character escaped as a surrogate pair (12 bytes each, the
    # costliest valid JSON): about 1.2 MB, within the JSON limit.
    content = "\U0001f600" * MAX_MESSAGE_CHARS
    body = json.dumps({"title": "big", "content": content}, ensure_ascii=True).encode()
    assert len(body) > 1024 * 1024
    note = await api.client.post("/api/notes", content=body,
                          headers={**api.headers("ann"), "Content-Type": "application/json"})
    assert note.status_code == 201, note.text[:300]

    # Inline bytes at their limit: 5 MiB of audio as base64 in JSON.
    audio = base64.b64encode(b"\x00" * MAX_INLINE_BYTES).decode()
    stored = await api.post("/api/tts-cache", "ann", json={
        "hash": "h1", "text": "hi", "voice": "v", "audio": audio})
    assert stored.status_code == 201, stored.text[:300]

    # A file at MAX_FILE_BYTES through multipart.
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * (MAX_FILE_BYTES - 8)
    uploaded = await api.post("/api/files", "ann",
                              files={"file": ("big.png", png, "image/png")})
    assert uploaded.status_code == 201, uploaded.text[:300]
    assert uploaded.json()["size"] == MAX_FILE_BYTES


async def test_configured_limits_apply(settings: Any, main_url: str) -> None:
    import httpx

    from byodb.web.app import create_app

    small = settings.model_copy(update={"max_json_body_bytes": 1000})
    app = create_app(small, main_url=main_url, migrate=False, run_worker=False)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://byodb.test") as client:
        api = Api(app, client, small)
        ok = await api.post("/api/conversations", "ann", json={"title": "t" * 500})
        assert ok.status_code == 201, ok.text
        refused = await api.post("/api/conversations", "ann",
                                 json={"title": "t", "system_prompt": "s" * 2000})
        assert_error(refused, 413, "payload_too_large")
    assert conversations_on_main(main_url, "ann") == 1


# -- guards: the route kinds and the early sign-in check match the routes ------------------


def _schema(openapi: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if ref:
        return dict(openapi["components"]["schemas"][ref.rsplit("/", 1)[-1]])
    return schema


def _carries_base64(openapi: dict[str, Any], schema: dict[str, Any]) -> bool:
    for prop in _schema(openapi, schema).get("properties", {}).values():
        options = [prop, *prop.get("anyOf", [])]
        if any(str(o.get("description", "")).startswith("base64") for o in options):
            return True
    return False


async def test_every_route_with_base64_in_its_body_gets_the_inline_limit(api: Api) -> None:
    openapi = api.app.openapi()
    inline_routes = []
    for path, operations in openapi["paths"].items():
        for method, operation in operations.items():
            content = operation.get("requestBody", {}).get("content", {})
            schema = content.get("application/json", {}).get("schema")
            if schema and _carries_base64(openapi, schema):
                concrete = re.sub(r"\{[^}]+\}", "00000000-0000-0000-0000-000000000000", path)
                inline_routes.append((method, path))
                assert limits(api).for_path(concrete)[0] == "inline", (method, path)
    assert inline_routes, "expected attachments and the TTS cache to carry base64"


def _needs_principal(dependant: Any) -> bool:
    return any(dep.call is get_principal or _needs_principal(dep)
               for dep in dependant.dependencies)


async def test_every_unsafe_api_route_requires_sign_in_anyway(api: Api) -> None:
    """The edge refuses unauthenticated unsafe /api requests early; that must refuse
    nothing a route would have accepted."""
    for route in api.app.routes:
        if isinstance(route, APIRoute) and route.path.startswith("/api/") and \
                set(route.methods or ()) - SAFE_METHODS:
            assert _needs_principal(route.dependant), route.path


# -- 2. log forging ----------------------------------------------------------------------


async def test_one_request_writes_one_log_line_without_control_characters(
        api: Api, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="byodb.access")
    forged = "/x%0AERROR%20byodb%20forged%0D%00%1B%7F%C2%85%E2%80%A8end"
    response = await api.get(forged)
    assert response.status_code == 404
    records = [r for r in caplog.records if r.name == "byodb.access"]
    assert len(records) == 1
    line = records[0].getMessage()
    assert not re.search(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]", line), repr(line)
    assert line.startswith("GET /x\\x0aERROR byodb forged\\x0d\\x00\\x1b\\x7f\\x85"
                           "\\u2028end 404 ")
    assert len(line.splitlines()) == 1


# -- over a real socket: the reported attack -----------------------------------------------


async def _raw_request(port: int, head: str) -> bytes:
    """Send only a request head; return what the server answers before any body."""
    import asyncio

    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head.replace("\n", "\r\n").encode() + b"\r\n")
        await writer.drain()
        return await asyncio.wait_for(reader.read(4096), 3)
    finally:
        writer.close()


async def test_the_300_mb_unauthenticated_post_is_answered_at_once_over_a_real_socket(
        settings: Any, main_url: str) -> None:
    import asyncio
    import socket

    import httpx
    import uvicorn

    from byodb.web.app import create_app

    app = create_app(settings, main_url=main_url, migrate=False, run_worker=False)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", access_log=False))
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:
            await asyncio.sleep(0.05)
        # A client that waits for "100 Continue" before a big body (curl does) gets the
        # final answer instead: the server never asked for the body.
        for framing, status in ((f"Content-Length: {HUGE}", b"413"),
                                ("Transfer-Encoding: chunked", b"401")):
            answer = await _raw_request(port, (
                "POST /api/conversations HTTP/1.1\nHost: byodb.test\n"
                f"Content-Type: application/json\nExpect: 100-continue\n{framing}\n"))
            assert answer.startswith(b"HTTP/1.1 " + status), answer[:200]

        # A client that just sends: the server answers and closes without reading the
        # 300 MB (the client may see the answer or a reset, its socket buffers full). What
        # shows it is how much of the body was pulled, not a clock.
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            stream = Stream(HUGE)
            try:
                response = await client.post("/api/conversations", content=stream,
                                             headers={"Content-Type": "application/json"})
                assert response.status_code == 401, response.text
            except httpx.TransportError:
                pass
            assert stream.bytes_pulled_at_most < 32 * 1024 * 1024, stream.pulled
            assert (await client.get("/healthz")).status_code == 200
    finally:
        server.should_exit = True
        await serving
    assert count_rows(main_url, "select count(*) from byodb.conversations") == 0
