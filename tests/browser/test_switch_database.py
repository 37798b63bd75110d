"""A person moves their content to another database from Settings → Database: the form says
what will happen before they confirm, and afterwards every conversation is on the new
database, once, and gone from the old one when they chose to delete it there."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.browser.conftest import OwnDatabase, Server
from tests.browser.test_web_app import DESKTOP, TIMEOUT_MS, screenshot, sign_in

pytestmark = pytest.mark.browser


async def test_switching_to_another_database_from_settings(
        server: Server, own_database: OwnDatabase, main_url: str, screenshots: Path,
        browser: Any) -> None:
    from playwright.async_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    newer_url = own_database.another("newer")
    context = await browser.new_context(viewport=DESKTOP)
    page = await context.new_page()
    await sign_in(page, server, "bo")

    # Connect the first database and write a conversation there.
    await page.goto(server.url("/settings/database"))
    url_field = page.get_by_label("Database URL")
    await url_field.fill(own_database.url)
    await page.get_by_role("button", name="Test connection").click()
    await page.get_by_role("button", name="Save & deploy").click()
    await expect(page.locator("[data-status-badge]")).to_have_text("Connected")
    created = await page.evaluate("""async () => {
        const r = await fetch('/api/conversations', {method: 'POST',
            headers: {'Content-Type': 'application/json'}, body: JSON.stringify({title: 'moves'})});
        return r.status; }""")
    assert created == 201

    # Update credentials: the form says what saving another database's URL does.
    await page.get_by_role("button", name="Update credentials").click()
    choice = page.get_by_role("group", name="If this URL leads to another database")
    await expect(choice).to_be_visible()
    await expect(choice).to_contain_text("moves your content there")
    await expect(choice.get_by_label("Keep a copy on the current database")).to_be_checked()
    await choice.get_by_label("Delete it from the current database").check()
    await url_field.fill(newer_url)
    await page.get_by_role("button", name="Test connection").click()
    await expect(page.locator("[data-save-help]")).to_contain_text("your content moves there")
    await screenshot(page, screenshots / "settings-switch.png", full_page=True)
    await page.get_by_role("button", name="Save & deploy").click()
    await expect(page.locator("[data-status-facts]")).to_contain_text("/newer")
    await expect(page.locator("[data-status-badge]")).to_have_text("Connected")
    state = await page.evaluate("async () => (await fetch('/api/byod')).json()")
    assert state["connection_status"] == "connected" and state["switching"] is False

    def count(url: str) -> int:
        with psycopg.connect(url) as conn:
            row = conn.execute("select count(*) from byodb.conversations "
                               "where user_id = 'bo'").fetchone()
        return int(row[0]) if row else 0

    assert count(newer_url) == 1
    assert count(own_database.url) == 0  # deleted there, as chosen
    assert count(main_url) == 0
    listed = await page.evaluate("""async () => (await (await fetch('/api/conversations'))
        .json()).items.map(c => c.title)""")
    assert listed == ["moves"]
    await context.close()
