"""A move into the user's database that failed after its schema was deployed (the owner held
a lock on their tables) is finished by Retry in Settings → Database once the cause is gone,
with its progress shown, and never a "Still can't connect" while the queued move runs. (The
user is not blocked meanwhile: their content stayed on byodb's database.)"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from byodb.content.package import full_schema_script
from tests.browser.conftest import OwnDatabase, Server
from tests.browser.test_web_app import DESKTOP, TIMEOUT_MS, sign_in

pytestmark = [pytest.mark.browser,
              pytest.mark.parametrize("server_env", [{"BYODB_USER_LOCK_TIMEOUT": "1"}],
                                      indirect=True)]

MOVE_FAILS_WITHIN_S = 90


@pytest.fixture
def owners_lock(own_database: OwnDatabase) -> Iterator[psycopg.Connection[Any]]:
    """The owner deployed byodb's tables by hand and, in a second session, holds their
    conversations table in an open transaction (rolled back to let the move through)."""
    with psycopg.connect(own_database.url, autocommit=True) as conn:
        conn.execute(full_schema_script().encode())
    holder = psycopg.connect(own_database.url)
    holder.execute("lock table byodb.conversations in access exclusive mode")
    yield holder
    holder.rollback()
    holder.close()


async def state_of(page: Any) -> dict[str, Any]:
    return dict(await page.evaluate("async () => (await fetch('/api/byod')).json()"))


async def failed_move(page: Any, server: Server, own_database: OwnDatabase, user: str) -> None:
    """``user`` writes a conversation on byodb's database, then saves their own database's
    URL from Settings: the schema is there, the move of the conversation fails at the
    owner's lock, and the user is left in ``error`` with their content on main."""
    await sign_in(page, server, user)
    created = await page.evaluate("""async () => (await fetch('/api/conversations', {
        method: 'POST', headers: {'Content-Type': 'application/json'},
        body: JSON.stringify({title: 'waits to move'})})).status""")
    assert created == 201
    await page.goto(server.url("/settings/database"))
    await page.get_by_label("Database URL").fill(own_database.url)
    await page.get_by_role("button", name="Test connection").click()
    await page.get_by_role("button", name="Save & deploy").click()
    for _ in range(MOVE_FAILS_WITHIN_S * 10):
        state = await state_of(page)
        if state["connection_status"] == "error" and state["deployment_status"] == "deployed":
            break
        await asyncio.sleep(0.1)
    assert state["connection_error_code"] == "lock_timeout", state


async def test_retry_in_settings_finishes_the_move_with_its_progress(
        server: Server, own_database: OwnDatabase, owners_lock: psycopg.Connection[Any],
        browser: Any) -> None:
    from playwright.async_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    context = await browser.new_context(viewport=DESKTOP)
    page = await context.new_page()
    await failed_move(page, server, own_database, "rhea")
    retry = page.get_by_role("button", name="Retry", exact=True)
    await expect(retry).to_be_visible()

    owners_lock.rollback()  # the owner lets go of their table
    await retry.click()
    await expect(page.locator("[data-status-badge]")).to_have_text("Connected")
    await expect(page.locator(".toast", has_text="Still can't connect")).to_have_count(0)
    assert own_database.count("select count(*) from byodb.conversations "
                              "where user_id = 'rhea'") == 1
    await context.close()
