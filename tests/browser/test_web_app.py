"""A person uses byodb in a browser: signs in, connects their own PostgreSQL from
Settings → Database, chats with the reply streaming in, sees the blocker when their database
goes away and gets back into the app when it returns; the admin sees their instance and a
non-admin is refused the dashboard."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.browser.conftest import OwnDatabase, Server

pytestmark = pytest.mark.browser

DESKTOP = {"width": 1280, "height": 820}
PHONE = {"width": 390, "height": 844}
TIMEOUT_MS = 30_000

# Counts how often the assistant's reply changed while it was arriving.
COUNT_REPLY_UPDATES = """
() => {
  window.__replyUpdates = 0;
  const log = document.querySelector('[data-messages]');
  new MutationObserver((changes) => {
    for (const change of changes) {
      const node = change.target.nodeType === 1 ? change.target : change.target.parentElement;
      const bubble = node && node.closest('.message-assistant');
      if (bubble && bubble.classList.contains('is-streaming')) window.__replyUpdates += 1;
    }
  }).observe(log, {subtree: true, childList: true, characterData: true});
}
"""


async def screenshot(page: Any, path: Path, *, full_page: bool = False) -> None:
    """A screenshot for the docs, without passing toasts over the content."""
    await page.evaluate("document.getElementById('toasts')?.replaceChildren()")
    await page.screenshot(path=path, full_page=full_page)


async def sign_in(page: Any, server: Server, user_id: str, *, admin: bool = False) -> None:
    await page.goto(server.url("/"))
    await page.wait_for_url(re.compile(r"/signin"))
    await page.get_by_label("User ID").fill(user_id)
    if admin:
        await page.get_by_label("Admin", exact=True).check()
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(server.url("/"))


def _overlap(a: dict[str, float], b: dict[str, float]) -> bool:
    return (a["x"] < b["x"] + b["width"] and b["x"] < a["x"] + a["width"]
            and a["y"] < b["y"] + b["height"] and b["y"] < a["y"] + a["height"])


async def test_connect_chat_outage_and_recovery_in_the_browser(
        server: Server, own_database: OwnDatabase, main_url: str, screenshots: Path,
        browser: Any) -> None:
    from playwright.async_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    context = await browser.new_context(viewport=DESKTOP)
    page = await context.new_page()

    # -- sign in --------------------------------------------------------------------------
    await page.goto(server.url("/"))
    await page.wait_for_url(re.compile(r"/signin\?next=/"))
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    await screenshot(page, screenshots / "signin.png")
    await sign_in(page, server, "ann")
    await expect(page.get_by_role("heading", name="New chat")).to_be_visible()

    # -- connect the second PostgreSQL through the form --------------------------------------
    await page.get_by_role("link", name="Settings").click()
    await expect(page.locator("[data-status-badge]")).to_have_text("Not configured")
    url_field = page.get_by_label("Database URL")
    await expect(url_field).to_have_attribute("type", "password")
    await url_field.fill(own_database.url)
    await page.get_by_role("button", name="Show").click()
    await expect(url_field).to_have_attribute("type", "text")
    await page.get_by_role("button", name="Hide").click()
    await expect(url_field).to_have_attribute("type", "password")
    save = page.get_by_role("button", name="Save & deploy")
    await expect(save).to_be_disabled()
    await page.get_by_role("button", name="Test connection").click()
    await expect(page.locator("[data-test-title]")).to_have_text("Connection works")
    await expect(save).to_be_enabled()
    await save.click()
    await expect(page.locator("[data-progress]")).to_be_visible()
    await screenshot(page, screenshots / "settings-deploying.png")
    await expect(page.locator("[data-status-badge]")).to_have_text("Connected")
    # The toast saying so leaves the card's buttons in sight, even at the window's bottom.
    toast = page.locator("#toasts .toast-success")
    await expect(toast).to_contain_text("Your database is connected.")
    for name in ("Update credentials", "Disconnect"):
        button = page.get_by_role("button", name=name)
        await button.evaluate("node => node.scrollIntoView({block: 'end'})")
        toast_box, button_box = await toast.bounding_box(), await button.bounding_box()
        assert toast_box is not None and button_box is not None
        assert not _overlap(toast_box, button_box), (name, toast_box, button_box)
    steps = page.get_by_role("list", name="Deployment steps")
    await expect(steps).to_contain_text("Creating byodb's tables")
    await expect(steps.locator(".step-done")).to_have_count(5)
    await expect(url_field).to_be_hidden()
    await expect(url_field).to_have_value("")  # the URL does not linger in the page
    await expect(page.locator("[data-status-facts]")).to_contain_text("****")
    assert own_database.password not in await page.content()
    await screenshot(page, screenshots / "settings-connected.png", full_page=True)

    # -- chat: the reply streams in, and lands on the user's database only -----------------------
    await page.get_by_role("link", name="Chat").click()
    await expect(page.locator("[data-empty-chat]")).to_contain_text("only on your database")
    await page.evaluate(COUNT_REPLY_UPDATES)
    await page.get_by_label("Message", exact=True).fill("Hello from my own database")
    await page.get_by_role("button", name="Send").click()
    reply = page.locator(".message-assistant .message-content").last
    await expect(reply).to_contain_text("[offline model]")
    await expect(page.locator(".message-assistant.is-streaming")).to_have_count(0)
    assert await page.evaluate("window.__replyUpdates") >= 3, "the reply came in one piece"
    await expect(page.locator("[data-chat-title]")).to_have_text("Hello from my own database")
    await expect(page.locator("[data-conversation-nav]").get_by_role(
        "link", name=re.compile("Hello from my own database"))).to_be_visible()
    assert own_database.count("select count(*) from byodb.messages where user_id = 'ann'") == 2
    with psycopg.connect(main_url) as conn:
        on_main = conn.execute("select count(*) from byodb.messages where user_id = 'ann'")
        assert on_main.fetchone() == (0,)
    await screenshot(page, screenshots / "workspace.png")
    await page.set_viewport_size(PHONE)
    await screenshot(page, screenshots / "workspace-phone.png")
    await page.set_viewport_size(DESKTOP)

    # -- the database goes away: the blocker replaces the app ------------------------------------
    own_database.stop()
    await page.reload()
    blocker = page.get_by_role("alertdialog", name="We can't reach your database")
    await expect(blocker).to_be_visible()
    await expect(page.locator("#main")).to_be_hidden()
    # The title says it already: "stopped answering" is not repeated under it, the code is.
    await expect(blocker.locator("[data-blocker-error]")).to_be_hidden()
    await expect(blocker).to_contain_text("Error code: unreachable")
    await expect(blocker.get_by_role("link", name="Settings → Database")).to_be_visible()
    await screenshot(page, screenshots / "blocker.png")
    retry = blocker.get_by_role("button", name="Retry connection")
    await retry.click()
    await expect(blocker.locator("[data-blocker-status]")).to_contain_text("attempt 1")

    # -- it comes back: retry restores the app in place, without a reload -----------------------
    own_database.start()
    await page.evaluate("window.__stillTheSamePage = true")
    await retry.click()
    await expect(blocker).to_be_hidden()
    await expect(page.locator("#main")).to_be_visible()
    await expect(page.locator(".message-assistant .message-content").last).to_contain_text(
        "[offline model]")
    # The texts follow the new state without a reload (the page was rendered blocked).
    await page.get_by_role("button", name="New chat").click()
    await expect(page.locator("[data-empty-chat]")).to_contain_text("only on your database")
    assert await page.evaluate("window.__stillTheSamePage") is True

    # -- a non-admin is refused the dashboard and its API -------------------------------------
    denied = await page.goto(server.url("/admin/byod"))
    assert denied is not None and denied.status == 403
    await expect(page.get_by_role("heading", name="Admins only")).to_be_visible()
    assert (await page.request.get(server.url("/api/admin/byod"))).status == 403
    await context.close()

    # -- the admin sees the instance ---------------------------------------------------------
    admin_context = await browser.new_context(viewport=DESKTOP)
    admin = await admin_context.new_page()
    await sign_in(admin, server, "ops", admin=True)
    await admin.get_by_role("link", name="Admin").click()
    row = admin.locator("[data-instances] tr", has_text="ann")
    await expect(row).to_contain_text("127.0.0.1")
    await expect(row).to_contain_text("Connected")
    await expect(admin.get_by_role(
        "button", name="Run schema migrations on all instances")).to_be_enabled()
    await expect(admin.get_by_role("button", name="Check all connections now")).to_be_enabled()
    await row.get_by_role("button", name="Details for ann").click()
    await expect(admin.locator("[data-detail]")).to_be_visible()
    await expect(admin.locator("[data-detail-facts]")).to_contain_text("****")
    assert own_database.password not in await admin.content()
    await admin.evaluate("window.scrollTo(0, 0)")
    await screenshot(admin, screenshots / "admin.png", full_page=True)
    await admin_context.close()
