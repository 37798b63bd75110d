"""The provisioning job's work for one saved database: deploy the content schema, move the
user's content there (from the old database when switching, and whatever is on main), then
switch them over — each part resumable, retried on a transient failure, under one deadline,
and ending in a recorded state (never ``deploying`` or ``moving`` forever)."""

from __future__ import annotations

import asyncio
import logging
import time

from sqlalchemy.ext.asyncio import AsyncEngine

from byodb.content.deploy import DeployOutcome, deploy_content_schema
from byodb.instances.connection.deadlines import Deadline
from byodb.instances.connection.handle import UserDatabase
from byodb.instances.lifecycle.changes import StateChanges
from byodb.instances.lifecycle.config_store import DatabaseConfig, update_state
from byodb.instances.lifecycle.databases import UserDatabases
from byodb.instances.lifecycle.holds import holding_user_writes_on_main
from byodb.instances.lifecycle.moves import move_user_content
from byodb.instances.lifecycle.states import ConnectionStatus, DeploymentStatus, Placement
from byodb.instances.lifecycle.step_failures import Step, public_error
from byodb.instances.lifecycle.steps import (
    LifecycleLimits,
    main_connection,
    move_deadline,
    retrying_step,
)
from byodb.instances.lifecycle.switch import NO_SWITCH, OldDatabase

log = logging.getLogger(__name__)

PROGRESS_INTERVAL_S = 0.25
"""Deploy progress is written to main at most this often (and always at the end)."""


class Provisioning:
    """One run of the provisioning job for the user's saved ``config`` (already admitted)."""

    def __init__(self, config: DatabaseConfig, *, main: AsyncEngine,
                 databases: UserDatabases, changes: StateChanges, limits: LifecycleLimits):
        self._config = config
        self._main = main
        self._databases = databases
        self._changes = changes
        self._limits = limits
        self._step = Step("while reading your saved credentials")

    async def run(self) -> None:
        """Deploy, move in, switch over; a failure is recorded with where it happened."""
        user_id, expect = self._config.user_id, self._config.credential_version
        stage = "The deployment"
        database: UserDatabase | None = None
        try:
            async with asyncio.timeout(self._limits.deploy_s + self._limits.move_s):
                await self._changes.update(user_id, deployment=DeploymentStatus.deploying,
                                           expect_credential_version=expect,
                                           deployment_progress="Connecting",
                                           deployment_step=0, connection_error=None,
                                           connection_error_code=None)
                database = self._databases.of(self._config)
                outcome = await self._deploy(database)
                # Deployed and moving in one write: a state between them (deployed, the
                # connection still ``error`` on a retry) would look final to whoever polls.
                await self._changes.update(
                    user_id, deployment=DeploymentStatus.deployed,
                    connection=ConnectionStatus.moving, expect_credential_version=expect,
                    schema_version=outcome.version, instance_id=outcome.instance_id,
                    last_schema_deploy=self._changes.now(),
                    deployment_progress="Moving your content from your previous database"
                    if self._config.switching else "Moving your existing content")
                stage = "Moving your content"
                await self._move_in(database, outcome)
        except Exception as exc:
            message, code = public_error(exc, stage=stage, step=self._step,
                                         url=database.url if database is not None else None)
            # The one log line of the failure: the user id and the message (server words
            # included) as escaped values in its body, never shaping the line.
            log.warning("provisioning failed for user %r (%s): %r", user_id, code, message)
            deployed = stage != "The deployment"
            failed_at = {} if deployed or self._step.number is None else \
                {"deployment_step": self._step.number}
            await self._changes.update(
                user_id, connection=ConnectionStatus.error,
                deployment=None if deployed else DeploymentStatus.failed,
                expect_credential_version=expect,
                connection_error=message, connection_error_code=code,
                deployment_progress=f"{'Moving your content' if deployed else 'Deployment'} "
                                    f"failed: {message}", **failed_at)

    async def _deploy(self, database: UserDatabase) -> DeployOutcome:
        user_id, expect = self._config.user_id, self._config.credential_version
        step, limits = self._step, self._limits
        last_written = 0.0

        async def progress(number: int, total: int, label: str) -> None:
            step.at(f"at step {number} of {total} ({label})", number)
            # A few writes a second are plenty for a progress bar; one per DDL statement
            # would make every deploy wait on main ~120 times.
            nonlocal last_written
            now = time.monotonic()
            if number != total and now - last_written < PROGRESS_INTERVAL_S:
                return
            last_written = now
            await update_state(self._main, user_id, expect_credential_version=expect,
                               deployment_progress=label, deployment_step=number,
                               deployment_total_steps=total)

        async def deploy_once() -> DeployOutcome:
            # One transaction: a failed attempt left nothing, so the next starts afresh.
            step.at("while connecting to your database")
            async with database.connection(Deadline(limits.deploy_s)) as conn:
                step.at("while preparing the deployment (pgvector, the deployed version)")
                return await deploy_content_schema(conn, progress=progress,
                                                   target_version=limits.schema_target)

        async with asyncio.timeout(limits.deploy_s):
            return await retrying_step(deploy_once, user_id=user_id,
                                       deadline_s=limits.deploy_s, step=step, limits=limits)

    async def _move_in(self, database: UserDatabase, outcome: DeployOutcome) -> None:
        """Move the user's content onto ``database`` with their requests held, then mark
        them connected — only once nothing of theirs is left anywhere else."""
        config, step, limits = self._config, self._step, self._limits
        user_id, expect = config.user_id, config.credential_version
        moved = 0

        async def from_previous() -> int:
            old = self._databases.previous_of(config)
            keep_copy = config.previous_database_mode != OldDatabase.delete.value
            step.at("while connecting to your previous database and your new one")
            async with old.connection(move_deadline(limits)) as source, \
                    database.connection(move_deadline(limits)) as target:
                step.at("while moving your content from your previous database to your "
                        "new one")
                report = await move_user_content(source, target, user_id,
                                                 lock_source_tables=True,
                                                 delete_source=not keep_copy)
            return report.total_rows

        async def from_main() -> None:
            step.at("while connecting to your database")
            async with main_connection(self._main) as main, \
                    holding_user_writes_on_main(main, user_id), \
                    database.connection(move_deadline(limits)) as target:
                step.at("while moving your content from byodb's database to yours")
                report = await move_user_content(main, target, user_id,
                                                 lock_source_tables=False)
                await self._changes.update(
                    user_id, connection=ConnectionStatus.connected,
                    expect_credential_version=expect, consecutive_failures=0,
                    content_placement=Placement.user.value,
                    last_connection_test=self._changes.now(),
                    deployment_progress=f"Connected; moved {moved + report.total_rows} rows "
                                        "to your database",
                    **NO_SWITCH)

        async with asyncio.timeout(limits.move_s):
            if config.switching and config.previous_instance_id != outcome.instance_id:
                moved += await retrying_step(from_previous, user_id=user_id,
                                             deadline_s=limits.move_s, step=step,
                                             limits=limits)
            await retrying_step(from_main, user_id=user_id, deadline_s=limits.move_s,
                                step=step, limits=limits)
