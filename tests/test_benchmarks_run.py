"""The benchmarks keep working (tiny sizes here; the figures come from full runs)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench"


def _last_json(*args: str) -> dict[str, object]:
    result = subprocess.run([sys.executable, *args], capture_output=True, text=True,
                            timeout=300, cwd=BENCH.parent)
    assert result.returncode == 0, result.stderr[-2000:]
    last = [line for line in result.stdout.splitlines() if line.startswith("{")][-1]
    parsed: dict[str, object] = json.loads(last)
    return parsed


def test_routing_benchmark_prints_its_ratio() -> None:
    figures = _last_json(str(BENCH / "routing.py"), "--iterations", "30",
                         "--cold-users", "3", "--warm-rounds", "2")
    assert figures["benchmark"] == "routing"
    assert isinstance(figures["ratio"], float) and figures["ratio"] > 0


def test_search_benchmark_prints_latency_and_recall() -> None:
    figures = _last_json(str(BENCH / "search.py"), "--count", "2000")
    assert {"p95_ms", "recall_at_10"} <= set(figures)
    assert 0 <= float(str(figures["recall_at_10"])) <= 1


def test_health_sweep_benchmark_prints_its_ratio_and_connection_peak() -> None:
    figures = _last_json(str(BENCH / "health_sweep.py"), "--instances", "40", "--servers", "2",
                         "--concurrency", "8", "--timeout", "1", "--rounds", "1")
    assert figures["benchmark"] == "health_sweep" and figures["instances"] == 40
    assert figures["checked"] == 40 and figures["failed"] == 6  # 10% stopped + 5% black hole
    assert isinstance(figures["ratio_vs_bare"], float) and figures["ratio_vs_bare"] > 0
    assert 0 < int(str(figures["max_open_connections"])) <= 8


def test_export_benchmark_prints_its_figures() -> None:
    figures = _last_json(str(BENCH / "export.py"), "--count", "500")
    assert figures["benchmark"] == "export" and figures["rows"] == 500
    assert {"seconds", "mb_per_s", "peak_rss_mb", "ratio_vs_pg_dump",
            "ratio_tables_vs_pg_dump"} <= set(figures)
    assert float(str(figures["ratio_vs_pg_dump"])) > 0
    assert float(str(figures["ratio_tables_vs_pg_dump"])) > 0


def test_fleet_migrate_benchmark_prints_its_speedup() -> None:
    figures = _last_json(str(BENCH / "fleet_migrate.py"), "--databases", "6", "--servers",
                         "2", "--delay-ms", "5", "--serial-sample", "2", "--noop", "500")
    assert figures["benchmark"] == "fleet_migrate" and figures["databases"] == 6
    assert {"seconds", "per_database_ms", "speedup_vs_serial", "noop_check_ms"} <= set(figures)
    assert isinstance(figures["speedup_vs_serial"], float) and figures["speedup_vs_serial"] > 0
