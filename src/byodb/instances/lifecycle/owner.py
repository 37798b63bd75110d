"""The one owner of a user database's lifecycle: :class:`InstanceLifecycle`.

Test, save, provision (deploy + move), switch, retry, disconnect — web handlers, jobs and the
CLI call it in a few lines. It only sequences the steps; each step is a module of its own:
the admission rule (:mod:`.admission`), the connection test and the check (:mod:`.verify`),
a switch (:mod:`.switch`), provisioning (:mod:`.provision`), leaving BYOD
(:mod:`.disconnect`). Its dependencies are passed in: main, the vault, the handles of users'
databases (:class:`UserDatabases`), the state writer (:class:`StateChanges`), its limits, the
job queue and the flags; it reaches user databases only through :class:`UserDatabase`.

Long work (provision, the data moves of a disconnect) runs as durable jobs
(``byodb.instances.lifecycle.jobs``); each has a deadline that really stops it, and ends in a
recorded state — never ``moving`` or ``deploying`` forever.
"""

from __future__ import annotations

import logging
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncEngine

from byodb.errors import ByodbError, Conflict, NotFound
from byodb.instances.connection.credentials import Credentials
from byodb.instances.connection.guard import ConnectionCheckError
from byodb.instances.connection.probe import ConnectionVerdict
from byodb.instances.lifecycle.admission import ConnectFlags, admission_refusal, connect_refusal
from byodb.instances.lifecycle.changes import StateChanges
from byodb.instances.lifecycle.config_store import DatabaseConfig, load_config, save_credentials
from byodb.instances.lifecycle.databases import UserDatabases
from byodb.instances.lifecycle.disconnect import (
    ERASED,
    KEPT_PROGRESS,
    DisconnectMode,
    DisconnectMove,
    check_can_disconnect,
)
from byodb.instances.lifecycle.provision import Provisioning
from byodb.instances.lifecycle.states import ConnectionStatus, DeploymentStatus, Placement
from byodb.instances.lifecycle.steps import LifecycleLimits
from byodb.instances.lifecycle.switch import OldDatabase, switch_for
from byodb.instances.lifecycle.verify import check_saved, connection_test
from byodb.vault import Vault

log = logging.getLogger(__name__)


