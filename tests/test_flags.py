"""The operator's flags through the API (docs/byod.md, "Feature flags"): the kill switch
refuses new connections but never strands a connected user, the premium gate answers 402,
and with file storage off a BYOD user's uploads are refused — never kept on main."""

from __future__ import annotations

import asyncio
import base64
import json
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import jwt
import psycopg
import pytest

from byodb.maindb.embedded import PostgresCluster
from byodb.settings import Settings
from byodb.web.auth import (
    DEV_AUDIENCE,
    DEV_ISSUER,
    Authenticator,
    ensure_dev_secret,
    issue_dev_token,
)
from byodb.web.pages.rendering import adds_to
from tests.cli_support import run_cli
from tests.conftest import Api, count_rows, running_app
from tests.providers import provider_database


def app_with(settings: Settings, main_url: str, **flags: Any) -> AbstractAsyncContextManager[Api]:
    """The app on this test's main database, with some settings changed (a restart of the
    server with other environment variables)."""
    return running_app(settings.model_copy(update=flags), main_url, timeout_s=60)


def premium(api: Api, user_id: str) -> dict[str, str]:
    return {"Authorization": "Bearer " + issue_dev_token(api.settings, user_id, premium=True)}


def config_rows(main_url: str, user_id: str) -> int:
    return count_rows(main_url, "select count(*) from user_database_config "
                      "where user_id = %s", user_id)


async def connect(api: Api, user_id: str, url: str) -> None:
    assert (await api.put("/api/byod", user_id, json={"url": url})).status_code == 202
    state = await api.wait_for_state(user_id, "connected", "error")
    assert state["connection_status"] == "connected", state


@pytest.fixture
def second_db_url(user_server: PostgresCluster) -> str:
    """Another empty database of the user's (the target of a switch), made as providers
    make them."""
    return provider_database(user_server, prefix="second").url


async def test_kill_switch_refuses_new_connections_and_changes_nothing(
        settings: Settings, main_url: str, user_db_url: str) -> None:
    async with app_with(settings, main_url, byod_enabled=False) as api:
        state = (await api.get("/api/byod", "lou")).json()
        assert state["new_connections"]["allowed"] is False
        assert state["new_connections"]["code"] == "byod_disabled"
        for method, path in (("POST", "/api/byod/test"), ("PUT", "/api/byod")):
            refused = await api.request(method, path, "lou", json={"url": user_db_url})
            assert refused.status_code == 403, refused.text
            error = refused.json()["error"]
            assert error["code"] == "byod_disabled"
            assert "turned off" in error["message"]
        # Premium does not get past the kill switch.
        refused = await api.client.post("/api/byod/test", json={"url": user_db_url},
                                        headers=premium(api, "pam"))
        assert refused.json()["error"]["code"] == "byod_disabled"
        assert (await api.get("/api/byod", "lou")).json()["connection_status"] == "none"
    assert config_rows(main_url, "lou") == 0
    assert count_rows(user_db_url, "select count(*) from pg_namespace "
                      "where nspname = 'byodb'") == 0


async def test_kill_switch_keeps_connected_users_working_and_able_to_leave(
        settings: Settings, main_url: str, user_db_url: str, second_db_url: str) -> None:
    async with app_with(settings, main_url) as api:
        await connect(api, "kim", user_db_url)
    async with app_with(settings, main_url, byod_enabled=False) as api:
        # Content keeps landing on her database.
        created = await api.post("/api/conversations", "kim", json={"title": "Still mine"})
        assert created.status_code == 201
        assert count_rows(user_db_url, "select count(*) from byodb.conversations "
                          "where user_id = %s", "kim") == 1
        assert count_rows(main_url, "select count(*) from byodb.conversations "
                          "where user_id = %s", "kim") == 0
        # Retry, and new credentials for the same database, still work.
        assert (await api.post("/api/byod/retry", "kim")).status_code == 200
        tested = await api.post("/api/byod/test", "kim", json={"url": user_db_url})
        assert tested.status_code == 200 and tested.json()["ok"] is True
        assert (await api.put("/api/byod", "kim", json={"url": user_db_url})).status_code == 202
        before = await api.wait_for_state("kim", "connected", "error")
        assert before["connection_status"] == "connected"
        # Moving to another database is a new connection: refused, nothing changes.
        switched = await api.put("/api/byod", "kim", json={"url": second_db_url})
        assert switched.status_code == 403
        assert switched.json()["error"]["code"] == "byod_disabled"
        after = (await api.get("/api/byod", "kim")).json()
        assert after["database"] == before["database"]
        assert after["connection_status"] == "connected"
        assert count_rows(second_db_url, "select count(*) from pg_namespace "
                          "where nspname = 'byodb'") == 0
        # And she can always leave.
        left = await api.post("/api/byod/disconnect", "kim", json={"mode": "keep"})
        assert left.status_code == 200
        assert left.json()["kept_on_own_database"] is True


