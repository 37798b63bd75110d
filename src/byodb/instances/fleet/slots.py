"""Spreading a wave's instances over a run's concurrency slots (procrastinate lock slots):
at most ``concurrency`` instances at once in all, ``per_host`` on any one host."""

from __future__ import annotations

import uuid
from dataclasses import dataclass


@dataclass(frozen=True)
class PlannedJob:
    """One instance's job: which record, on which concurrency slot."""

    record_id: uuid.UUID
    slot: int



def assign_slots(hosts: list[tuple[uuid.UUID, str | None]], concurrency: int,
                 per_host: int) -> list[PlannedJob]:
    """Spread instances over ``concurrency`` slots (a job runs only while no other job
    holds its slot) so that one host never gets more than ``per_host`` slots: at most
    ``concurrency`` instances at once in all, ``per_host`` on any one host. Hosts with the
    most instances choose first, each taking the least loaded slots, so the busiest slot
    (which sets how long the wave takes) carries as little as it can."""
    by_host: dict[str | None, list[uuid.UUID]] = {}
    for record_id, host in hosts:
        by_host.setdefault(host, []).append(record_id)
    width = min(per_host, concurrency)
    load = [0] * concurrency
    planned: list[PlannedJob] = []
    for _, record_ids in sorted(by_host.items(), key=lambda kv: (-len(kv[1]), str(kv[0]))):
        slots = sorted(range(concurrency), key=lambda slot: (load[slot], slot))[:width]
        for n, record_id in enumerate(record_ids):
            slot = slots[n % width]
            load[slot] += 1
            planned.append(PlannedJob(record_id, slot))
    return planned
