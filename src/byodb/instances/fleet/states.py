"""The fleet's state machines as data (as :mod:`byodb.instances.lifecycle.states` does for a
user's connection): a per-instance migration record's status and a fleet run's status, each
an enum with its allowed transitions in one table and one function that checks them."""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from byodb.errors import Conflict


class RecordStatus(StrEnum):
    """A ``byod_migrations`` record: ``pending → running → completed | failed``."""

    pending = "pending"  # waiting for a worker (new, or tried and left for later)
    running = "running"  # a worker holds its lease
    completed = "completed"
    failed = "failed"  # a permanent error, left for an operator


class RunStatus(StrEnum):
    """A fleet run (``migrations`` row)."""

    running = "running"
    halted = "halted"  # a wave's failures passed the run's ratio; an operator retries
    completed = "completed"
    incomplete = "incomplete"  # settled with instances failed or waiting to be reachable


_R = RecordStatus
RECORD_TRANSITIONS: dict[RecordStatus, frozenset[RecordStatus]] = {
    # A run (re)joins a pending record; a worker claims it.
    _R.pending: frozenset({_R.pending, _R.running}),
    # Its lease taken over (renewed by the same job), or released with the outcome.
    _R.running: frozenset({_R.running, _R.pending, _R.completed, _R.failed}),
    # An operator's retry, or a new run of the same target.
    _R.failed: frozenset({_R.pending}),
    # A dry run answers again; a real record, once completed, stays so (:func:`rejoinable`).
    _R.completed: frozenset({_R.pending}),
}

_U = RunStatus
RUN_TRANSITIONS: dict[RunStatus, frozenset[RunStatus]] = {
    # A wave opens (still running), or the run halts or settles.
    _U.running: frozenset({_U.running, _U.halted, _U.completed, _U.incomplete}),
    # Retrying the failed instances resumes a run, whatever it ended as.
    _U.halted: frozenset({_U.running}),
    _U.incomplete: frozenset({_U.running, _U.completed}),  # the last instances reached
    _U.completed: frozenset({_U.running}),
}

ACTIVE_RUNS = frozenset({RunStatus.running, RunStatus.incomplete})
"""Runs that still take decisions (the fleet's tick advances them)."""


def check_record_transition(current: RecordStatus, target: RecordStatus) -> None:
    if target not in RECORD_TRANSITIONS[current]:
        raise Conflict(f"cannot go from migration record status {current} to {target}")


def check_run_transition(current: RunStatus, target: RunStatus) -> None:
    if target not in RUN_TRANSITIONS[current]:
        raise Conflict(f"cannot go from migration run status {current} to {target}")


def rejoinable(*, dry_run: bool) -> frozenset[RecordStatus]:
    """Records a run puts back to ``pending``: those that may go there and no worker holds
    (not ``running``) — for a real run, not ``completed`` either."""
    return frozenset(status for status, targets in RECORD_TRANSITIONS.items()
                     if RecordStatus.pending in targets and status is not RecordStatus.running
                     and (dry_run or status is not RecordStatus.completed))


def as_stored(statuses: Iterable[StrEnum]) -> list[str]:
    """The statuses as stored (for a SQL ``IN``), in a stable order."""
    return sorted(status.value for status in statuses)