async def test_premium_gate_answers_402_without_the_claim(
        settings: Settings, main_url: str, user_db_url: str) -> None:
    async with app_with(settings, main_url, byod_requires_premium=True) as api:
        state = (await api.get("/api/byod", "pat")).json()
        assert state["new_connections"]["allowed"] is False
        assert state["new_connections"]["code"] == "premium_required"
        for method, path in (("POST", "/api/byod/test"), ("PUT", "/api/byod")):
            refused = await api.request(method, path, "pat", json={"url": user_db_url})
            assert refused.status_code == 402, refused.text
            assert refused.json()["error"]["code"] == "premium_required"
        assert config_rows(main_url, "pat") == 0

        with_claim = premium(api, "pam")
        state = (await api.client.get("/api/byod", headers=with_claim)).json()
        assert state["new_connections"]["allowed"] is True
        tested = await api.client.post("/api/byod/test", json={"url": user_db_url},
                                       headers=with_claim)
        assert tested.status_code == 200 and tested.json()["ok"] is True
        saved = await api.client.put("/api/byod", json={"url": user_db_url},
                                     headers=with_claim)
        assert saved.status_code == 202


async def test_a_premium_claim_of_the_wrong_type_is_a_401(
        settings: Settings, main_url: str) -> None:
    async with app_with(settings, main_url, byod_requires_premium=True) as api:
        api.headers("eve")  # creates the development signing key
        secret = (settings.data_dir / "jwt-dev.secret").read_text().strip()
        token = jwt.encode({"sub": "eve", "iss": DEV_ISSUER, "aud": DEV_AUDIENCE,
                            "exp": 4_000_000_000, "byodb_premium": "yes"}, secret,
                           algorithm="HS256")
        refused = await api.client.get("/api/byod",
                                       headers={"Authorization": f"Bearer {token}"})
        assert refused.status_code == 401


async def test_file_storage_off_refuses_uploads_of_byod_users_and_stores_nothing(
        settings: Settings, main_url: str, user_db_url: str) -> None:
    async with app_with(settings, main_url) as api:
        await connect(api, "fay", user_db_url)
    async with app_with(settings, main_url, byod_file_storage=False) as api:
        refused = await api.post("/api/files", "fay",
                                 files={"file": ("notes.txt", b"hello", "text/plain")})
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"]["code"] == "file_storage_disabled"
        conversation = (await api.post("/api/conversations", "fay", json={})).json()
        reply = (await api.post(f"/api/conversations/{conversation['id']}/messages", "fay",
                                json={"content": "hi"})).json()
        attached = await api.post(
            f"/api/messages/{reply['user_message']['id']}/attachments", "fay",
            json={"filename": "a.txt", "mime_type": "text/plain",
                  "content": base64.b64encode(b"abc").decode()})
        assert attached.status_code == 403
        assert attached.json()["error"]["code"] == "file_storage_disabled"
        for url in (user_db_url, main_url):
            assert count_rows(url, "select count(*) from byodb.files") == 0
            assert count_rows(url, "select count(*) from byodb.attachments") == 0
        # A user whose content is on main is not a BYOD user: their uploads work.
        on_main = await api.post("/api/files", "gus",
                                 files={"file": ("notes.txt", b"hello", "text/plain")})
        assert on_main.status_code == 201
        assert count_rows(main_url, "select count(*) from byodb.files where user_id = %s",
                          "gus") == 1


async def test_file_storage_on_keeps_byod_files_on_their_database(
        settings: Settings, main_url: str, user_db_url: str) -> None:
    async with app_with(settings, main_url) as api:
        await connect(api, "hal", user_db_url)
        stored = await api.post("/api/files", "hal",
                                files={"file": ("notes.txt", b"hello", "text/plain")})
        assert stored.status_code == 201
    assert count_rows(user_db_url, "select count(*) from byodb.files") == 1
    assert count_rows(main_url, "select count(*) from byodb.files") == 0


async def test_settings_offers_the_download_first_and_the_manual_package(api: Api) -> None:
    page = await api.client.get("/settings/database", cookies={
        "byodb_session": api.headers("ivy")["Authorization"][7:]})
    assert page.status_code == 200
    html = page.text
    assert 'href="/api/byod/project.zip"' in html
    assert html.count('href="/api/export"') == 2  # the "Your data" card and the dialog
    dialog = html[html.index("data-disconnect-dialog"):]
    assert dialog.index('href="/api/export"') < dialog.index("Keep it on my database")


def test_an_error_page_says_its_problem_once() -> None:
    assert adds_to("Admins only", "The BYOD dashboard needs the admin role.")
    assert not adds_to("Not found", "Not found.")
    assert not adds_to("Your database is unreachable", "your database is UNREACHABLE")
    assert not adds_to("Anything", None)


async def test_byodb_token_premium_mints_a_premium_user(tmp_path: Path) -> None:
    env = {"BYODB_DATA_DIR": str(tmp_path)}
    ensure_dev_secret(Settings(BYODB_DATA_DIR=tmp_path))  # as `byodb serve` / `init` do
    minted = {flag: run_cli("token", "pia", *([flag] if flag else []), env=env).stdout.strip()
              for flag in ("", "--premium")}
    auth = Authenticator(Settings(BYODB_DATA_DIR=tmp_path))
    assert (await auth.verify(minted[""])).is_premium is False
    assert (await auth.verify(minted["--premium"])).is_premium is True


