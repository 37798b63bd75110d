"""Hostile imports (issue 17) against the real app: refused early and clearly, nothing
written, the server's memory bounded, other users and connection tests unaffected."""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psutil
import psycopg
import pytest

from byodb.settings import Settings
from tests.conftest import Api, count_rows, running_app
from tests.portability_support import (
    finished,
    nothing_written,
    refused,
    upload,
    zip_of,
)

MANIFEST = json.dumps({"format": "byodb-export", "format_version": 1, "files": {}}).encode()


def spool_empty(settings: Settings) -> bool:
    root = settings.data_dir.resolve() / "tmp" / "imports"
    return not root.exists() or not any(root.iterdir())


def huge_line() -> bytes:
    """17 KB zipped: one 16 MB row ``{"title":[{},{},…]}`` (issue 17)."""
    row = b'{"title":[' + b"{}," * (16 * 1024 * 1024 // 3 - 10) + b'{}]}\n'
    return zip_of({"manifest.json": MANIFEST, "tables/conversations.jsonl": row})


def huge_conversation() -> bytes:
    """About 30 MB of one ChatGPT conversation (a mapping of 250,000 empty nodes), zipped."""
    nodes = ",".join(f'"n{i}":{{"id":"n{i}","parent":null,"children":[],"message":null}}'
                     for i in range(250_000))
    data = ('[{"id":"c","title":"t","mapping":{' + nodes + "}}]").encode()
    return zip_of({"conversations.json": data})


async def test_nesting_deeper_than_the_limit_is_422_not_a_crash(api: Api, main_url: str) -> None:
    deep = b"[" * 100_000
    for data, where in [
            (zip_of({"manifest.json": MANIFEST, "tables/conversations.jsonl": deep}),
             "tables/conversations.jsonl row 1"),
            (zip_of({"manifest.json": deep}), "manifest.json value 1"),
            (zip_of({"conversations.json": b"[" + deep}), "conversations.json conversation 1")]:
        message = await refused(api, "ada", data, 422, "import_limit_exceeded")
        assert message.startswith(where), message
        assert "nest deeper than 64 levels" in message
    assert nothing_written(main_url, "ada")
    assert spool_empty(api.settings)


async def test_a_row_of_sixteen_megabytes_is_refused_at_the_limit_it_breaks(
        api: Api, main_url: str) -> None:
    data = huge_line()
    assert len(data) < 64 * 1024
    message = await refused(api, "bo", data, 422, "import_limit_exceeded")
    assert message == ("tables/conversations.jsonl row 1 at title[100000]: an object or array "
                       "has more than 100000 members")
    assert nothing_written(main_url, "bo")


async def test_a_huge_chatgpt_conversation_is_refused_at_its_value_limit(
        api: Api, main_url: str) -> None:
    message = await refused(api, "cid", huge_conversation(), 422, "import_limit_exceeded")
    assert message.startswith("conversations.json conversation 1 at mapping.n"), message
    assert message.endswith("more than 300000 values in one conversation")
    assert nothing_written(main_url, "cid")


async def test_a_string_or_row_count_over_the_limit_is_named(api: Api, main_url: str) -> None:
    long_title = json.dumps({"title": "x" * (9 * 1024 * 1024)}).encode()
    message = await refused(api, "dot", zip_of({"manifest.json": MANIFEST,
                                                "tables/conversations.jsonl": long_title}),
                            422, "import_limit_exceeded")
    assert message == ("tables/conversations.jsonl row 1 at title: a string is longer than "
                       "8388608 characters")
    assert nothing_written(main_url, "dot")


def _multipart(boundary: str, data: bytes) -> tuple[bytes, bytes]:
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"export.zip\"\r\nContent-Type: application/zip\r\n\r\n").encode()
    return head + data, f"\r\n--{boundary}--\r\n".encode()


async def held_upload(api: Api, user: str, release: asyncio.Event,
                      data: bytes = b"[]") -> Any:
    """An upload whose body stops after its first bytes until ``release`` is set (a slow
    client): the request starts, and stays in its receiving phase meanwhile."""
    boundary = uuid.uuid4().hex
    first, last = _multipart(boundary, data)

    async def body() -> AsyncIterator[bytes]:
        yield first
        await release.wait()
        yield last

    return await api.client.post("/api/import", content=body(), headers={
        **api.headers(user), "Content-Type": f"multipart/form-data; boundary={boundary}"})


async def wait_for_phase(api: Api, user: str, phase: str) -> dict[str, Any]:
    for _ in range(300):
        items = (await api.get("/api/import", user)).json()["items"]
        if items and items[0].get("phase") == phase:
            job: dict[str, Any] = items[0]
            return job
        await asyncio.sleep(0.05)
    raise AssertionError(f"no import of {user} reached {phase}")


