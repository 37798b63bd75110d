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
            "ratio_tables_vs_pg_dump", "loop_stall_ms", "idle_loop_stall_ms"} <= set(figures)
    assert float(str(figures["ratio_vs_pg_dump"])) > 0
    assert float(str(figures["ratio_tables_vs_pg_dump"])) > 0


def test_fleet_migrate_benchmark_prints_its_speedup() -> None:
    figures = _last_json(str(BENCH / "fleet_migrate.py"), "--databases", "6", "--servers",
                         "2", "--delay-ms", "5", "--serial-sample", "2", "--noop", "500")
    assert figures["benchmark"] == "fleet_migrate" and figures["databases"] == 6
    assert {"seconds", "per_database_ms", "speedup_vs_serial", "noop_check_ms"} <= set(figures)
    assert isinstance(figures["speedup_vs_serial"], float) and figures["speedup_vs_serial"] > 0


def test_idle_benchmark_prints_connections_after_idle_and_opens_per_day() -> None:
    figures = _last_json(str(BENCH / "idle.py"), "--users", "6", "--servers", "2",
                         "--hours", "2", "--idle-timeout", "1", "--grace", "3")
    assert figures["benchmark"] == "idle" and figures["users"] == 6
    assert figures["connections_after_idle"] == 0
    assert int(str(figures["connections_after_idle_without_timeout"])) > 0
    assert 0 < float(str(figures["opens_per_idle_db_per_day"])) <= 24
    assert figures["probes_of_active_dbs"] == 0


def test_embeddings_benchmark_prints_recall_for_both_models() -> None:
    figures = _last_json(str(BENCH / "embeddings.py"), "--pairs", "20",
                         "--throughput-texts", "50")
    assert figures["benchmark"] == "embeddings" and figures["pairs"] == 20
    recall = figures["recall_at_5"]
    assert isinstance(recall, dict) and set(recall) == {"default", "hashing"}
    assert all(0 <= float(v) <= 1 for v in recall.values())
    assert {"ratio_vs_hashing", "throughput_texts_per_s", "meets_targets"} <= set(figures)


def test_import_benchmark_prints_its_memory_and_latency_ratio() -> None:
    figures = _last_json(str(BENCH / "import.py"), "--conversations", "40", "--messages", "4",
                         "--samples", "20")
    assert figures["benchmark"] == "import" and figures["conversations"] == 40
    assert figures["messages"] == figures["expected_messages"] == 160
    assert {"seconds", "peak_rss_mb", "before_p95_ms", "during_p95_ms"} <= set(figures)
    assert isinstance(figures["other_p95_ratio"], float) and figures["other_p95_ratio"] > 0


def test_cli_start_benchmark_prints_help_and_status_times() -> None:
    figures = _last_json(str(BENCH / "cli_start.py"), "--runs", "1")
    assert figures["benchmark"] == "cli_start" and figures["runs"] == 1
    assert {"python_s", "help_s", "status_s", "meets_targets"} <= set(figures)
    assert float(str(figures["help_raw_s"])) > 0 and float(str(figures["status_raw_s"])) > 0
