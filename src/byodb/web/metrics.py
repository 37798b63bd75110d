"""``GET /metrics``: the fleet's health in Prometheus text format (docs/operations.md,
"Metrics").

Two sources:

- **Main's aggregates, read at scrape time** (:class:`FleetCollector`): instances by
  connection status and by schema version, the last health sweep, per-instance migrations by
  state, job queue depth. Counts only (``byodb.maindb.fleet_aggregates``); no label ever
  holds a user id, a host or a URL.
- **Request latency by placement**, observed in this process
  (:class:`RequestLatencyMiddleware`): a request counts under ``user`` when the router gave
  it a connection to the user's own database, under ``main`` when only main served it.
  Requests that reached no database (pages, static files, health probes) are not counted.

Each app has its own registry (never prometheus_client's global one), so several apps in
one process — tests, above all — never share or clash over a metric.

A slow main never hangs a scrape: main's aggregates are read in a task the scrape waits on
for at most ``BYODB_METRICS_TIMEOUT`` seconds; what was read by then is reported, and
``byodb_metrics_main_complete`` says 0. Scrapes that arrive while a read is still under way
share it, so a slow main gets one query at a time from here, not one per scrape.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Iterable

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, CollectorRegistry, Histogram
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.types import ASGIApp, Receive, Scope, Send

from byodb.content import latest_schema_version
from byodb.errors import Unauthenticated
from byodb.jobs.queue import WORKER_CONCURRENCY
from byodb.maindb.fleet_aggregates import (
    QUEUED_JOB_STATUSES,
    FleetAggregates,
    read_fleet_aggregates,
)
from byodb.routing.request_placement import recording_placements, request_placement
from byodb.settings import Settings
from byodb.web.deps import RuntimeDep

log = logging.getLogger(__name__)

router = APIRouter(tags=["ops"])

PLACEMENTS = ("main", "user")
# Up to the user-request deadline (30 s by default) and past it: a stuck database shows.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
OTHER_QUEUE = "other"


class FleetCollector(Collector):
    """Turns the aggregates of one scrape into metric families (set by :meth:`render`)."""

    def __init__(self) -> None:
        self.aggregates = FleetAggregates()

    def collect(self) -> Iterable[Metric]:
        fleet = self.aggregates
        complete = GaugeMetricFamily(
            "byodb_metrics_main_complete",
            "1 when every aggregate from the main database was read within the scrape "
            "deadline; 0 when main was too slow or failed (the others are then missing)")
        complete.add_metric([], 1 if fleet.complete else 0)
        yield complete
        latest = GaugeMetricFamily(
            "byodb_content_schema_latest_version",
            "The newest content schema version this release knows")
        latest.add_metric([], latest_schema_version())
        yield latest
        if fleet.instances_by_status is not None:
            yield _labelled("byodb_instances", "User database instances by connection status",
                            "status", fleet.instances_by_status)
        if fleet.instances_by_schema_version is not None:
            by_version = {("unknown" if version is None else str(version)): count
                          for version, count in fleet.instances_by_schema_version.items()}
            yield _labelled("byodb_instances_by_schema_version",
                            "Instances connected, in error or moving, by the content schema "
                            "version main recorded for them", "schema_version", by_version)
        if fleet.sweeps_read:
            yield from _sweep_families(fleet)
        if fleet.migrations_by_state is not None:
            yield _labelled("byodb_instance_migrations",
                            "Per-instance schema migration records by state",
                            "state", fleet.migrations_by_state)
        if fleet.jobs_by_queue is not None:
            yield _queue_depth(fleet.jobs_by_queue)


def _labelled(name: str, documentation: str, label: str, counts: dict[str, int]) -> Metric:
    family = GaugeMetricFamily(name, documentation, labels=[label])
    for value, count in sorted(counts.items()):
        family.add_metric([value], count)
    return family


def _sweep_families(fleet: FleetAggregates) -> Iterable[Metric]:
    sweep = fleet.last_sweep
    if sweep is None:  # no sweep has finished yet: nothing to say (alert on absence)
        return
    finished = GaugeMetricFamily(
        "byodb_health_sweep_last_finished_timestamp_seconds",
        "When the last health sweep finished (Unix time)")
    finished.add_metric([], sweep.finished_at.timestamp())
    yield finished
    if sweep.duration_s is not None:
        duration = GaugeMetricFamily("byodb_health_sweep_last_duration_seconds",
                                     "How long the last finished health sweep took")
        duration.add_metric([], sweep.duration_s)
        yield duration
    for name, value, documentation in (
            ("checked", sweep.checked, "Instances the last health sweep checked"),
            ("healthy", sweep.healthy, "Checks of the last health sweep that passed"),
            ("failed", sweep.failed, "Checks of the last health sweep that failed"),
            ("recovered", sweep.recovered,
             "Instances the last health sweep found back after an error")):
        family = GaugeMetricFamily(f"byodb_health_sweep_last_{name}", documentation)
        family.add_metric([], value)
        yield family


def _queue_depth(jobs: dict[tuple[str, str], int]) -> Metric:
    # Only byodb's own queue names become labels; anything else is summed under "other".
    counts = {(queue, status): 0 for queue in WORKER_CONCURRENCY
              for status in QUEUED_JOB_STATUSES}
    for (queue, status), count in jobs.items():
        if status not in QUEUED_JOB_STATUSES:
            continue
        key = (queue if queue in WORKER_CONCURRENCY else OTHER_QUEUE, status)
        counts[key] = counts.get(key, 0) + count
    family = GaugeMetricFamily("byodb_job_queue_depth",
                               "Jobs waiting (todo) or running (doing), by queue",
                               labels=["queue", "status"])
    for (queue, status), count in sorted(counts.items()):
        family.add_metric([queue, status], count)
    return family


class FleetReader:
    """Reads main's aggregates under a deadline; concurrent scrapes share one read."""

    def __init__(self, main: AsyncEngine, *, timeout_s: float):
        self._main = main
        self._timeout_s = timeout_s
        self._running: asyncio.Task[None] | None = None
        self._current = FleetAggregates()

    async def read(self) -> FleetAggregates:
        if self._running is None or self._running.done():
            self._current = FleetAggregates()
            self._running = asyncio.create_task(self._read(self._current))
        current = self._current
        # Wait without cancelling: a cancelled query on a hung server can take seconds to
        # clean up, and the scrape must not wait for that (the task ends on its own).
        await asyncio.wait({self._running}, timeout=self._timeout_s)
        return current

    async def _read(self, into: FleetAggregates) -> None:
        try:
            async with asyncio.timeout(self._timeout_s):
                await read_fleet_aggregates(self._main, into, timeout_s=self._timeout_s)
        except TimeoutError:
            log.warning("metrics: main did not answer within %g s; reporting what was read",
                        self._timeout_s)
        except Exception as exc:  # report what was read; the driver's text may name a host
            log.warning("metrics: reading main's aggregates failed: %s", type(exc).__name__)


