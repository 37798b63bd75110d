"""A person imports their ChatGPT history from Settings → Database: chooses the file, sees it
checked and written, finds the conversations in the app; a hostile file is refused with the
limit it broke, and nothing of it is written."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.browser.conftest import Server
from tests.browser.test_web_app import DESKTOP, TIMEOUT_MS, sign_in

pytestmark = pytest.mark.browser


def chatgpt_export(conversations: int) -> list[dict[str, Any]]:
    def node(node_id: str, parent: str | None, role: str, text: str) -> dict[str, Any]:
        return {"id": node_id, "parent": parent, "children": [], "message": {
            "id": node_id, "author": {"role": role}, "create_time": 1_700_000_000.0,
            "content": {"content_type": "text", "parts": [text]}}}

    return [{"id": f"c{i}", "title": f"Trip plan {i}", "create_time": 1_700_000_000.0 + i,
             "mapping": {"q": node("q", None, "user", f"Where to go in week {i}?"),
                         "a": node("a", "q", "assistant", "The coast.")}}
            for i in range(conversations)]


async def test_importing_a_chatgpt_export_from_the_settings_page(
        server: Server, main_url: str, tmp_path: Path, screenshots: Path,
        browser: Any) -> None:
    from playwright.async_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    context = await browser.new_context(viewport=DESKTOP)
    page = await context.new_page()
    await sign_in(page, server, "ivy")
    await page.goto(server.url("/settings/database"))

    export = tmp_path / "conversations.json"
    export.write_text(json.dumps(chatgpt_export(30)))
    await page.locator("[data-import-file]").set_input_files(str(export))
    status = page.locator("[data-import-status]")
    await expect(status.locator("[data-import-phase]")).to_have_text("Imported")
    await expect(status.locator("[data-import-message]")).to_have_text(
        "ChatGPT export: 30 conversations, 60 messages. 90 new, 0 already there.")
    await page.evaluate("document.getElementById('toasts')?.replaceChildren()")
    await page.locator("section[aria-labelledby=your-data-title]").screenshot(
        path=screenshots / "settings-import.png")
    with psycopg.connect(main_url) as conn:
        row = conn.execute("select count(*) from byodb.conversations where user_id = 'ivy'"
                           ).fetchone()
    assert row is not None and row[0] == 30

    # A hostile file: refused with the limit it broke, nothing written.
    hostile = tmp_path / "deep.json"
    hostile.write_bytes(b"[" * 100_000)
    await page.locator("[data-import-file]").set_input_files(str(hostile))
    await expect(status.locator("[data-import-phase]")).to_have_text("Import refused")
    await expect(status.locator("[data-import-message]")).to_contain_text(
        "nest deeper than 64 levels")
    with psycopg.connect(main_url) as conn:
        row = conn.execute("select count(*) from byodb.conversations where user_id = 'ivy'"
                           ).fetchone()
    assert row is not None and row[0] == 30
    await context.close()
