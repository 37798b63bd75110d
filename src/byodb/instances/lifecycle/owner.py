"""The one owner of a user database's lifecycle: :class:`InstanceLifecycle`.

Test, save, provision (deploy + move), switch, retry, disconnect — every rule about a
user's own database lives here; web handlers, jobs and the CLI call it in a few lines.
It receives its dependencies explicitly (main engine, vault, the handles of users' databases
(:class:`UserDatabases`), the state writer (:class:`StateChanges`), limits, the job queue)
and reaches user databases only through :class:`UserDatabase`.

Long work (provision, the data moves of a disconnect) runs as durable jobs
(``byodb.instances.lifecycle.jobs``); each has a deadline that really stops it, and ends in a
recorded state — never ``moving`` or ``deploying`` forever.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol, TypeVar

import psycopg
from sqlalchemy.ext.asyncio import AsyncEngine

from byodb.content import latest_schema_version
from byodb.content.deploy import DeployOutcome, deploy_content_schema
from byodb.errors import ByodbError, Conflict, NotFound
from byodb.instances.connection.credentials import Credentials
from byodb.instances.connection.deadlines import Deadline
from byodb.instances.connection.failures import classify
from byodb.instances.connection.guard import ConnectionCheckError
from byodb.instances.connection.handle import UserDatabase
from byodb.instances.connection.probe import ConnectionVerdict, preflight
from byodb.instances.connection.session import UserConnection
from byodb.instances.lifecycle.admission import ConnectFlags, holds_own_database
from byodb.instances.lifecycle.changes import StateChanges
from byodb.instances.lifecycle.config_store import (
    DatabaseConfig,
    Switch,
    load_config,
    save_credentials,
    update_state,
)
from byodb.instances.lifecycle.databases import UserDatabases
from byodb.instances.lifecycle.holds import holding_user_writes_on_main
from byodb.instances.lifecycle.moves import (
    MoveRefused,
    delete_user_rows,
    drop_schema_if_empty,
    move_user_content,
)
from byodb.instances.lifecycle.states import ConnectionStatus, DeploymentStatus, Placement
from byodb.instances.lifecycle.step_failures import DEFAULT_LADDER_S, Step, public_error, retrying
from byodb.maindb.tables import user_database_config as udc
from byodb.vault import Vault

log = logging.getLogger(__name__)
T = TypeVar("T")


class DisconnectMode(StrEnum):
    keep = "keep"
    migrate = "migrate"
    delete = "delete"


class OldDatabase(StrEnum):
    """What the old database keeps when a user switches to another one."""

    keep = "keep"
    delete = "delete"


class LifecycleJobs(Protocol):
    """The durable job queue, as the lifecycle needs it (implemented in ``instances.jobs``)."""

    async def provision(self, user_id: str, credential_version: int, *,
                        premium: bool = False) -> None: ...

    async def disconnect(self, user_id: str, credential_version: int,
                         mode: DisconnectMode) -> None: ...



@dataclass(frozen=True)
class LifecycleLimits:
    """Deadlines of the lifecycle's operations, in seconds."""

    test_s: float = 15.0
    deploy_s: float = 300.0
    move_s: float = 1800.0
    # The content schema version new deploys create (BYODB_SCHEMA_TARGET, resolved by
    # byodb.content.resolve_schema_target); a database already past it is left as it is.
    schema_target: int = latest_schema_version()
    # A move's statements wait this long for a lock held in the user's database (their own
    # open transaction) before the step gives up and is retried on the ladder.
    lock_timeout_s: float = 5.0
    # Pauses (times a jitter) before a deploy or move step that failed transiently runs again.
    retry_ladder_s: tuple[float, ...] = DEFAULT_LADDER_S


KEPT_PROGRESS = "Disconnected; your data stays on your database"
"""The progress line a "keep" disconnect leaves: the pages tell the user where their earlier
content is from it."""
PROGRESS_INTERVAL_S = 0.25
"""Deploy progress is written to main at most this often (and always at the end)."""

