"""Files: the bytes live on the database that holds the user's content; text is chunked and
embedded; wrong types and oversized uploads are refused and store nothing."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from tests.conftest import Api, count_rows
from tests.placement import PLACEMENTS, Placed, content_count, place_user

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


@pytest.fixture(params=PLACEMENTS)
async def ann(request: pytest.FixtureRequest, api: Api, main_url: str,
              user_db_url: str) -> Placed:
    return await place_user(api, f"ann-{uuid.uuid4().hex[:6]}", request.param, main_url,
                            user_db_url)


def _manual() -> bytes:
    paragraphs = [f"## Step {n}\n\nCheck valve number {n} and write the pressure reading in "
                  f"the logbook before opening the next one." for n in range(1, 60)]
    return ("# Boiler maintenance\n\n" + "\n\n".join(paragraphs)).encode()


async def test_a_text_file_is_stored_chunked_and_served_back_from_the_users_database(
        api: Api, ann: Placed) -> None:
    data = _manual()
    uploaded = await api.post("/api/files", ann.user,
                              files={"file": ("boiler.md", data, "text/markdown")})
    assert uploaded.status_code == 201, uploaded.text
    meta = uploaded.json()
    assert (meta["filename"], meta["mime_type"], meta["size"], meta["status"]) == \
        ("boiler.md", "text/markdown", len(data), "ready")
    assert "content" not in meta
    chunks = meta["metadata"]["chunks"]
    assert chunks > 1 and meta["metadata"]["truncated"] is False

    # The bytes and every chunk (with its embedding) are on the user's database only.
    assert count_rows(ann.url, "select count(*) from byodb.files where id = %s and "
                      "content = %s", meta["id"], data) == 1
    assert count_rows(ann.url, "select count(*) from byodb.file_chunks where file_id = %s "
                      "and embedding is not null", meta["id"]) == chunks
    assert content_count(ann.elsewhere, "files", ann.user) == 0
    assert content_count(ann.elsewhere, "file_chunks", ann.user) == 0

    listed = (await api.get("/api/files", ann.user)).json()["items"]
    assert [f["id"] for f in listed] == [meta["id"]]
    assert (await api.get(f"/api/files/{meta['id']}", ann.user)).json() == meta
    downloaded = await api.get(f"/api/files/{meta['id']}/content", ann.user)
    assert downloaded.status_code == 200 and downloaded.content == data
    assert downloaded.headers["content-type"] == "text/markdown; charset=utf-8"
    assert downloaded.headers["x-content-type-options"] == "nosniff"
    assert "boiler.md" in downloaded.headers["content-disposition"]

    deleted = await api.request("DELETE", f"/api/files/{meta['id']}", ann.user)
    assert deleted.status_code == 204
    assert content_count(ann.url, "files", ann.user) == 0
    assert content_count(ann.url, "file_chunks", ann.user) == 0
    assert (await api.get(f"/api/files/{meta['id']}", ann.user)).status_code == 404


async def test_an_image_is_stored_as_is_without_chunks(api: Api, main_url: str) -> None:
    uploaded = await api.post("/api/files", "bo", files={"file": ("photo.png", PNG,
                                                                 "image/png")})
    assert uploaded.status_code == 201, uploaded.text
    meta = uploaded.json()
    assert (meta["status"], meta["metadata"]["chunks"]) == ("ready", 0)
    assert content_count(main_url, "file_chunks", "bo") == 0
    downloaded = await api.get(f"/api/files/{meta['id']}/content", "bo")
    assert downloaded.content == PNG and downloaded.headers["content-type"] == "image/png"


async def test_a_generic_type_is_taken_from_the_file_name(api: Api, main_url: str) -> None:
    uploaded = await api.post("/api/files", "bo", files={
        "file": ("data.csv", b"city,population\nOslo,700000\n", "application/octet-stream")})
    assert uploaded.status_code == 201, uploaded.text
    assert uploaded.json()["mime_type"] == "text/csv"


async def test_unsupported_or_mislabelled_files_are_refused_with_415_and_store_nothing(
        api: Api, main_url: str) -> None:
    for name, data, media_type in (
            ("page.html", b"<script>alert(1)</script>", "text/html"),
            ("setup.exe", b"MZ\x90\x00", "application/x-msdownload"),
            ("fake.png", b"<html>not a picture</html>", "image/png"),
            ("blob.bin", b"\x00\x01\x02", "application/octet-stream"),
            ("binary.txt", b"text\x00with a NUL", "text/plain"),
    ):
        refused = await api.post("/api/files", "cy", files={"file": (name, data, media_type)})
        assert refused.status_code == 415, name
        assert refused.json()["error"]["code"] == "unsupported_media_type"
        assert "text/plain" in refused.json()["error"]["message"] or "match" in \
            refused.json()["error"]["message"]
    assert count_rows(main_url, "select count(*) from byodb.files") == 0


async def test_a_file_over_10_mib_is_refused_with_413_and_stores_nothing(
        api: Api, main_url: str) -> None:
    too_big = b"a" * (10 * 1024 * 1024 + 1)
    refused = await api.post("/api/files", "di", files={"file": ("big.txt", too_big,
                                                                 "text/plain")})
    assert refused.status_code == 413
    assert refused.json()["error"]["code"] == "payload_too_large"
    assert count_rows(main_url, "select count(*) from byodb.files") == 0


async def test_a_streamed_upload_without_a_length_is_cut_off_at_the_limit(
        api: Api, main_url: str) -> None:
    """A chunked body announces no size; it is refused once it passes the limit."""
    boundary = "byodb-test-boundary"

    async def body() -> AsyncIterator[bytes]:
        yield (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
               f"filename=\"big.txt\"\r\nContent-Type: text/plain\r\n\r\n").encode()
        for _ in range(11):
            yield b"a" * (1024 * 1024)
        yield f"\r\n--{boundary}--\r\n".encode()

    refused = await api.client.post("/api/files", content=body(), headers={
        **api.headers("di"), "Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert refused.status_code == 413
    assert refused.json()["error"]["code"] == "payload_too_large"
    assert count_rows(main_url, "select count(*) from byodb.files") == 0


async def test_empty_or_missing_files_are_refused(api: Api, main_url: str) -> None:
    empty = await api.post("/api/files", "di", files={"file": ("empty.txt", b"", "text/plain")})
    assert empty.status_code == 422 and empty.json()["error"]["code"] == "invalid_input"
    missing = await api.post("/api/files", "di", data={"note": "no file here"})
    assert missing.status_code == 422
    assert count_rows(main_url, "select count(*) from byodb.files") == 0


async def test_another_users_file_is_not_found_and_stays(api: Api, main_url: str) -> None:
    meta = (await api.post("/api/files", "owner", files={
        "file": ("secret.txt", b"the combination is 1234", "text/plain")})).json()
    for method, path in (("GET", f"/api/files/{meta['id']}"),
                         ("GET", f"/api/files/{meta['id']}/content"),
                         ("DELETE", f"/api/files/{meta['id']}"),
                         ("GET", f"/api/files/{uuid.uuid4()}")):
        response = await api.request(method, path, "intruder")
        assert response.status_code == 404, (method, path)
        assert response.json()["error"]["code"] == "not_found"
    assert (await api.get("/api/files", "intruder")).json()["items"] == []
    assert content_count(main_url, "files", "owner") == 1
    assert content_count(main_url, "file_chunks", "owner") == 1
