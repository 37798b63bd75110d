"""Leaving BYOD: ``keep`` (immediate), or ``migrate`` and ``delete``, whose data moves run as
the disconnect job (the user is ``moving`` until it ends). Every way out erases the saved
credentials and bumps the credential version, so any queued job for them becomes a no-op."""

from __future__ import annotations

import asyncio
import logging
from enum import StrEnum
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from byodb.errors import Conflict
from byodb.instances.connection.handle import UserDatabase
from byodb.instances.connection.session import UserConnection
from byodb.instances.lifecycle.changes import StateChanges
from byodb.instances.lifecycle.config_store import DatabaseConfig
from byodb.instances.lifecycle.databases import UserDatabases
from byodb.instances.lifecycle.holds import holding_user_writes_on_main
from byodb.instances.lifecycle.move_plan import MoveRefused
from byodb.instances.lifecycle.moves import (
    delete_user_rows,
    drop_schema_if_empty,
    move_user_content,
)
from byodb.instances.lifecycle.states import ConnectionStatus, DeploymentStatus, Placement
from byodb.instances.lifecycle.step_failures import Step, public_error
from byodb.instances.lifecycle.steps import (
    LifecycleLimits,
    main_connection,
    move_deadline,
    retrying_step,
)
from byodb.instances.lifecycle.switch import NO_SWITCH
from byodb.maindb.tables import user_database_config as udc

log = logging.getLogger(__name__)


class DisconnectMode(StrEnum):
    keep = "keep"
    migrate = "migrate"
    delete = "delete"


KEPT_PROGRESS = "Disconnected; your data stays on your database"
"""The progress line a "keep" disconnect leaves: the pages tell the user where their earlier
content is from it."""

# Erased from the row on every disconnect; the credential version is bumped so any queued
# job for the old credentials becomes a no-op.
ERASED: dict[str, Any] = {
    "encrypted_url": None, "key_id": None, "schema_version": None, "deployment_step": 0,
    "deployment_total_steps": 0, "instance_id": None, "consecutive_failures": 0,
    "connection_error": None, "connection_error_code": None,
    "content_placement": Placement.main.value, **NO_SWITCH,
    "credential_version": udc.c.credential_version + 1,
}


def check_can_disconnect(config: DatabaseConfig | None, mode: DisconnectMode) -> None:
    """Refuse a disconnect that cannot be done now, with a reason a person can act on."""
    if config is None or config.connection_status in (ConnectionStatus.none,
                                                      ConnectionStatus.disconnected):
        raise Conflict("no database is connected to your account")
    if config.connection_status is ConnectionStatus.moving or \
            config.deployment_status is DeploymentStatus.deploying:
        raise Conflict("your data is being moved or deployed; wait until it finishes")
    if mode is not DisconnectMode.keep and config.connection_status is not \
            ConnectionStatus.connected:
        raise Conflict("your database must be reachable to migrate or delete its data; "
                       "retry the connection first, or choose keep")


class DisconnectMove:
    """The disconnect job's work for ``migrate`` (copy back to main, validated, then delete
    theirs) and ``delete``, for the user's saved ``config``."""

    def __init__(self, config: DatabaseConfig, mode: DisconnectMode, *, main: AsyncEngine,
                 databases: UserDatabases, changes: StateChanges, limits: LifecycleLimits):
        self._config = config
        self._mode = mode
        self._main = main
        self._databases = databases
        self._changes = changes
        self._limits = limits
        self._step = Step("while reading your saved credentials")

    async def run(self) -> None:
        user_id, mode, step = self._config.user_id, self._mode, self._step
        expect = self._config.credential_version
        database: UserDatabase | None = None

        async def once() -> None:
            assert database is not None
            step.at("while connecting to your database")
            async with database.connection(move_deadline(self._limits)) as theirs:
                if mode is DisconnectMode.migrate:
                    await self._migrate_back(theirs)
                else:
                    await self._delete_theirs(theirs)

        try:
            async with asyncio.timeout(self._limits.move_s):
                database = self._databases.of(self._config)
                await retrying_step(once, user_id=user_id, deadline_s=self._limits.move_s,
                                    step=step, limits=self._limits)
                if mode is DisconnectMode.migrate:
                    return
        except Exception as exc:
            message, code = public_error(exc, stage=f"Disconnecting ({mode})", step=step,
                                         url=database.url if database is not None else None)
            log.warning("disconnect (%s) failed for user %r (%s): %r", mode, user_id, code,
                        message)
            # A move refused for what their database holds, or one that waited in vain on
            # a lock held there (their own open transaction), changed nothing and their
            # database answers: they stay connected, told why. Anything else: error + retry.
            stays = isinstance(exc, MoveRefused) or code == "lock_timeout"
            if not stays:
                message = f"{message} Retry the connection, then try again."
            await self._changes.update(
                user_id, connection=ConnectionStatus.connected if stays
                else ConnectionStatus.error, expect_credential_version=expect,
                connection_error=message, connection_error_code=code,
                deployment_progress=f"Disconnecting failed: {message}")
            return
        await self._disconnected()

    async def _migrate_back(self, theirs: UserConnection) -> None:
        user_id = self._config.user_id
        self._step.at("while connecting to byodb's database")
        async with main_connection(self._main) as main, \
                holding_user_writes_on_main(main, user_id):
            self._step.at("while moving your data back to byodb's database")
            await move_user_content(theirs, main, user_id, lock_source_tables=True)
            await self._disconnected()

    async def _delete_theirs(self, theirs: UserConnection) -> None:
        self._step.at("while deleting your data from your database")
        await delete_user_rows(theirs, self._config.user_id)
        await drop_schema_if_empty(theirs)

    async def _disconnected(self) -> None:
        done = ("Disconnected; your data was moved back"
                if self._mode is DisconnectMode.migrate
                else "Disconnected; your data was deleted from your database")
        await self._changes.update(self._config.user_id, connection=ConnectionStatus.disconnected,
                                   deployment=DeploymentStatus.not_started,
                                   expect_credential_version=self._config.credential_version,
                                   deployment_progress=done, **ERASED)
