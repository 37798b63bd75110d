"""The operator's flags as a person meets them in the browser — the upgrade prompt, the kill
switch's message, a change in one tab showing up in the other — the "Download all my data"
button, and every page usable on a 390 px wide phone."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from byodb.settings import Settings
from byodb.web.auth import issue_dev_token
from tests.browser.conftest import Server

pytestmark = pytest.mark.browser

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 820}
TIMEOUT_MS = 30_000


async def sign_in(page: Any, server: Server, user_id: str, *, admin: bool = False,
                  premium: bool = False, then: str = "/") -> None:
    await page.goto(server.url(then))
    await page.wait_for_url(re.compile(r"/signin"))
    await page.get_by_label("User ID").fill(user_id)
    if admin:
        await page.get_by_label("Admin", exact=True).check()
    if premium:
        await page.get_by_label("Premium", exact=True).check()
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(server.url(then))


@pytest.fixture(autouse=True)
def patient_expect() -> None:
    from playwright.async_api import expect

    expect.set_options(timeout=TIMEOUT_MS)


@pytest.mark.parametrize("server_env", [{"BYOD_REQUIRES_PREMIUM": "true"}], indirect=True)
async def test_without_premium_settings_shows_the_upgrade_prompt(
        server: Server, browser: Any) -> None:
    from playwright.async_api import expect

    context = await browser.new_context(viewport=DESKTOP)
    page = await context.new_page()
    await sign_in(page, server, "pat", then="/settings/database")
    await expect(page.get_by_role("heading", name="Upgrade to keep your content on your own "
                                  "database")).to_be_visible()
    await expect(page.get_by_text("part of the premium plan")).to_be_visible()
    await expect(page.get_by_label("Database URL")).to_be_hidden()
    download = page.get_by_role("link", name="Download all my data")
    await expect(download).to_have_attribute("href", "/api/export")
    await expect(page.get_by_role("link", name="Download the manual deployment package")) \
        .to_be_hidden()  # part of the connect form, which is not offered
    await context.close()

    premium = await browser.new_context(viewport=DESKTOP)
    page = await premium.new_page()
    await sign_in(page, server, "pam", premium=True, then="/settings/database")
    await expect(page.get_by_label("Database URL")).to_be_visible()
    await expect(page.get_by_role("heading", name=re.compile("Upgrade"))).to_be_hidden()
    await expect(page.get_by_role("link", name="Download the manual deployment package")) \
        .to_have_attribute("href", "/api/byod/project.zip")
    await premium.close()


@pytest.mark.parametrize("server_env", [{"BYOD_ENABLED": "false"}], indirect=True)
async def test_kill_switch_says_connecting_is_off(server: Server, browser: Any) -> None:
    from playwright.async_api import expect

    context = await browser.new_context(viewport=DESKTOP)
    page = await context.new_page()
    await sign_in(page, server, "lou", premium=True, then="/settings/database")
    await expect(page.get_by_role("heading", name="Not available right now")).to_be_visible()
    await expect(page.get_by_text("Connecting your own database is turned off on this "
                                  "server for now.")).to_be_visible()
    await expect(page.get_by_label("Database URL")).to_be_hidden()
    await expect(page.locator("[data-status-badge]")).to_have_text("Not configured")
    await context.close()


@pytest.mark.parametrize("server_env", [{"BYOD_REALTIME": "true"}], indirect=True)
async def test_a_message_sent_in_one_tab_appears_in_the_other(
        server: Server, browser: Any) -> None:
    from playwright.async_api import expect

    context = await browser.new_context(viewport=DESKTOP)
    first = await context.new_page()
    await sign_in(first, server, "tia")
    await first.get_by_role("textbox", name="Message").fill("Hello from the first tab")
    await first.get_by_role("button", name="Send").click()
    await first.wait_for_url(re.compile(r"/\?c="))
    await expect(first.locator(".message-assistant")).to_have_count(1)

    second = await context.new_page()
    await second.goto(first.url)
    await expect(second.locator(".message-user")).to_have_text(
        re.compile("Hello from the first tab"))
    # The second tab's stream is open once the page has started it; a message from the
    # first tab then shows up in the second without a reload.
    await second.wait_for_function("document.body.dataset.realtime === 'on'")
    await first.get_by_role("textbox", name="Message").fill("And a second message")
    await first.get_by_role("button", name="Send").click()
    await expect(second.locator(".message-user")).to_have_count(2)
    await expect(second.locator(".message-user").nth(1)).to_have_text(
        re.compile("And a second message"))
    await context.close()


async def test_a_message_sent_while_the_chats_still_load_stays_on_screen(
        server: Server, browser: Any) -> None:
    """On a slow start the user may send before the page has loaded their chats; the
    page's start must not then replace the exchange on screen with a stale load."""
    from playwright.async_api import Route, expect

    context = await browser.new_context(viewport=DESKTOP)
    page = await context.new_page()
    await sign_in(page, server, "una")
    list_asked, list_free, reply_free = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def hold_list(route: Route) -> None:
        list_asked.set()
        await list_free.wait()
        await route.continue_()

    async def hold_reply(route: Route) -> None:
        await reply_free.wait()
        await route.continue_()

    await page.route(re.compile(r"/api/conversations\?limit="), hold_list)
    await page.route(re.compile(r"/messages/stream$"), hold_reply)
    await page.reload()
    await asyncio.wait_for(list_asked.wait(), TIMEOUT_MS / 1000)
    await page.get_by_role("textbox", name="Message").fill("Sent before the list came")
    await page.get_by_role("button", name="Send").click()
    await page.wait_for_url(re.compile(r"/\?c="))  # the chat exists; its reply is held

    list_free.set()  # the start's list arrives while the reply is still on its way
    await expect(page.locator(".conversation-link")).to_have_count(1)
    reply_free.set()
    await expect(page.locator(".message-user")).to_have_text(
        re.compile("Sent before the list came"))
    await expect(page.locator(".message-assistant:not(.is-streaming)")).to_have_count(1)
    await expect(page.locator(".message-assistant .message-content")).not_to_have_text("")
    await context.close()


