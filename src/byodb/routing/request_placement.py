"""Which databases the current request was routed to, for the request-latency metric.

The web layer opens a record per HTTP request (:func:`recording_placements`); the router
notes every placement it hands out a connection for (:func:`note_placement`). The record is
one mutable set held in a context variable: a set added to in a child task or a thread that
copied the context is still the request's own set, so nothing is lost on the way back.
Outside a request (job workers, the CLI) there is no record and noting costs nothing.

Only the placement is kept — never a user id, a host or a table — so what the metric
reports is an aggregate by construction.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from byodb.instances.lifecycle.states import Placement

_current: ContextVar[set[Placement] | None] = ContextVar("byodb_request_placements",
                                                          default=None)


@contextmanager
def recording_placements() -> Iterator[set[Placement]]:
    """A fresh record for the code run inside; the set holds what the router noted."""
    seen: set[Placement] = set()
    token = _current.set(seen)
    try:
        yield seen
    finally:
        _current.reset(token)


def note_placement(placement: Placement) -> None:
    """Record that the current request uses a database of ``placement`` (no-op outside)."""
    seen = _current.get()
    if seen is not None:
        seen.add(placement)


def request_placement(seen: set[Placement]) -> Placement | None:
    """The placement a request counts under: the user's database when it touched it at all
    (its latency is then the user database's), main when only main, None when neither."""
    if Placement.user in seen:
        return Placement.user
    if Placement.main in seen:
        return Placement.main
    return None
