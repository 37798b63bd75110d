"""The health sweep: every instance that is connected or in error, checked with bounded
concurrency, its state moved with hysteresis, the outcome recorded in
``health_sweeps`` — and one alert when an instance goes down, one when it recovers.

Order of a sweep:

1. take the sweep lock on main (``pg_try_advisory_lock``): two processes never sweep at
   once; a scheduled sweep also re-reads, under the lock, whether one is due;
2. record the sweep (``health_sweeps``), load the instances it covers — for a scheduled
   sweep only those due (:func:`due_for_probe`): a database whose user's requests
   succeeded recently, or that was checked less than the idle interval ago, is left
   asleep (passive health, ``byodb.instances.health.passive``; this process's remembered
   successes are written first);
3. check them, at most ``concurrency`` at a time — each check is one connection with its
   own deadline (``HealthChecks.check``), so at most ``concurrency`` connections
   are ever open and a dead server costs one deadline of one slot;
4. apply each result (``byodb.instances.health.checks``): a change of status at once
   (``record``), every check's facts and failure count in batches (``record_facts``);
5. report outages and recoveries: users' notifications and alert emails, recorded in one
   transaction with the fact that they were reported (never once per sweep);
6. close the sweep's record;
7. deliver the alert outbox (``byodb.alerts.outbox``): after the sweep's work is recorded,
   so nothing a mail server or an alert does can change the sweep's outcome (a failed
   delivery is retried by the next sweep), then release the lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any
from uuid import UUID

from sqlalchemy import ColumnElement, and_, func, insert, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from byodb.alerts import AlertItem, AlertKind, AlertSettings, compose_alerts
from byodb.alerts.outbox import Delivery, deliver_pending, record_alerts
from byodb.ids import new_id
from byodb.instances.health.check import CheckedInstance, HealthResult, HealthTransition
from byodb.instances.health.checks import HealthChecks
from byodb.instances.health.passive import PassiveHealth
from byodb.instances.lifecycle.config_store import DatabaseConfig
from byodb.instances.lifecycle.own_database import ON_OWN_DEPLOYED_DATABASE
from byodb.instances.lifecycle.states import ConnectionStatus
from byodb.maindb.tables import health_sweeps, notifications
from byodb.maindb.tables import user_database_config as udc

log = logging.getLogger(__name__)

SWEEP_LOCK_KEY = 0x6279_6F64_6865  # "byodhe": one sweep at a time across every process
TICK_SLACK_S = 30.0
"""A scheduled tick sweeps when the last sweep began at least ``interval - slack`` seconds
before the tick: ticks come once a minute and a sweep starts a moment after its tick, so
without slack a 300 s interval would sweep every 360 s."""
LOCK_RETRY_S = 0.5
LOCK_PATIENCE_S = 900.0
"""An operator's sweep waits this long at most for a running sweep to end."""

Progress = Callable[[int, int], None]


class SweepTrigger(StrEnum):
    schedule = "schedule"
    operator = "operator"


# Instances the sweep covers: switched over to their own deployed database (connected or in
# error). One whose first deploy or move never finished is not "down" — provisioning owns it.
COVERED = and_(ON_OWN_DEPLOYED_DATABASE,
               udc.c.connection_status.in_([ConnectionStatus.connected.value,
                                            ConnectionStatus.error.value]),
               udc.c.encrypted_url.is_not(None), udc.c.previous_encrypted_url.is_(None))


def due_for_probe(cutoff: datetime) -> ColumnElement[bool]:
    """Which covered instances a scheduled sweep probes, given ``cutoff`` = now minus the idle
    interval: one in ``error`` or with failed checks counted (so an outage is confirmed and
    a recovery found at the sweep interval), one never checked, and one whose last check —
    a probe or a successful request (passive health) — is at least the idle interval old.
    The rest rest: a database that scales to zero is not woken to be asked how it is."""
    return or_(udc.c.connection_status == ConnectionStatus.error.value,
               udc.c.consecutive_failures > 0,
               udc.c.last_health_check_at.is_(None),
               udc.c.last_health_check_at <= cutoff)


