"""Browser fixtures: Debian's chromium through Playwright, the real ``byodb serve`` in a
subprocess on a loopback port, and a user's own PostgreSQL that a test can stop and start.

Browser tests are marked ``browser`` and skip cleanly when /usr/bin/chromium is missing
(``scripts/setup --test`` installs it). Screenshots go to a temporary directory, or to
``docs/screenshots/`` when ``BYODB_UPDATE_SCREENSHOTS=1``.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from byodb.maindb.embedded import PostgresCluster
from tests.clusters import started_copy
from tests.providers import create_login_role, enable_vector

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
REPO = Path(__file__).resolve().parents[2]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """On a failure, show the end of the ``byodb serve`` log next to the traceback."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    server = getattr(item, "funcargs", {}).get("server")
    if report.when == "call" and report.failed and isinstance(server, Server):
        report.sections.append(("byodb serve log", server.log.read_text()[-8000:]))


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Any]:
    """Chromium driven by Playwright's async API (the sync API would keep an event loop
    running in the main thread, which the rest of the suite's asyncio code cannot share)."""
    if not CHROMIUM.exists():
        pytest.skip("browser tests need /usr/bin/chromium (apt-get install chromium)")
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        instance = await playwright.chromium.launch(executable_path=str(CHROMIUM),
                                                    args=CHROMIUM_ARGS)
        yield instance
        await instance.close()


@pytest.fixture
def screenshots(tmp_path: Path) -> Path:
    if os.environ.get("BYODB_UPDATE_SCREENSHOTS") == "1":
        target = REPO / "docs" / "screenshots"
    else:
        target = tmp_path / "screenshots"
    target.mkdir(parents=True, exist_ok=True)
    return target


@dataclass
class Server:
    base_url: str
    process: subprocess.Popen[bytes]
    log: Path

    def url(self, path: str) -> str:
        return self.base_url + path


def _byodb_command() -> list[str]:
    script = Path(sys.executable).parent / "byodb"
    if script.exists():
        return [str(script)]
    found = shutil.which("byodb")
    return [found] if found else [sys.executable, "-m", "byodb.cli.main"]


@pytest.fixture
def server_env(request: pytest.FixtureRequest) -> dict[str, str]:
    """Extra environment for ``byodb serve`` (flags): none, unless a test parametrizes this
    fixture indirectly, e.g. ``@pytest.mark.parametrize("server_env", [{...}],
    indirect=True)``."""
    return dict(getattr(request, "param", {}))


@pytest.fixture
def server(main_url: str, tmp_path: Path, server_env: dict[str, str]) -> Iterator[Server]:
    """``byodb serve`` on a free loopback port, main on a fresh database of main_server."""
    port = _free_port()
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("BYODB_", "BYOD_", "OPENAI_"))}
    env.update({"BYODB_DATABASE_URL": main_url, "BYODB_DATA_DIR": str(tmp_path / "data"),
                "BYODB_ALLOW_PRIVATE_HOSTS": "true", "BYODB_ENV": "development",
                "BYODB_TEST_RATE_LIMIT": "1000", **server_env})
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen([*_byodb_command(), "serve", "--host", "127.0.0.1",
                                    "--port", str(port)],
                                   env=env, stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path)
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    try:
        while True:
            if process.poll() is not None:
                raise RuntimeError("byodb serve exited:\n" + log.read_text()[-4000:])
            try:
                if httpx.get(base_url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("byodb serve did not start:\n" + log.read_text()[-4000:])
            time.sleep(0.2)
        yield Server(base_url, process, log)
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class OwnDatabase:
    """A user's own PostgreSQL on its own server, which the test can stop and start again
    on the same port (as when a hosted database is paused and resumed).

    Made as providers hand databases out: owned by a plain login role (``owner``), pgvector
    enabled in ``public`` by the administrator; byodb gets the owner's URL."""

    name = "mine"
    owner = "owner"

    def __init__(self, root: Path, template: Path):
        self.root = root
        self.cluster = started_copy(template, root)
        self.port = self.cluster.port
        self.password = secrets.token_urlsafe(18)
        create_login_role(self.cluster, self.owner, self.password)
        self.url = self.another(self.name)

    def another(self, name: str) -> str:
        """One more database of the same owner on this server (pgvector in ``public``)."""
        with psycopg.connect(self.cluster.url(), autocommit=True) as conn:
            conn.execute(f'create database "{name}" owner "{self.owner}"')
        enable_vector(self.cluster, name, "public")
        return self.cluster.url(name, user=self.owner, password=self.password)

    def stop(self) -> None:
        self.cluster.stop("fast")

    def start(self) -> None:
        self.cluster = PostgresCluster(self.root, port=self.port).start()

    def count(self, sql: str, *params: Any) -> int:
        with psycopg.connect(self.url) as conn:
            row = conn.execute(sql, params).fetchone()
        return int(row[0]) if row else 0


@pytest.fixture
def own_database(tmp_path: Path, cluster_template: Path) -> Iterator[OwnDatabase]:
    database = OwnDatabase(tmp_path / "own-postgres", cluster_template)
    yield database
    database.cluster.stop("immediate")
