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