FLAGS = [pytest.param({"byod_enabled": False}, 403, "byod_disabled", id="kill-switch"),
         pytest.param({"byod_requires_premium": True}, 402, "premium_required",
                      id="premium-gate")]
CHATGPT_FILE = json.dumps([{
    "title": "Imported", "create_time": 1_700_000_000.0, "update_time": 1_700_000_001.0,
    "id": "c-imported", "current_node": "q",
    "mapping": {"r": {"id": "r", "message": None, "parent": None, "children": ["q"]},
                "q": {"id": "q", "parent": "r", "children": [], "message": {
                    "id": "q", "author": {"role": "user"}, "create_time": 1_700_000_000.5,
                    "content": {"content_type": "text", "parts": ["hello"]}}}}}]).encode()


def has_byodb_schema(url: str) -> bool:
    return count_rows(url, "select count(*) from pg_namespace where nspname = 'byodb'") == 1


async def refused_with(response: Any, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code


@pytest.mark.parametrize(("flag", "status", "code"), FLAGS)
async def test_each_flag_holds_on_every_path_that_could_connect(
        settings: Settings, main_url: str, user_db_url: str, second_db_url: str,
        flag: dict[str, Any], status: int, code: str) -> None:
    """The lifecycle asks the flags before every step that creates or re-creates a
    connection: a deployment queued before the flag, a retry of it, a switch, a reconnect
    after "keep" — not each endpoint. Imports only reach the database holding the content."""
    # Before the operator sets the flag (an app without a job worker): kim is connected (her
    # deployment run here, its queued job dropped); rae saved her database, and its
    # deployment waits in the queue.
    async with running_app(settings, main_url, run_worker=False) as api:
        saved = await api.put("/api/byod", "kim", json={"url": second_db_url})
        assert saved.status_code == 202
        kim = await api.app.state.runtime.lifecycle.state("kim")
        await api.app.state.runtime.lifecycle.provision("kim", kim.credential_version)
        assert (await api.get("/api/byod", "kim")).json()["connection_status"] == "connected"
        created = await api.post("/api/conversations", "rae", json={"title": "On main"})
        assert created.status_code == 201
        assert (await api.put("/api/byod", "rae", json={"url": user_db_url})).status_code \
            == 202
    with psycopg.connect(main_url) as conn:
        conn.execute("delete from procrastinate_jobs where args->>'user_id' = 'kim'")
    async with app_with(settings, main_url, **flag) as api:
        # 1. The queued deployment runs now, is refused by the flag and connects nothing.
        failed = await api.wait_for_state("rae", "error")
        assert failed["deployment_status"] == "not_started"
        assert failed["connection_error_code"] == code
        assert not has_byodb_schema(user_db_url)
        # 2. Retrying it (the walk-around of issue 17) is refused; nothing changes.
        await refused_with(await api.post("/api/byod/retry", "rae"), status, code)
        assert (await api.get("/api/byod", "rae")).json()["connection_status"] == "error"
        assert not has_byodb_schema(user_db_url)
        # 3. An import lands where her content is (main), never on her database.
        started = await api.post("/api/import", "rae", files={
            "file": ("conversations.json", CHATGPT_FILE, "application/json")})
        assert started.status_code == 202, started.text
        for _ in range(300):
            job = (await api.get(f"/api/import/{started.json()['id']}", "rae")).json()
            if job["status"] != "running":
                break
            await asyncio.sleep(0.1)
        assert job["status"] == "completed", job
        assert count_rows(main_url, "select count(*) from byodb.conversations "
                          "where user_id = 'rae'") == 2
        assert not has_byodb_schema(user_db_url)
        # 4. A connected user keeps working and may retry her own database...
        assert (await api.post("/api/byod/retry", "kim")).status_code == 200
        # ... but a switch to another database is a new connection.
        await refused_with(await api.put("/api/byod", "kim", json={"url": user_db_url}),
                           status, code)
        assert not has_byodb_schema(user_db_url)
        # 5. After "keep" her content is on main: reconnecting is a new connection too.
        left = await api.post("/api/byod/disconnect", "kim", json={"mode": "keep"})
        assert left.status_code == 200
        await refused_with(await api.put("/api/byod", "kim", json={"url": second_db_url}),
                           status, code)
        assert (await api.get("/api/byod", "kim")).json()["connection_status"] == \
            "disconnected"
        if "byod_requires_premium" in flag:
            # A premium user is admitted on the same paths: the retry deploys and moves.
            retried = await api.client.post("/api/byod/retry", headers=premium(api, "rae"))
            assert retried.status_code == 202, retried.text
            await api.wait_for_state("rae", "connected")
            assert count_rows(user_db_url, "select count(*) from byodb.conversations "
                              "where user_id = 'rae'") == 2
