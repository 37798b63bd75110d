"""The health sweep in a browser: the admin presses "Check all connections now" while a
user's database is down and sees it in error with its current state; when it is back, the
next check reconnects the user, whose blocked page comes back by itself — no Retry."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.browser.conftest import OwnDatabase, Server
from tests.browser.test_web_app import DESKTOP, TIMEOUT_MS, sign_in

pytestmark = pytest.mark.browser


async def connect_through_settings(page: Any, url: str) -> None:
    from playwright.async_api import expect

    await page.get_by_role("link", name="Settings").click()
    await page.get_by_label("Database URL").fill(url)
    await page.get_by_role("button", name="Test connection").click()
    await expect(page.locator("[data-test-title]")).to_have_text("Connection works")
    await page.get_by_role("button", name="Save & deploy").click()
    await expect(page.locator("[data-status-badge]")).to_have_text("Connected")


async def check_all_now(admin: Any) -> None:
    from playwright.async_api import expect

    button = admin.get_by_role("button", name="Check all connections now")
    await expect(button).to_be_enabled()
    await button.click()
    await expect(admin.locator("#toasts")).to_contain_text("Checked 1:")
    await expect(button).to_be_enabled()


@pytest.mark.parametrize("server_env", [{"BYODB_HEALTH_FAILURES": "1"}], indirect=True)
async def test_admin_checks_all_and_the_user_comes_back_without_retry(
        server: Server, own_database: OwnDatabase, browser: Any) -> None:
    from playwright.async_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    user_context = await browser.new_context(viewport=DESKTOP)
    user = await user_context.new_page()
    await sign_in(user, server, "kim")
    await connect_through_settings(user, own_database.url)

    admin_context = await browser.new_context(viewport=DESKTOP)
    admin = await admin_context.new_page()
    await sign_in(admin, server, "ops", admin=True)
    await admin.goto(server.url("/admin/byod"))
    await expect(admin.locator("[data-sweep]")).to_contain_text("Next scheduled sweep")
    await expect(admin.locator("[data-sweep]")).not_to_contain_text("after in")

    own_database.stop()
    await check_all_now(admin)
    await expect(admin.locator("[data-sweep]")).to_contain_text("1 failed")
    row = admin.locator("[data-instances] tr", has_text="kim")
    await expect(row).to_contain_text("Error")
    await row.get_by_role("button", name="Details for kim").click()
    facts = admin.locator("[data-detail-facts]")
    await expect(facts).to_contain_text(re.compile(r"Current state\s*Down:"))
    await expect(facts).to_contain_text("reconnects the user by itself")
    assert own_database.password not in await admin.content()

    await user.goto(server.url("/"))
    await expect(user.locator("#blocker")).to_be_visible()

    own_database.start()
    await check_all_now(admin)
    await expect(row).to_contain_text("Connected")
    # The user's page notices by itself (no Retry pressed) and shows the app again.
    await expect(user.locator("#blocker")).to_be_hidden()
    await expect(user.locator("#main")).to_be_visible()
    await user.goto(server.url("/settings/database"))
    await expect(user.locator("[data-notices]")).to_contain_text("Your database is back")
    await user_context.close()
    await admin_context.close()