# Erased from the row on every disconnect; the credential version is bumped so any queued
# job for the old credentials becomes a no-op.
_NO_SWITCH: dict[str, Any] = {"previous_encrypted_url": None, "previous_instance_id": None,
                              "previous_database_mode": None}
_ERASED: dict[str, Any] = {
    "encrypted_url": None, "key_id": None, "schema_version": None, "deployment_step": 0,
    "deployment_total_steps": 0, "instance_id": None, "consecutive_failures": 0,
    "connection_error": None, "connection_error_code": None,
    "content_placement": Placement.main.value, **_NO_SWITCH,
    "credential_version": udc.c.credential_version + 1,
}


class InstanceLifecycle:
    """Owns every user's database lifecycle; one per process."""

    def __init__(self, *, main: AsyncEngine, vault: Vault, databases: UserDatabases,
                 changes: StateChanges, limits: LifecycleLimits,
                 jobs: LifecycleJobs | None = None, flags: ConnectFlags = ConnectFlags()):
        self.main = main
        self.flags = flags
        self.vault = vault
        self.limits = limits
        self._databases = databases
        self._changes = changes
        self._jobs = jobs

    @property
    def jobs(self) -> LifecycleJobs:
        if self._jobs is None:
            raise RuntimeError("this lifecycle has no job queue (read-only process)")
        return self._jobs

    # -- reading ---------------------------------------------------------------------------
    async def state(self, user_id: str) -> DatabaseConfig | None:
        return await load_config(self.main, user_id)

    # -- test and save ---------------------------------------------------------------------
    async def test(self, raw_url: str, ca_certificate: str | None = None) -> ConnectionVerdict:
        """Test a URL (and CA certificate) end to end; changes nothing. Never raises for a
        bad URL, certificate or database."""
        try:
            database = self._databases.given(Credentials.given(raw_url, ca_certificate))
        except ConnectionCheckError as exc:
            return ConnectionVerdict(False, exc.code, exc.message, exc.hint)
        return await self._test(database)

    async def _test(self, database: UserDatabase) -> ConnectionVerdict:
        try:
            target = await database.target()
        except ConnectionCheckError as exc:
            return ConnectionVerdict(False, exc.code, exc.message, exc.hint)
        try:
            async with asyncio.timeout(self.limits.test_s):
                async with database.connection(Deadline(self.limits.test_s)) as conn:
                    return await preflight(conn, latest_version=latest_schema_version())
        except ConnectionCheckError as exc:
            return ConnectionVerdict(False, exc.code, exc.message, exc.hint)
        except (TimeoutError, psycopg.Error, OSError) as exc:
            failure = classify(exc, target.url)
            return ConnectionVerdict(False, failure.code, failure.message, failure.hint)

    def connect_refusal(self, current: DatabaseConfig | None, *,
                        premium: bool) -> ByodbError | None:
        """Why the flags refuse this user a connection test or save now, or None. A user
        whose content is on their own database is never refused here: they may test and save
        new credentials for it (``save`` still refuses moving to another database)."""
        if holds_own_database(current):
            return None
        return self.flags.refusal(premium=premium)

    def admission_refusal(self, config: DatabaseConfig | None, *,
                          premium: bool) -> ByodbError | None:
        """The admission rule (``byodb.instances.lifecycle.admission``) for a step that creates or
        re-creates a connection to the database ``config`` names — a deployment, a move in,
        a retry: why the flags refuse it, or None. Only the database that holds the user's
        content now is never refused; finishing a switch to another one is a new
        connection, as is anything for a user whose content is still on main."""
        if holds_own_database(config) and config is not None and not config.switching:
            return None
        return self.flags.refusal(premium=premium)

    async def test_for(self, user_id: str, raw_url: str, *, ca_certificate: str | None = None,
                       premium: bool = False) -> ConnectionVerdict:
        """The connection test a user asks for: :meth:`test` after the flags' check
        (``byod_disabled`` 403, ``premium_required`` 402), which contacts nothing."""
        refusal = self.connect_refusal(await self.state(user_id), premium=premium)
        if refusal is not None:
            raise refusal
        return await self.test(raw_url, ca_certificate)

    async def save(self, user_id: str, raw_url: str,
                   old_database: OldDatabase = OldDatabase.keep, *,
                   ca_certificate: str | None = None,
                   premium: bool = False) -> DatabaseConfig:
        """Test the URL, store it encrypted and queue provisioning.

        A URL of a *different* database than the one holding the user's content (told apart
        by the ``instance_id`` in ``byodb_meta``) is a switch: provisioning moves the content
        old → new, and the old database keeps its copy unless ``old_database`` is delete.
        The flags (``self.flags``) refuse a new connection and a switch, never new
        credentials for the database that holds the user's content.
        """
        current = await self.state(user_id)
        refusal = self.connect_refusal(current, premium=premium)
        if refusal is not None:
            raise refusal
        if current is not None and current.connection_status is ConnectionStatus.moving:
            raise Conflict("your data is being moved; wait until it finishes")
        if current is not None and current.deployment_status is DeploymentStatus.deploying:
            raise Conflict("a deployment is already running; wait until it finishes")
        # A malformed URL raises invalid_url, an unreadable certificate tls_failed.
        credentials = Credentials.given(raw_url, ca_certificate)
        database = self._databases.given(credentials)
        verdict = await self._test(database)
        if not verdict.ok:
            raise ConnectionCheckError(verdict.message, hint=verdict.hint, code=verdict.code)
        switch = self._switch_for(current, verdict, old_database)
        flags_refusal = self.flags.refusal(premium=premium)
        if switch is not None and flags_refusal is not None:
            raise flags_refusal  # another database: a new connection, not new credentials
        saved = await save_credentials(self.main, self.vault, user_id, database.url,
                                       credentials.packed(), switch=switch)
        await self._changes.changed(user_id)
        await self.jobs.provision(user_id, saved.credential_version, premium=premium)
        return saved

    def _switch_for(self, current: DatabaseConfig | None, verdict: ConnectionVerdict,
                    old_database: OldDatabase) -> Switch | None:
        """The switch the saved URL means, if any (see :meth:`save`)."""
        if current is None or current.content_placement is not Placement.user:
            return None
        if current.switching:
            # An earlier switch has not finished: the content is still (also) on the old
            # database, so that one stays the source — unless this URL is that database.
            if verdict.instance_id is not None and \
                    verdict.instance_id == current.previous_instance_id:
                return None
            return Switch(current.decrypt_previous_url(self.vault),
                          current.previous_instance_id, old_database.value)
        if verdict.instance_id is not None and verdict.instance_id == current.instance_id:
            return None  # the same database with new credentials
        return Switch(current.decrypt_url(self.vault), current.instance_id, old_database.value)

    # -- provision (job body) --------------------------------------------------------------
    async def provision(self, user_id: str, credential_version: int, *,
                        premium: bool = False) -> None:
        """Deploy the schema on the saved database, move the user's content there (from
        the old database when switching, and whatever is on main), then switch them over.
        Idempotent: every step resumes where an interrupted run stopped. The flags are
        asked again first (:meth:`admission_refusal`, ``premium`` as the user's token said
        when they asked): a job queued before the operator turned BYOD off connects
        nothing, and leaves the user in ``error`` with the flags' reason."""
        config = await self.state(user_id)
        if config is None or config.credential_version != credential_version or \
                config.encrypted_url is None:
            log.info("skipping stale provisioning job")
            return
        refusal = self.admission_refusal(config, premium=premium)
        if refusal is not None:
            log.info("provisioning refused by the flags: %s", refusal.code)
            await self._changes.update(user_id, connection=ConnectionStatus.error,
                               expect_credential_version=credential_version,
                               connection_error=refusal.message,
                               connection_error_code=refusal.code,
                               deployment_progress=f"Not started: {refusal.message}")
            return
        stage = "The deployment"
        step = Step("while reading your saved credentials")
        database: UserDatabase | None = None
        try:
            async with asyncio.timeout(self.limits.deploy_s + self.limits.move_s):
                await self._changes.update(user_id, deployment=DeploymentStatus.deploying,
                                   expect_credential_version=credential_version,
                                   deployment_progress="Connecting", deployment_step=0,
                                   connection_error=None, connection_error_code=None)
                database = self._databases.of(config)
                outcome = await self._deploy(database, user_id, credential_version, step)
                stage = "Moving your content"
                await self._move_in(database, config, outcome, step)
        except Exception as exc:
            message, code = public_error(exc, stage=stage, step=step,
                                         url=database.url if database is not None else None)
            # The one log line of the failure: the user id and the message (server words
            # included) as escaped values in its body, never shaping the line.
            log.warning("provisioning failed for user %r (%s): %r", user_id, code, message)
            deployed = stage != "The deployment"
            failed_at = {} if deployed or step.number is None else \
                {"deployment_step": step.number}
            await self._changes.update(
                user_id, connection=ConnectionStatus.error,
                deployment=None if deployed else DeploymentStatus.failed,
                expect_credential_version=credential_version,
                connection_error=message, connection_error_code=code,
                deployment_progress=f"{'Moving your content' if deployed else 'Deployment'} "
                                    f"failed: {message}", **failed_at)

    async def _deploy(self, database: UserDatabase, user_id: str,
                      credential_version: int, step: Step) -> DeployOutcome:
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
            await update_state(self.main, user_id, expect_credential_version=credential_version,
                               deployment_progress=label, deployment_step=number,
                               deployment_total_steps=total)

        async def deploy_once() -> DeployOutcome:
            # One transaction: a failed attempt left nothing, so the next starts afresh.
            step.at("while connecting to your database")
            async with database.connection(Deadline(self.limits.deploy_s)) as conn:
                step.at("while preparing the deployment (pgvector, the deployed version)")
                return await deploy_content_schema(conn, progress=progress,
                                                   target_version=self.limits.schema_target)

        async with asyncio.timeout(self.limits.deploy_s):
            outcome = await self._retrying(deploy_once, user_id, self.limits.deploy_s, step)
        await self._changes.update(user_id, deployment=DeploymentStatus.deployed,
                           expect_credential_version=credential_version,
                           schema_version=outcome.version, instance_id=outcome.instance_id,
                           last_schema_deploy=self._changes.now(),
                           deployment_progress="Moving your existing content")
        return outcome

    async def _move_in(self, database: UserDatabase, config: DatabaseConfig,
                       outcome: DeployOutcome, step: Step) -> None:
        """Move the user's content onto ``database`` with their requests held, then mark
        them connected — only once nothing of theirs is left anywhere else."""
        user_id, expect = config.user_id, config.credential_version
        await self._changes.update(user_id, connection=ConnectionStatus.moving,
                           expect_credential_version=expect,
                           deployment_progress="Moving your content from your previous "
                           "database" if config.switching else "Moving your existing content")
        moved = 0

        async def from_previous() -> int:
            old = self._databases.previous_of(config)
            keep_copy = config.previous_database_mode != OldDatabase.delete.value
            step.at("while connecting to your previous database and your new one")
            async with old.connection(self._move_deadline()) as source, \
                    database.connection(self._move_deadline()) as target:
                step.at("while moving your content from your previous database to your "
                        "new one")
                report = await move_user_content(source, target, user_id,
                                                 lock_source_tables=True,
                                                 delete_source=not keep_copy)
            return report.total_rows

        async def from_main() -> None:
            step.at("while connecting to your database")
            async with self._main_connection() as main, \
                    holding_user_writes_on_main(main, user_id), \
                    database.connection(self._move_deadline()) as target:
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
                    **_NO_SWITCH)

        async with asyncio.timeout(self.limits.move_s):
            if config.switching and config.previous_instance_id != outcome.instance_id:
                moved += await self._retrying(from_previous, user_id, self.limits.move_s,
                                              step)
            await self._retrying(from_main, user_id, self.limits.move_s, step)

    def _move_deadline(self) -> Deadline:
        """A move's connections: statements as long as the move may take, lock waits as
        long as ``lock_timeout_s`` (then the step is retried, and fails), the socket cut
        shortly after its deadline, whatever is still waiting on it."""
        return Deadline(self.limits.move_s, lock_timeout_s=self.limits.lock_timeout_s)

    async def _retrying(self, attempt: Callable[[], Awaitable[T]], user_id: str,
                        deadline_s: float, step: Step) -> T:
        """``attempt`` (a whole deploy or one move), run again after a transient failure
        on the ladder within ``deadline_s`` (:func:`.step_failures.retrying`)."""
        async def retry_note(exc: BaseException, attempt_number: int) -> None:
            log.info("retrying a step for user %r after a transient failure %s (%s, "
                     "retry %d)", user_id, step.where, type(exc).__name__, attempt_number)

        return await retrying(attempt, deadline_s=deadline_s,
                              ladder_s=self.limits.retry_ladder_s, on_retry=retry_note)

    @asynccontextmanager
    async def _main_connection(self) -> AsyncIterator[psycopg.AsyncConnection]:
        """An autocommit psycopg connection to main from the main pool (moves need COPY)."""
        async with self.main.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            raw = await conn.get_raw_connection()
            driver = raw.driver_connection
            assert isinstance(driver, psycopg.AsyncConnection)
            yield driver

    # -- retry -----------------------------------------------------------------------------
    async def retry(self, user_id: str, *,
                    premium: bool = False) -> tuple[DatabaseConfig | None, bool]:
        """Reconnect after an outage, or finish what did not complete. Returns the state
        and whether work was queued (then it is not final yet). Refused by the flags
        (:meth:`admission_refusal`) unless it is about the database holding the content."""
        config = await self.state(user_id)
        if config is None or config.encrypted_url is None or config.connection_status in (
                ConnectionStatus.none, ConnectionStatus.disconnected):
            raise NotFound("no database is saved for your account")
        if config.deployment_status is DeploymentStatus.deploying or \
                config.connection_status is ConnectionStatus.moving:
            return config, True
        refusal = self.admission_refusal(config, premium=premium)
        if refusal is not None:
            raise refusal
        if (config.deployment_status is not DeploymentStatus.deployed
                or config.connection_status is ConnectionStatus.pending
                or config.content_placement is Placement.main or config.switching):
            # Not switched over (or content left elsewhere): finish provisioning, which
            # marks the user connected only once every row is on their database.
            await self.jobs.provision(user_id, config.credential_version, premium=premium)
            return await self.state(user_id), True
        return await self.check(config), False

    async def check(self, config: DatabaseConfig) -> DatabaseConfig | None:
        """Check the saved database now: reachable with our schema → ``connected``."""
        user_id = config.user_id
        try:
            database = self._databases.of(config)
            async with asyncio.timeout(self.limits.test_s):
                schema = await database.deployed_schema()
            if schema is None or schema.version != config.schema_version or \
                    schema.instance_id != config.instance_id:
                raise ConnectionCheckError(
                    "The byodb schema on your database is missing or is not the one "
                    "deployed for you.", hint="Redeploy from Settings → Database.",
                    code="schema_conflict")
        except (ByodbError, TimeoutError, psycopg.Error, OSError) as exc:  # incl. guard, vault
            message, code = public_error(exc, stage="The check")
            return await self._changes.update(
                user_id, connection=ConnectionStatus.error,
                expect_credential_version=config.credential_version,
                connection_error=message, connection_error_code=code,
                last_connection_test=self._changes.now(),
                consecutive_failures=config.consecutive_failures + 1)
        return await self._changes.update(
            user_id, connection=ConnectionStatus.connected,
            expect_credential_version=config.credential_version, connection_error=None,
            connection_error_code=None, consecutive_failures=0,
            last_connection_test=self._changes.now())

    # -- disconnect ------------------------------------------------------------------------
    async def disconnect(self, user_id: str, mode: DisconnectMode) -> tuple[DatabaseConfig |
                                                                            None, bool]:
        """Leave BYOD. ``keep`` is immediate; ``migrate`` and ``delete`` queue a job (the
        user is ``moving`` until it ends). Returns the state and whether a job was queued."""
        config = await self.state(user_id)
        self._check_can_disconnect(config, mode)
        assert config is not None
        if mode is DisconnectMode.keep:
            kept = await self._changes.update(
                user_id, connection=ConnectionStatus.disconnected,
                deployment=DeploymentStatus.not_started,
                deployment_progress=KEPT_PROGRESS,
                **_ERASED)
            return kept, False
        label = ("Moving your data back" if mode is DisconnectMode.migrate
                 else "Deleting your data")
        moving = await self._changes.update(user_id, connection=ConnectionStatus.moving,
                                    deployment_progress=label)
        await self.jobs.disconnect(user_id, config.credential_version, mode)
        return moving, True

    @staticmethod
    def _check_can_disconnect(config: DatabaseConfig | None, mode: DisconnectMode) -> None:
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

    async def finish_disconnect(self, user_id: str, credential_version: int,
                                mode: DisconnectMode) -> None:
        """The job body of ``migrate`` (copy back to main, validated, then delete theirs)
        and ``delete``."""
        config = await self.state(user_id)
        if config is None or config.credential_version != credential_version:
            return
        step = Step("while reading your saved credentials")
        database: UserDatabase | None = None

        async def migrate_back(theirs: UserConnection) -> None:
            step.at("while connecting to byodb's database")
            async with self._main_connection() as main, \
                    holding_user_writes_on_main(main, user_id):
                step.at("while moving your data back to byodb's database")
                await move_user_content(theirs, main, user_id, lock_source_tables=True)
                await self._disconnected(user_id, credential_version, mode)

        async def delete_theirs(theirs: UserConnection) -> None:
            step.at("while deleting your data from your database")
            await delete_user_rows(theirs, user_id)
            await drop_schema_if_empty(theirs)

        async def once() -> None:
            assert database is not None
            step.at("while connecting to your database")
            async with database.connection(self._move_deadline()) as theirs:
                await (migrate_back if mode is DisconnectMode.migrate else delete_theirs)(theirs)

        try:
            async with asyncio.timeout(self.limits.move_s):
                database = self._databases.of(config)
                await self._retrying(once, user_id, self.limits.move_s, step)
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
            await self._changes.update(user_id, connection=ConnectionStatus.connected if stays
                               else ConnectionStatus.error,
                               expect_credential_version=credential_version,
                               connection_error=message, connection_error_code=code,
                               deployment_progress=f"Disconnecting failed: {message}")
            return
        await self._disconnected(user_id, credential_version, mode)

    async def _disconnected(self, user_id: str, credential_version: int,
                            mode: DisconnectMode) -> None:
        done = ("Disconnected; your data was moved back" if mode is DisconnectMode.migrate
                else "Disconnected; your data was deleted from your database")
        await self._changes.update(user_id, connection=ConnectionStatus.disconnected,
                           deployment=DeploymentStatus.not_started,
                           expect_credential_version=credential_version,
                           deployment_progress=done, **_ERASED)