class LifecycleJobs(Protocol):
    """The durable job queue, as the lifecycle needs it (:mod:`.jobs` implements it)."""

    async def provision(self, user_id: str, credential_version: int, *,
                        premium: bool = False) -> None: ...

    async def disconnect(self, user_id: str, credential_version: int,
                         mode: DisconnectMode) -> None: ...


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

    async def state(self, user_id: str) -> DatabaseConfig | None:
        return await load_config(self.main, user_id)

    def new_connection_refusal(self, *, premium: bool) -> ByodbError | None:
        """Why the flags refuse this user a new database connection now, or None (the
        pages and ``GET /api/byod`` tell the user before they try)."""
        return self.flags.refusal(premium=premium)

    # -- test and save ---------------------------------------------------------------------
    async def test(self, raw_url: str, ca_certificate: str | None = None) -> ConnectionVerdict:
        """Test a URL (and CA certificate) end to end; changes nothing. Never raises for a
        bad URL, certificate or database."""
        try:
            database = self._databases.given(Credentials.given(raw_url, ca_certificate))
        except ConnectionCheckError as exc:
            return ConnectionVerdict(False, exc.code, exc.message, exc.hint)
        return await connection_test(database, timeout_s=self.limits.test_s)

    async def test_for(self, user_id: str, raw_url: str, *, ca_certificate: str | None = None,
                       premium: bool = False) -> ConnectionVerdict:
        """The connection test a user asks for: :meth:`test` after the flags' check
        (``byod_disabled`` 403, ``premium_required`` 402), which contacts nothing."""
        refusal = connect_refusal(self.flags, await self.state(user_id), premium=premium)
        if refusal is not None:
            raise refusal
        return await self.test(raw_url, ca_certificate)

    async def save(self, user_id: str, raw_url: str,
                   old_database: OldDatabase = OldDatabase.keep, *,
                   ca_certificate: str | None = None,
                   premium: bool = False) -> DatabaseConfig:
        """Test the URL, store it encrypted and queue provisioning.

        A URL of a *different* database than the one holding the user's content is a
        switch (:mod:`.switch`): provisioning moves the content old → new, and the old
        database keeps its copy unless ``old_database`` is delete. The flags refuse a new
        connection and a switch, never new credentials for the database that holds the
        user's content.
        """
        current = await self.state(user_id)
        refusal = connect_refusal(self.flags, current, premium=premium)
        if refusal is not None:
            raise refusal
        if current is not None and current.connection_status is ConnectionStatus.moving:
            raise Conflict("your data is being moved; wait until it finishes")
        if current is not None and current.deployment_status is DeploymentStatus.deploying:
            raise Conflict("a deployment is already running; wait until it finishes")
        # A malformed URL raises invalid_url, an unreadable certificate tls_failed.
        credentials = Credentials.given(raw_url, ca_certificate)
        database = self._databases.given(credentials)
        verdict = await connection_test(database, timeout_s=self.limits.test_s)
        if not verdict.ok:
            raise ConnectionCheckError(verdict.message, hint=verdict.hint, code=verdict.code)
        switch = switch_for(current, verdict, old_database, self.vault)
        flags_refusal = self.flags.refusal(premium=premium)
        if switch is not None and flags_refusal is not None:
            raise flags_refusal  # another database: a new connection, not new credentials
        saved = await save_credentials(self.main, self.vault, user_id, database.url,
                                       credentials.packed(), switch=switch)
        await self._changes.changed(user_id)
        await self.jobs.provision(user_id, saved.credential_version, premium=premium)
        return saved

    # -- provision (job body) --------------------------------------------------------------
    async def provision(self, user_id: str, credential_version: int, *,
                        premium: bool = False) -> None:
        """Deploy the schema on the saved database, move the user's content there, then
        switch them over (:class:`Provisioning`). Idempotent: every step resumes where an
        interrupted run stopped. The flags are asked again first (``premium`` as the
        user's token said when they asked): a job queued before the operator turned BYOD
        off connects nothing, and leaves the user in ``error`` with the flags' reason."""
        config = await self.state(user_id)
        if config is None or config.credential_version != credential_version or \
                config.encrypted_url is None:
            log.info("skipping stale provisioning job")
            return
        refusal = admission_refusal(self.flags, config, premium=premium)
        if refusal is not None:
            log.info("provisioning refused by the flags: %s", refusal.code)
            await self._changes.update(user_id, connection=ConnectionStatus.error,
                                       expect_credential_version=credential_version,
                                       connection_error=refusal.message,
                                       connection_error_code=refusal.code,
                                       deployment_progress=f"Not started: {refusal.message}")
            return
        await Provisioning(config, main=self.main, databases=self._databases,
                           changes=self._changes, limits=self.limits).run()

    # -- retry -----------------------------------------------------------------------------
    async def retry(self, user_id: str, *,
                    premium: bool = False) -> tuple[DatabaseConfig | None, bool]:
        """Reconnect after an outage, or finish what did not complete. Returns the state
        and whether work was queued (then it is not final yet). Refused by the flags
        (:func:`.admission.admission_refusal`) unless it is about the database holding the
        content."""
        config = await self.state(user_id)
        if config is None or config.encrypted_url is None or config.connection_status in (
                ConnectionStatus.none, ConnectionStatus.disconnected):
            raise NotFound("no database is saved for your account")
        if config.deployment_status is DeploymentStatus.deploying or \
                config.connection_status is ConnectionStatus.moving:
            return config, True
        refusal = admission_refusal(self.flags, config, premium=premium)
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
        return await check_saved(config, databases=self._databases, changes=self._changes,
                                 timeout_s=self.limits.test_s)

    # -- disconnect ------------------------------------------------------------------------
    async def disconnect(self, user_id: str, mode: DisconnectMode) -> tuple[DatabaseConfig |
                                                                            None, bool]:
        """Leave BYOD. ``keep`` is immediate; ``migrate`` and ``delete`` queue a job (the
        user is ``moving`` until it ends). Returns the state and whether a job was queued."""
        config = await self.state(user_id)
        check_can_disconnect(config, mode)
        assert config is not None
        if mode is DisconnectMode.keep:
            kept = await self._changes.update(
                user_id, connection=ConnectionStatus.disconnected,
                deployment=DeploymentStatus.not_started,
                deployment_progress=KEPT_PROGRESS, **ERASED)
            return kept, False
        label = ("Moving your data back" if mode is DisconnectMode.migrate
                 else "Deleting your data")
        moving = await self._changes.update(user_id, connection=ConnectionStatus.moving,
                                            deployment_progress=label)
        await self.jobs.disconnect(user_id, config.credential_version, mode)
        return moving, True

    async def finish_disconnect(self, user_id: str, credential_version: int,
                                mode: DisconnectMode) -> None:
        """The job body of ``migrate`` and ``delete`` (:class:`DisconnectMove`)."""
        config = await self.state(user_id)
        if config is None or config.credential_version != credential_version:
            return
        await DisconnectMove(config, mode, main=self.main, databases=self._databases,
                             changes=self._changes, limits=self.limits).run()