class MetricsExporter:
    """One app's metrics: its own registry, the latency histogram, the fleet collector."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.registry = CollectorRegistry()
        self.latency = Histogram(
            "byodb_request_duration_seconds",
            "HTTP request duration by where the request's content was served: main, or the "
            "user's own database", labelnames=["placement"], buckets=LATENCY_BUCKETS,
            registry=self.registry)
        for placement in PLACEMENTS:  # both series exist from the start (rate() sees 0)
            self.latency.labels(placement)
        self.fleet = FleetCollector()
        self.registry.register(self.fleet)
        self._reader: FleetReader | None = None

    def reader(self, main: AsyncEngine) -> FleetReader:
        if self._reader is None:
            self._reader = FleetReader(main, timeout_s=self.settings.metrics_timeout_s)
        return self._reader

    def render(self, aggregates: FleetAggregates) -> bytes:
        # No await between setting the aggregates and generating: scrapes never mix.
        self.fleet.aggregates = aggregates
        return generate_latest(self.registry)


class RequestLatencyMiddleware:
    """Times every HTTP request and counts it under the placement the router noted."""

    def __init__(self, app: ASGIApp, exporter: MetricsExporter):
        self.app = app
        self.exporter = exporter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        with recording_placements() as seen:
            try:
                await self.app(scope, receive, send)
            finally:
                placement = request_placement(seen)
                if placement is not None:
                    self.exporter.latency.labels(placement.value).observe(
                        time.perf_counter() - started)


def exporter_of(request: Request) -> MetricsExporter:
    exporter: MetricsExporter = request.app.state.metrics
    return exporter


def require_metrics_token(request: Request) -> None:
    """With ``BYODB_METRICS_TOKEN`` set, only ``Authorization: Bearer <token>`` passes."""
    expected = exporter_of(request).settings.metrics_token
    if not expected:
        return
    scheme, _, presented = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        raise Unauthenticated("the metrics need the metrics token: send "
                              "'Authorization: Bearer <BYODB_METRICS_TOKEN>'")
    # Constant time: how much of a guess matched must not show in the response time.
    if not hmac.compare_digest(presented.strip().encode(), expected.encode()):
        raise Unauthenticated("the metrics token is not valid")


@router.get("/metrics", dependencies=[Depends(require_metrics_token)],
            response_class=Response,
            responses={200: {"content": {CONTENT_TYPE_PLAIN_0_0_4: {}},
                             "description": "Prometheus text format"},
                       401: {"description": "BYODB_METRICS_TOKEN is set and the request "
                                            "does not carry it"}})
async def metrics(request: Request, runtime: RuntimeDep) -> Response:
    """The fleet's aggregates and this process's request latency, for Prometheus."""
    exporter = exporter_of(request)
    aggregates = await exporter.reader(runtime.main).read()
    return Response(exporter.render(aggregates), media_type=CONTENT_TYPE_PLAIN_0_0_4)


def install_metrics(app: FastAPI, settings: Settings) -> None:
    """``GET /metrics`` and the latency middleware (outermost: it times the whole request)."""
    exporter = MetricsExporter(settings)
    app.state.metrics = exporter
    app.add_middleware(RequestLatencyMiddleware, exporter=exporter)
    app.include_router(router)