NAV_FITS = """
() => {
  const width = document.documentElement.clientWidth;
  return [...document.querySelectorAll('.nav a')].map((link) => {
    const box = link.getBoundingClientRect();
    return {text: link.textContent.trim(), left: box.left, right: box.right,
            clipped: link.scrollWidth > link.clientWidth + 1, width};
  });
}
"""

TABLES_FIT = """
() => {
  const width = document.documentElement.clientWidth;
  // For the failure message: what sticks out (tables scroll inside their wrap).
  const wide = [...document.querySelectorAll('body *')]
    .filter((node) => node.getBoundingClientRect().right > width + 1)
    .slice(0, 5).map((node) => `${node.tagName}.${node.className}`);
  return {page: document.documentElement.scrollWidth, width, wide,
          tables: [...document.querySelectorAll('table')].map((table) => {
            const wrap = table.closest('.table-wrap');
            const box = (wrap || table).getBoundingClientRect();
            return {right: box.right, fits: table.getBoundingClientRect().width <= box.width + 1,
                    scrolls: wrap ? getComputedStyle(wrap).overflowX : 'visible'};
          })};
}
"""


async def test_every_page_fits_a_phone(server: Server, browser: Any,
                                       screenshots: Path) -> None:
    context = await browser.new_context(viewport=PHONE)
    page = await context.new_page()
    await sign_in(page, server, "ada", admin=True)
    for path in ("/", "/notes", "/settings/database", "/admin/byod"):
        await page.goto(server.url(path))
        await page.wait_for_load_state("networkidle")
        links = await page.evaluate(NAV_FITS)
        assert [link["text"] for link in links] == [
            "Chat", "Notes", "Tasks", "Memories", "Settings", "Admin"], path
        for link in links:
            assert link["left"] >= 0 and link["right"] <= link["width"], (path, link)
            assert not link["clipped"], (path, link)
        name = path.strip("/").replace("/", "-") or "workspace"
        await page.screenshot(path=screenshots / f"phone-{name}.png")
        layout = await page.evaluate(TABLES_FIT)
        assert layout["page"] <= layout["width"], (path, layout)
        for table in layout["tables"]:
            assert table["right"] <= layout["width"], (path, table)
            assert table["fits"] or table["scrolls"] in ("auto", "scroll"), (path, table)
    await context.close()


async def test_after_keep_the_chat_says_where_the_old_conversations_are(
        server: Server, browser: Any, user_db_url: str, tmp_path: Path) -> None:
    from playwright.async_api import expect

    token = issue_dev_token(Settings(BYODB_DATA_DIR=tmp_path / "data"), "kay")
    async with httpx.AsyncClient(base_url=server.base_url, timeout=60,
                                 headers={"Authorization": f"Bearer {token}"}) as client:
        assert (await client.put("/api/byod", json={"url": user_db_url})).status_code == 202
        for _ in range(600):
            state = (await client.get("/api/byod")).json()
            if state["connection_status"] == "connected":
                break
            assert state["connection_status"] in ("pending", "moving"), state
            await asyncio.sleep(0.1)
        old = await client.post("/api/conversations", json={"title": "Old"})
        assert old.status_code == 201
        left = await client.post("/api/byod/disconnect", json={"mode": "keep"})
        assert left.status_code == 200

    context = await browser.new_context(viewport=DESKTOP)
    page = await context.new_page()
    await sign_in(page, server, "kay")
    kept = page.locator("[data-kept-note]")
    await expect(kept).to_contain_text("still on your own database")
    await expect(kept.get_by_role("link", name="Settings → Database")).to_be_visible()
    await expect(kept).to_contain_text("Move it back to byodb")
    await expect(page.locator("[data-list-status]")).to_contain_text(
        "Your earlier ones stay on the database you disconnected")
    await context.close()