@dataclass(frozen=True)
class SweepSummary:
    sweep_id: UUID
    trigger: SweepTrigger
    checked: int
    healthy: int
    failed: int
    recovered: int
    went_down: int
    seconds: float
    alerts: Delivery = field(default_factory=Delivery)
    resting: int = 0  # covered but not probed: checked (or used) within the idle interval

    def as_json(self) -> dict[str, Any]:
        return {"checked": self.checked, "healthy": self.healthy, "failed": self.failed,
                "recovered": self.recovered, "seconds": round(self.seconds, 3)}


class HealthSweeper:
    """Runs sweeps for one process (the worker's job, the CLI, a benchmark)."""

    def __init__(self, main: AsyncEngine, checks: HealthChecks, *, concurrency: int,
                 alerts: AlertSettings, idle_interval_s: float | None = None,
                 passive: PassiveHealth | None = None):
        """``idle_interval_s``: a scheduled sweep probes a healthy database at most this
        often (None: every sweep probes every instance). ``passive``: this process's
        successful requests, written to main before each sweep."""
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self._main = main
        self.checks = checks
        self.concurrency = concurrency
        self.alerts = alerts
        self.idle_interval_s = idle_interval_s
        self.passive = passive

    # -- entry points ----------------------------------------------------------------------
    async def sweep(self, trigger: SweepTrigger = SweepTrigger.operator, *,
                    progress: Progress | None = None) -> SweepSummary | None:
        """One sweep now; None when another process is sweeping (that sweep covers it)."""
        async with self._sweep_lock() as held:
            if not held:
                return None
            return await self._sweep(trigger, progress)

    async def sweep_when_free(self, trigger: SweepTrigger = SweepTrigger.operator, *,
                              progress: Progress | None = None,
                              patience_s: float = LOCK_PATIENCE_S,
                              on_wait: Callable[[], None] | None = None
                              ) -> SweepSummary | None:
        """One sweep now, after the one running elsewhere (if any) ends: an operator who
        asks for a check wants one that starts after the request. None when the other
        sweep outlasts ``patience_s``."""
        deadline = time.monotonic() + patience_s
        while True:
            summary = await self.sweep(trigger, progress=progress)
            if summary is not None or time.monotonic() >= deadline:
                return summary
            if on_wait is not None:
                on_wait()
                on_wait = None
            await asyncio.sleep(LOCK_RETRY_S)

    async def last_started(self) -> float | None:
        """When the latest sweep began (epoch seconds), None before the first."""
        async with self._main.connect() as conn:
            last = (await conn.execute(
                select(func.max(health_sweeps.c.started_at)))).scalar_one_or_none()
        return None if last is None else float(last.timestamp())

    async def sweep_if_due(self, tick: float, interval_s: float) -> SweepSummary | None:
        """The scheduled sweep of the tick at ``tick`` (epoch seconds), if one is due."""
        async with self._sweep_lock() as held:
            if not held:
                return None
            async with self._main.connect() as conn:
                last = (await conn.execute(
                    select(func.max(health_sweeps.c.started_at)))).scalar_one_or_none()
            if last is not None and tick - last.timestamp() < interval_s - TICK_SLACK_S:
                return None
            return await self._sweep(SweepTrigger.schedule, None)

    async def check_one(self, user_id: str) -> tuple[HealthResult, HealthTransition] | None:
        """Check one user's database now, as a sweep would (its state moves the same way;
        an outage or recovery is reported by the next sweep). None when the user has no
        instance the sweep covers."""
        async with self._main.connect() as conn:
            row = (await conn.execute(select(udc).where(COVERED, udc.c.user_id == user_id))
                   ).first()
        if row is None:
            return None
        config = DatabaseConfig.from_row(row)
        result = await self.checks.check(config)
        transition = await self.checks.record(config, result)
        await self.checks.record_facts([CheckedInstance(config, result, transition)])
        return result, transition

    @asynccontextmanager
    async def _sweep_lock(self) -> AsyncIterator[bool]:
        """Hold the sweep lock on a main connection of its own for the whole sweep (a
        session lock: released if this process dies, since its connection closes)."""
        async with self._main.connect() as conn:
            held = bool((await conn.execute(text("select pg_try_advisory_lock(:key)"),
                                            {"key": SWEEP_LOCK_KEY})).scalar())
            await conn.commit()
            try:
                yield held
            finally:
                if held:
                    await conn.execute(text("select pg_advisory_unlock(:key)"),
                                       {"key": SWEEP_LOCK_KEY})
                    await conn.commit()

    # -- the sweep -------------------------------------------------------------------------
    async def _sweep(self, trigger: SweepTrigger, progress: Progress | None) -> SweepSummary:
        started = time.monotonic()
        sweep_id = new_id()
        await self._flush_passive()
        # An operator's sweep checks everyone (they asked); a scheduled one lets idle
        # databases sleep.
        idle_aware = trigger is SweepTrigger.schedule and self.idle_interval_s is not None
        due: ColumnElement[bool] = COVERED
        if idle_aware:
            assert self.idle_interval_s is not None
            due = and_(COVERED, due_for_probe(
                self.checks.now() - timedelta(seconds=self.idle_interval_s)))
        async with self._main.begin() as conn:
            await conn.execute(insert(health_sweeps).values(id=sweep_id, trigger=trigger.value))
            rows = (await conn.execute(select(udc).where(due).order_by(udc.c.user_id))).all()
            covered = (await conn.execute(select(func.count()).select_from(udc).where(COVERED))
                       ).scalar_one() if idle_aware else len(rows)
        resting = covered - len(rows)
        configs = [DatabaseConfig.from_row(row) for row in rows]
        try:
            checked = await self._check_all(configs, progress)
            await self.checks.record_facts(checked)
            went_down = await self._report()
        except BaseException:
            # A sweep that died (main lost, cancelled) is closed, not left "running".
            with contextlib.suppress(Exception):
                async with self._main.begin() as conn:
                    await conn.execute(update(health_sweeps)
                                       .where(health_sweeps.c.id == sweep_id)
                                       .values(finished_at=func.now(), duration_ms=round(
                                           (time.monotonic() - started) * 1000)))
            raise
        summary = SweepSummary(
            sweep_id=sweep_id, trigger=trigger, checked=len(checked),
            healthy=sum(1 for c in checked if c.result.ok),
            failed=sum(1 for c in checked if not c.result.ok),
            recovered=sum(1 for c in checked if c.transition is HealthTransition.recovered),
            went_down=went_down, seconds=time.monotonic() - started, resting=resting)
        async with self._main.begin() as conn:
            await conn.execute(update(health_sweeps).where(health_sweeps.c.id == sweep_id).values(
                finished_at=func.now(), checked=summary.checked, healthy=summary.healthy,
                failed=summary.failed, recovered=summary.recovered,
                duration_ms=round(summary.seconds * 1000)))
        # The sweep's own work is recorded: mail is delivered after it, and nothing that
        # happens to the mail reaches the sweep's outcome.
        summary = dataclasses.replace(summary, alerts=await self._deliver())
        log.info("health sweep (%s): %d checked, %d failed, %d recovered, %d left asleep "
                 "in %.1f s", trigger, summary.checked, summary.failed, summary.recovered,
                 summary.resting, summary.seconds)
        return summary

    async def _flush_passive(self) -> None:
        if self.passive is None:
            return
        try:
            await self.passive.flush()
        except Exception as exc:  # the sweep then probes a few more; it never fails for it
            log.warning("could not record passive health checks: %s", type(exc).__name__)

    async def _check_all(self, configs: Sequence[DatabaseConfig],
                         progress: Progress | None) -> list[CheckedInstance]:
        slots = asyncio.Semaphore(self.concurrency)
        done: list[CheckedInstance] = []

        async def one(config: DatabaseConfig) -> None:
            async with slots:
                result = await self.checks.check(config)
            try:
                transition = await self.checks.record(config, result)
            except Exception:  # one row's bookkeeping must not end everyone's sweep
                log.exception("could not record a health result")
                transition = HealthTransition.skipped
            done.append(CheckedInstance(config, result, transition))
            if progress is not None:
                progress(len(done), len(configs))

        if progress is not None:
            progress(0, len(configs))
        await asyncio.gather(*(one(config) for config in configs))
        return done

    # -- reporting -------------------------------------------------------------------------
    async def _deliver(self) -> Delivery:
        """Deliver the alert outbox (``byodb.alerts.outbox``). Never raises: a failure here
        (main lost meanwhile, a bug) is logged and the alerts wait for the next sweep."""
        try:
            return await deliver_pending(self._main, self.alerts)
        except Exception as exc:  # mail must never end a sweep in error
            log.warning("alert delivery failed (retried by the next sweep): %s",
                        type(exc).__name__)
            return Delivery()

    async def _report(self) -> int:
        """Report outages confirmed by the sweep and recoveries, once each (users'
        notifications and queued alert emails, in one transaction). Returns how many
        instances were newly reported down."""
        threshold = self.checks.limits.failures
        async with self._main.begin() as conn:
            down = (await conn.execute(
                select(udc.c.user_id, udc.c.host,
                       func.coalesce(udc.c.health_error_code,
                                     udc.c.connection_error_code).label("code"))
                .where(COVERED, udc.c.connection_status == ConnectionStatus.error.value,
                       udc.c.consecutive_failures >= threshold,
                       udc.c.outage_reported_at.is_(None))
                .order_by(udc.c.user_id).with_for_update())).all()
            reported = (await conn.execute(
                select(udc.c.user_id, udc.c.host, udc.c.connection_status)
                .where(udc.c.outage_reported_at.is_not(None),
                       udc.c.connection_status != ConnectionStatus.error.value)
                .order_by(udc.c.user_id).with_for_update())).all()
            up = [r for r in reported if r.connection_status == ConnectionStatus.connected.value]
            await self._mark_reported(conn, [r.user_id for r in down],
                                      [r.user_id for r in reported])
            await self._notify_users(conn, [r.user_id for r in down], [r.user_id for r in up])
            if self.alerts.enabled:
                groups = self.alerts.group_threshold
                await record_alerts(conn, [
                    *compose_alerts(AlertKind.down, [AlertItem(r.user_id, r.host, r.code)
                                                     for r in down], groups),
                    *compose_alerts(AlertKind.recovered, [AlertItem(r.user_id, r.host, None)
                                                          for r in up], groups)])
            elif down:
                log.warning("%d user databases went down; no alert email is configured "
                            "(BYODB_SMTP_URL, BYODB_ALERT_EMAILS)", len(down))
        return len(down)

    @staticmethod
    async def _mark_reported(conn: AsyncConnection, down: list[str],
                             cleared: list[str]) -> None:
        # Not a state change (no NOTIFY): the fact that an outage was reported, so the next
        # sweeps do not report it again; cleared once the instance is no longer in error
        # (recovered, or disconnected — then without a recovery notice).
        if down:
            await conn.execute(update(udc).where(udc.c.user_id.in_(down))
                               .values(outage_reported_at=func.now()))
        if cleared:
            await conn.execute(update(udc).where(udc.c.user_id.in_(cleared))
                               .values(outage_reported_at=None))

    @staticmethod
    async def _notify_users(conn: AsyncConnection, down: list[str], up: list[str]) -> None:
        rows = [{"id": new_id(), "user_id": user_id, "kind": "byod_down",
                 "message": "Your database stopped answering. byodb keeps checking it and "
                            "reconnects you by itself as soon as it is back; nothing is "
                            "stored anywhere else meanwhile."} for user_id in down]
        rows += [{"id": new_id(), "user_id": user_id, "kind": "byod_recovered",
                  "message": "Your database is back: you are connected again."}
                 for user_id in up]
        if rows:
            await conn.execute(insert(notifications), rows)
