"""The README's "Try it in five minutes" runs as written: its shell block, unchanged but for
the port (which the README itself says to change when 8000 is taken), against `byodb serve`
with the embedded main database, from a folder of its own."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = Path(sys.prefix)  # the virtualenv running the tests (.venv from ./scripts/setup)
DEADLINE_S = 180


def _tour() -> str:
    section = (ROOT / "README.md").read_text().split("## Try it in five minutes", 1)[1]
    return section.split("```sh\n", 1)[1].split("```", 1)[0]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_ready(port: int, serve: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        assert serve.poll() is None, "byodb serve exited before it was ready"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    raise AssertionError("byodb serve was not ready in time")


def test_the_readme_tour_runs_as_written(tmp_path: Path) -> None:
    script = _tour()
    assert "PORT=8000" in script
    port = _free_port()
    script = script.replace("PORT=8000", f"PORT={port}", 1)
    (tmp_path / ".venv").symlink_to(VENV)  # `source .venv/bin/activate`, as in the repo
    env = {k: v for k, v in os.environ.items()
           if k not in ("BYODB_DATA_DIR", "BYODB_DATABASE_URL", "BYOD_ENCRYPTION_KEY",
                        "VIRTUAL_ENV")}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                  if not p.startswith(str(VENV)))
    byodb = str(VENV / "bin" / "byodb")
    serve = subprocess.Popen([byodb, "serve", "--port", str(port)], cwd=tmp_path, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)
    try:
        _wait_ready(port, serve)
        tour = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=DEADLINE_S)
    finally:
        subprocess.run([byodb, "devdb", "stop"], cwd=tmp_path, env=env, capture_output=True,
                       timeout=120, check=False)
        serve.send_signal(signal.SIGTERM)
        try:
            serve.wait(timeout=60)
        except subprocess.TimeoutExpired:
            serve.kill()
            serve.wait(timeout=30)
    assert tour.returncode == 0, (tour.stdout, tour.stderr)
    out = tour.stdout
    assert '"content":"Hi there"' in out  # 1. the message on main
    assert "postgresql://" in out  # 2. the sandbox's URL
    assert '"code":"ok"' in out  # 3. the test passed; the save connected (the loop ended)
    assert "Hello" in out.split("select title", 1)[-1]  # psql: her conversation, there
    assert "byod_unavailable" in out  # 4. blocked while her database is down
    assert out.rstrip().endswith("}") and '"connection_status":"connected"' in \
        out.rsplit("\n", 1)[-1]  # 5. retry reconnected her
