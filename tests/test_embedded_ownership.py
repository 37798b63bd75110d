"""Several byodb processes on one data directory share its embedded PostgreSQL: none of them
stops it while another still uses it, whatever the order they leave in, however they die.

Real ``byodb serve`` / ``byodb worker`` processes on loopback ports, each test with a data
directory of its own; every process is killed and the embedded server stopped in finally.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from byodb.maindb.embedded import PostgresCluster

BYODB = [sys.executable, "-m", "byodb.cli.main"]
START_TIMEOUT = 120.0  # the first start runs initdb and every migration


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Processes:
    """byodb processes on one data directory, all ended by :meth:`close`."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.env = {**os.environ, "BYODB_DATA_DIR": str(data_dir), "BYODB_EMBEDDED_FAST": "1"}
        self.env.pop("BYODB_DATABASE_URL", None)  # the embedded server is what is tested
        self.running: list[tuple[subprocess.Popen[bytes], Path]] = []

    @property
    def cluster(self) -> PostgresCluster:
        return PostgresCluster(self.data_dir / "postgres")

    def start(self, *args: str) -> tuple[subprocess.Popen[bytes], Path]:
        log = self.data_dir.parent / f"{args[0]}-{len(self.running)}.log"
        with log.open("wb") as out:
            process = subprocess.Popen([*BYODB, *args], env=self.env, stdout=out,
                                       stderr=subprocess.STDOUT)
        self.running.append((process, log))
        return process, log

    def serve(self, port: int) -> tuple[subprocess.Popen[bytes], Path]:
        process, log = self.start("serve", "--host", "127.0.0.1", "--port", str(port))
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if process.poll() is not None:
                raise AssertionError(f"byodb serve exited:\n{log.read_text()[-4000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    return process, log
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"byodb serve did not start:\n{log.read_text()[-4000:]}")
            time.sleep(0.2)

    def token(self, user: str) -> str:
        result = subprocess.run([*BYODB, "token", user], env=self.env, capture_output=True,
                                text=True, timeout=60, check=True)
        return result.stdout.strip()

    def close(self) -> None:
        for process, _ in self.running:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=30)
        self.cluster.stop(mode="immediate")


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Processes]:
    processes = Processes(tmp_path / "data")
    try:
        yield processes
    finally:
        processes.close()


def _stop(process: subprocess.Popen[bytes]) -> int:
    process.send_signal(signal.SIGTERM)
    return process.wait(timeout=60)


def _conversations(port: int, token: str) -> int:
    response = httpx.get(f"http://127.0.0.1:{port}/api/conversations",
                         headers={"Authorization": f"Bearer {token}"}, timeout=10)
    return response.status_code


def test_a_second_serve_on_another_port_shares_and_leaving_does_not_stop_it(
        procs: Processes) -> None:
    port_a, port_b = _free_port(), _free_port()
    a, a_log = procs.serve(port_a)
    b, b_log = procs.serve(port_b)
    token = procs.token("alice")
    assert "started by this process" in a_log.read_text()
    assert "already running; shared" in b_log.read_text()
    assert _conversations(port_b, token) == 200

    assert _stop(b) == 0
    assert "left running: another byodb process uses it" in b_log.read_text()
    assert procs.cluster.running_port() is not None
    assert _conversations(port_a, token) == 200
    created = httpx.post(f"http://127.0.0.1:{port_a}/api/conversations", json={"title": "x"},
                         headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert created.status_code in (200, 201), created.text

    assert _stop(a) == 0  # the last one out stops the server
    assert procs.cluster.running_port() is None


def test_a_second_serve_on_the_same_port_refuses_at_once_and_leaves_the_first_alone(
        procs: Processes) -> None:
    port = _free_port()
    procs.serve(port)
    token = procs.token("alice")
    started = time.monotonic()
    result = subprocess.run([*BYODB, "serve", "--port", str(port)], env=procs.env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert time.monotonic() - started < 30
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(port) in errors[0] and "--port" in errors[0]
    assert "main database" not in result.stderr  # it never got to the embedded server
    assert procs.cluster.running_port() is not None
    assert _conversations(port, token) == 200


def test_a_killed_process_releases_its_share_even_the_one_that_started_the_server(
        procs: Processes) -> None:
    port_a, port_b = _free_port(), _free_port()
    a, _ = procs.serve(port_a)
    b, _ = procs.serve(port_b)
    token = procs.token("alice")
    a.kill()  # no clean-up at all: the kernel drops its lock
    a.wait(timeout=30)
    assert _conversations(port_b, token) == 200
    assert _stop(b) == 0
    assert procs.cluster.running_port() is None  # b was the last user, so b stopped it


def test_a_worker_shares_the_server_and_says_what_it_serves(procs: Processes) -> None:
    port = _free_port()
    procs.serve(port)
    token = procs.token("alice")
    worker, log = procs.start("worker")
    deadline = time.monotonic() + 60
    while "byodb worker:" not in log.read_text():
        assert worker.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.2)
    time.sleep(2)  # let it connect and start its queues
    line = next(x for x in log.read_text().splitlines() if x.startswith("byodb worker:"))
    assert "byod_connect (16 at a time)" in line and "byod_move (2 at a time)" in line
    assert "/byodb" in line and ":****@127.0.0.1:" in line
    assert procs.cluster.password not in line
    assert _stop(worker) == 0
    assert _conversations(port, token) == 200


def test_shares_in_one_process_last_release_stops(tmp_path: Path) -> None:
    cluster = PostgresCluster(tmp_path / "pg")
    first = cluster.share()
    try:
        second = PostgresCluster(tmp_path / "pg").share()
        assert (first.started, second.started) == (True, False)
        assert first.release() is False  # second still holds a share
        assert cluster.running_port() is not None
        assert first.release() is False  # releasing twice is harmless
        assert second.release() is True
        log = (tmp_path / "pg" / "server.log").read_text()[-3000:]
        assert cluster.running_port() is None, log
    finally:
        cluster.stop(mode="immediate")