async def test_a_second_upload_of_a_user_is_409_before_its_body_is_read(
        api: Api, main_url: str) -> None:
    release = asyncio.Event()
    first = asyncio.create_task(held_upload(api, "eli", release))
    job = await wait_for_phase(api, "eli", "Receiving")
    # The second upload's body never ends: the answer comes before it is read.
    second = await held_upload(api, "eli", asyncio.Event())
    assert second.status_code == 409, second.text
    assert second.json()["error"]["code"] == "conflict"
    assert job["id"] in second.json()["error"]["hint"]
    release.set()
    done = await finished(api, "eli", await first)
    assert done["status"] == "completed" and done["result"]["created"] == 0
    assert count_rows(main_url, "select count(*) from jobs where user_id = %s and kind = 'import'",
                      "eli") == 1


@pytest.fixture
def capped(tmp_path: Path) -> Settings:
    return Settings(BYODB_DATA_DIR=tmp_path / "data", BYODB_ENV="development",
                    BYODB_ALLOW_PRIVATE_HOSTS=True, BYODB_TEST_RATE_LIMIT=1000,
                    BYODB_MAX_RUNNING_IMPORTS=1, BYODB_IMPORT_BYTES_PER_DAY=200_000)


async def test_the_global_cap_and_the_daily_allowance_hold(capped: Settings,
                                                           main_url: str) -> None:
    async with running_app(capped, main_url) as api:
        release = asyncio.Event()
        first = asyncio.create_task(held_upload(api, "fin", release))
        await wait_for_phase(api, "fin", "Receiving")
        busy = await held_upload(api, "gia", asyncio.Event())
        assert busy.status_code == 503, busy.text
        assert busy.json()["error"]["code"] == "imports_busy"
        release.set()
        assert (await finished(api, "fin", await first))["status"] == "completed"

        # 200,000 bytes a day: the second upload stops where the allowance ends, the third
        # is refused before it starts.
        padded = b"[" + b" " * 150_000 + b"]"
        ok = await finished(api, "gia", await upload(api, "gia", padded, "conversations.json"))
        assert ok["status"] == "completed"
        over = await upload(api, "gia", padded, "conversations.json")
        assert over.status_code == 413, over.text
        assert "still import today" in over.json()["error"]["message"]
        spent = await upload(api, "gia", b"[]", "conversations.json")
        assert spent.status_code == 429, spent.text
        assert spool_empty(capped)


def _private_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as rollup:
            return sum(int(line.split()[1]) for line in rollup
                       if line.startswith(("Private_Clean:", "Private_Dirty:")))
    except OSError:
        return 0  # it ended meanwhile


def server_memory_kb(api: Api) -> int:
    """The server's memory: this process's resident set (the app runs in it) plus what its
    import workers (forked from it, sharing the rest) hold of their own."""
    workers: set[int] = api.app.state.imports.workers.pids
    return int(psutil.Process().memory_info().rss // 1024
               + sum(_private_kb(pid) for pid in list(workers)))


async def test_hostile_imports_leave_other_users_and_the_servers_memory_alone(
        api: Api, main_url: str, user_db_url: str) -> None:
    await api.post("/api/conversations", "kim", json={"title": "kim's"})
    # Made before the baseline: they are the client's memory, not the server's.
    hostile = [huge_line(), huge_conversation(), zip_of({
        "manifest.json": MANIFEST, "tables/messages.jsonl": b"[" * 100_000})]
    # Warm up: the import machinery has run once before the baseline is taken.
    await finished(api, "kim", await upload(api, "kim", b"[]", "conversations.json"))
    baseline = server_memory_kb(api)
    peak = baseline
    sampling = True

    async def sample() -> None:
        nonlocal peak
        while sampling:
            peak = max(peak, server_memory_kb(api))
            await asyncio.sleep(0.02)

    sampler = asyncio.create_task(sample())
    # Seven uploads by one user while the first is still arriving (six are 409 at once),
    # and hostile files of three other users.
    release = asyncio.Event()
    first = asyncio.create_task(held_upload(api, "lou", release, hostile[0]))
    await wait_for_phase(api, "lou", "Receiving")
    uploads = [upload(api, "lou", hostile[i % 3]) for i in range(1, 7)]
    uploads += [upload(api, f"mo{i}", hostile[i]) for i in range(3)]
    running = asyncio.gather(*uploads)
    running.add_done_callback(lambda _: release.set())
    # Meanwhile another user lists their conversations and tests a connection by host name.
    localhost = user_db_url.replace("@127.0.0.1:", "@localhost:")
    others = []
    while not (running.done() and first.done()):
        listed = await api.get("/api/conversations", "kim")
        tested = await api.post("/api/byod/test", "kim", json={"url": localhost})
        others.append((listed.status_code, tested.json().get("code")))
        await asyncio.sleep(0.05)
    answers = [await first, *await running]
    sampling = False
    await sampler

    assert [r.status_code for r in answers[:7]] == [422] + [409] * 6
    assert [r.status_code for r in answers[7:]] == [422, 422, 422]
    assert all(r.json()["error"]["code"] in ("import_limit_exceeded", "conflict")
               for r in answers)
    assert others and all(o == (200, "ok") for o in others), others
    for user in ("lou", "mo0", "mo1", "mo2"):
        assert nothing_written(main_url, user)
    assert count_rows(main_url, "select count(*) from jobs where user_id = 'lou' "
                      "and kind = 'import'") == 1
    assert spool_empty(api.settings)
    grown_mb = (peak - baseline) / 1024
    assert grown_mb < 100, f"the server grew by {grown_mb:.0f} MB"


