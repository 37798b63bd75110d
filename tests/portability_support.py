"""Helpers of the export and import tests: content to export, the archive, its tables."""

from __future__ import annotations

import asyncio
import io
import json
import zipfile
from typing import Any

import psycopg

from tests.conftest import Api, count_rows

FILE_BYTES = b"# Boiler notes\n\nBleed the radiators every autumn.\n" * 40


async def seed_content(api: Api, user: str) -> dict[str, Any]:
    """A conversation with a branch (an edited question), a note, a memory and a file."""
    conversation = (await api.post("/api/conversations", user,
                                   json={"title": "Boiler questions"})).json()
    path = f"/api/conversations/{conversation['id']}/messages"
    first = (await api.post(path, user, json={"content": "How do I bleed a radiator?"})).json()
    question = first["user_message"]["id"]
    await api.post(path, user, json={"content": "And how often?"})
    # Editing the second question: another reply to the first answer (a branch).
    answer = first["assistant_message"]["id"]
    edited = (await api.post(path, user, json={
        "content": "And how often for a towel radiator?", "parent_message_id": answer})).json()
    assert edited["user_message"]["parent_message_id"] == answer
    # The exchanges' embeddings and memories follow the replies.
    await api.app.state.runtime.after_work.settled()
    note = await api.post("/api/notes", user, json={"title": "Plumber", "content": "Call Ada"})
    assert note.status_code == 201, note.text
    memory = await api.post("/api/memories", user, json={"content": "Has a combi boiler"})
    assert memory.status_code == 201, memory.text
    uploaded = await api.post("/api/files", user,
                              files={"file": ("boiler.md", FILE_BYTES, "text/markdown")})
    assert uploaded.status_code == 201, uploaded.text
    return {"conversation": conversation, "question": question,
            "file": uploaded.json(), "note": note.json()}


async def export_zip(api: Api, user: str) -> zipfile.ZipFile:
    response = await api.get("/api/export", user)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    assert archive.testzip() is None
    return archive


def table_rows(archive: zipfile.ZipFile, table: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in archive.read(f"tables/{table}.jsonl").splitlines()]


def without_ids(archive: zipfile.ZipFile, table: str) -> list[str]:
    """The table's rows with every id, reference and the owner left out (an import into
    another account derives new ids), sorted: what must survive a round trip."""
    rows = []
    for row in table_rows(archive, table):
        kept = {k: v for k, v in row.items() if k != "user_id" and k != "id"
                and not k.endswith("_id") and not (table == "files" and k == "content")}
        rows.append(json.dumps(kept, sort_keys=True))
    return sorted(rows)


def zip_of(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


async def upload(api: Api, user: str, data: bytes, name: str = "export.zip") -> Any:
    return await api.post("/api/import", user, files={"file": (name, data,
                                                               "application/octet-stream")})


async def finished(api: Api, user: str, started: Any, *, timeout_s: float = 60) -> Any:
    """Poll the import until it is no longer running; its status."""
    assert started.status_code == 202, started.text
    job = started.json()
    for _ in range(int(timeout_s * 10)):
        job = (await api.get(f"/api/import/{job['id']}", user)).json()
        if job["status"] != "running":
            return job
        await asyncio.sleep(0.1)
    raise AssertionError(f"the import never finished: {job}")


def content_counts(url: str, user: str) -> dict[str, int]:
    """Rows per content table of ``user`` on the database at ``url``."""
    with psycopg.connect(url) as conn:
        tables = [r[0] for r in conn.execute(
            "select table_name from information_schema.tables where table_schema = 'byodb' "
            "and table_name <> 'byodb_meta'").fetchall()]
        return {t: conn.execute(f"select count(*) from byodb.{t} where user_id = %s",
                                (user,)).fetchone()[0] for t in tables}  # type: ignore[index]


async def connect_own_database(api: Api, user: str, url: str) -> None:
    saved = await api.put("/api/byod", user, json={"url": url})
    assert saved.status_code == 202, saved.text
    state = await api.wait_for_state(user, "connected", "error")
    assert state["connection_status"] == "connected", state


def nothing_written(main_url: str, user: str) -> bool:
    """No content of ``user``, and every import job of theirs ended ``failed`` (a refused
    upload is a failed job: its error stays readable) with its files gone."""
    return set(content_counts(main_url, user).values()) == {0} and count_rows(
        main_url, "select count(*) from jobs where user_id = %s and kind = 'import' "
        "and status <> 'failed'",
        user) == 0


async def refused(api: Api, user: str, data: bytes, status: int, code: str,
                  name: str = "export.zip") -> str:
    response = await upload(api, user, data, name)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code, error
    message: str = error["message"]
    return message
