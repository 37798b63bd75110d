"""Readiness: ``GET /readyz`` is 200 only when main is reachable and migrated, and answers
within its deadline even when main hangs; ``GET /healthz`` stays liveness."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import psycopg
import pytest

from byodb.settings import Settings
from tests.conftest import Api, app_behind_proxy
from tests.tcp_proxy import FreezableProxy

DEADLINE_S = 1.0


def assert_not_ready(response: httpx.Response, main_url: str, *words: str) -> str:
    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert error["code"] == "not_ready"
    message: str = error["message"]
    for word in words:
        assert word in message, message
    # Never where main is or how to sign in to it.
    parts = urlsplit(main_url)
    for secret in (parts.password, parts.hostname, str(parts.port), main_url):
        assert secret and secret not in message, message
    return message


def execute(url: str, sql: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql)  # type: ignore[arg-type]


async def test_ready_on_a_migrated_main(api: Api) -> None:
    assert (await api.get("/healthz")).json() == {"status": "ok"}
    response = await api.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready"}


async def test_not_ready_while_mains_migrations_are_behind(api: Api, main_url: str) -> None:
    execute(main_url, "update alembic_version set version_num = '0001'")
    message = assert_not_ready(await api.get("/readyz"), main_url, "behind", "0001")
    assert "byodb db upgrade" in message
    assert (await api.get("/healthz")).status_code == 200  # alive: no restart needed

    execute(main_url, "update alembic_version set version_num = 'ffff_from_the_future'")
    assert_not_ready(await api.get("/readyz"), main_url, "does not know")

    execute(main_url, "delete from alembic_version")
    assert_not_ready(await api.get("/readyz"), main_url, "no migrations")


async def test_not_ready_without_the_content_schema_on_main(api: Api, main_url: str) -> None:
    execute(main_url, "drop schema byodb cascade")
    assert_not_ready(await api.get("/readyz"), main_url, "content schema")


@pytest.fixture
async def proxied(settings: Settings, main_url: str) -> AsyncIterator[tuple[Api, Any]]:
    """The app with main behind a proxy the test can freeze or close."""
    fast = settings.model_copy(update={"ready_timeout_s": DEADLINE_S})
    async with app_behind_proxy(fast, main_url) as (api, proxy):
        yield api, proxy


async def test_answers_within_its_deadline_when_main_hangs(
        proxied: tuple[Api, FreezableProxy], main_url: str) -> None:
    api, proxy = proxied
    assert (await api.get("/readyz")).status_code == 200

    proxy.freeze()
    started = time.monotonic()
    response = await api.get("/readyz")
    took = time.monotonic() - started
    assert_not_ready(response, main_url, "did not answer")
    assert DEADLINE_S * 0.9 <= took < DEADLINE_S + 1.0, took
    assert (await api.get("/healthz")).status_code == 200

    proxy.thaw()
    deadline = time.monotonic() + 10
    while (await api.get("/readyz")).status_code != 200:
        assert time.monotonic() < deadline, "never ready again after main came back"


async def test_not_ready_when_main_is_unreachable(
        proxied: tuple[Api, FreezableProxy], main_url: str) -> None:
    api, proxy = proxied
    assert (await api.get("/readyz")).status_code == 200
    proxy.close()  # the port refuses connections; open ones are closed
    started = time.monotonic()
    response = await api.get("/readyz")
    assert time.monotonic() - started < DEADLINE_S + 1.0
    # Closed sockets fail fast ("unreachable"); one caught mid-way may hit the deadline.
    message = assert_not_ready(response, main_url)
    assert "unreachable" in message or "did not answer" in message