async def test_an_import_interrupted_by_a_crash_says_so_after_a_restart(
        settings: Settings, main_url: str) -> None:
    # What a process that died while writing leaves: a running job whose heartbeat stopped
    # long ago, and its spooled rows.
    job_id = uuid.uuid4()
    with psycopg.connect(main_url, autocommit=True) as conn:
        conn.execute("insert into jobs (id, kind, user_id, status, detail, created_at, "
                     "updated_at) values (%s, 'import', 'nia', 'running', %s, "
                     "now() - interval '10 minutes', now() - interval '5 minutes')",
                     (job_id, json.dumps({"phase": "Writing messages", "total": 10,
                                          "written": 5, "bytes": 100})))
    spool = settings.data_dir.resolve() / "tmp" / "imports" / str(job_id)
    spool.mkdir(parents=True)
    (spool / "messages.copy").write_bytes(b"rows\n")
    async with running_app(settings, main_url) as api:
        job = (await api.get(f"/api/import/{job_id}", "nia")).json()
        assert job["status"] == "failed"
        assert job["error"]["code"] == "import_interrupted"
        assert job["written"] == 5 and job["total"] == 10  # how far it had come
        assert not spool.exists()
        assert nothing_written(main_url, "nia")
        # Not the user's own: another user cannot read it.
        assert (await api.get(f"/api/import/{job_id}", "oto")).status_code == 404
        # And the user may import again at once.
        again = await finished(api, "nia", await upload(api, "nia", b"[]",
                                                        "conversations.json"))
        assert again["status"] == "completed"


async def test_an_import_stopped_with_the_server_is_failed_and_wrote_nothing(
        settings: Settings, main_url: str) -> None:
    conversations = [{"id": f"c{i}", "title": f"t{i}", "mapping": {
        f"n{j}": {"id": f"n{j}", "parent": None, "children": [], "message": {
            "author": {"role": "user"}, "create_time": 1.0,
            "content": {"content_type": "text", "parts": [f"message {j} " * 50]}}}
        for j in range(20)}} for i in range(2000)]
    data = json.dumps(conversations).encode()
    async with running_app(settings, main_url) as api:
        started = await upload(api, "pia", data, "conversations.json")
        assert started.status_code == 202, started.text
        job_id = started.json()["id"]
    # The server stopped (its lifespan ended) while the import was being written.
    async with running_app(settings, main_url) as api:
        job = (await api.get(f"/api/import/{job_id}", "pia")).json()
    assert job["status"] == "failed", job
    assert job["error"]["code"] == "import_interrupted"
    assert nothing_written(main_url, "pia")
    assert spool_empty(settings)


async def test_a_busy_default_thread_pool_does_not_stop_a_connection_test_by_host_name(
        api: Api, user_db_url: str) -> None:
    # Every thread of asyncio's default pool is taken (as parsing once took them): the URL
    # guard resolves host names on a pool of its own, so the test still answers.
    loop = asyncio.get_running_loop()
    gate = threading.Event()
    blocked = [loop.run_in_executor(None, gate.wait, 60) for _ in range(64)]
    try:
        localhost = user_db_url.replace("@127.0.0.1:", "@localhost:")
        tested = (await api.post("/api/byod/test", "quy", json={"url": localhost})).json()
        assert tested["code"] == "ok", tested
    finally:
        gate.set()
        await asyncio.gather(*blocked)
