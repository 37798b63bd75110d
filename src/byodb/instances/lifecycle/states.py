"""State machines as data (DESIGN.md §4): each enum with its allowed transitions in one place."""

from __future__ import annotations

from enum import StrEnum

from byodb.errors import Conflict


class ConnectionStatus(StrEnum):
    none = "none"
    pending = "pending"
    connected = "connected"
    error = "error"
    disconnected = "disconnected"
    moving = "moving"


class DeploymentStatus(StrEnum):
    not_started = "not_started"
    deploying = "deploying"
    deployed = "deployed"
    failed = "failed"


class Placement(StrEnum):
    """Where something lives: the main database or the user's own."""

    main = "main"
    user = "user"


class ContentAccess(StrEnum):
    """What a content request of a user may do now (decided by
    :meth:`byodb.instances.lifecycle.config_store.DatabaseConfig.access`)."""

    main = "main"  # their content is on main: use it
    user = "user"  # their content is on their database and it is usable
    held = "held"  # a move or deploy is under way: wait (503, retry shortly)
    unavailable = "unavailable"  # their database is in error: block (503), never fall back


_C = ConnectionStatus
CONNECTION_TRANSITIONS: dict[ConnectionStatus, frozenset[ConnectionStatus]] = {
    _C.none: frozenset({_C.pending, _C.disconnected}),
    _C.pending: frozenset({_C.pending, _C.connected, _C.error, _C.moving, _C.disconnected}),
    _C.connected: frozenset({_C.connected, _C.error, _C.moving, _C.disconnected, _C.pending}),
    _C.error: frozenset({_C.connected, _C.error, _C.pending, _C.moving, _C.disconnected}),
    _C.moving: frozenset({_C.connected, _C.error, _C.moving, _C.disconnected}),
    _C.disconnected: frozenset({_C.pending, _C.disconnected}),
}

_D = DeploymentStatus
DEPLOYMENT_TRANSITIONS: dict[DeploymentStatus, frozenset[DeploymentStatus]] = {
    _D.not_started: frozenset({_D.deploying, _D.not_started}),
    _D.deploying: frozenset({_D.deploying, _D.deployed, _D.failed}),
    _D.deployed: frozenset({_D.deploying, _D.deployed, _D.not_started}),
    _D.failed: frozenset({_D.deploying, _D.not_started}),
}

def check_connection_transition(current: ConnectionStatus, target: ConnectionStatus) -> None:
    if target not in CONNECTION_TRANSITIONS[current]:
        raise Conflict(f"cannot go from connection status {current} to {target}")


def check_deployment_transition(current: DeploymentStatus, target: DeploymentStatus) -> None:
    if target not in DEPLOYMENT_TRANSITIONS[current]:
        raise Conflict(f"cannot go from deployment status {current} to {target}")
