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


class MigrationStatus(StrEnum):
    pending = "pending"
    running = "running"
    completed = "completed"
    failed = "failed"


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

_M = MigrationStatus
MIGRATION_TRANSITIONS: dict[MigrationStatus, frozenset[MigrationStatus]] = {
    _M.pending: frozenset({_M.running}),
    _M.running: frozenset({_M.completed, _M.failed}),
    _M.failed: frozenset({_M.running}),
    _M.completed: frozenset(),
}


def check_connection_transition(current: ConnectionStatus, target: ConnectionStatus) -> None:
    if target not in CONNECTION_TRANSITIONS[current]:
        raise Conflict(f"cannot go from connection status {current} to {target}")


def check_deployment_transition(current: DeploymentStatus, target: DeploymentStatus) -> None:
    if target not in DEPLOYMENT_TRANSITIONS[current]:
        raise Conflict(f"cannot go from deployment status {current} to {target}")


def check_migration_transition(current: MigrationStatus, target: MigrationStatus) -> None:
    if target not in MIGRATION_TRANSITIONS[current]:
        raise Conflict(f"cannot go from migration status {current} to {target}")
