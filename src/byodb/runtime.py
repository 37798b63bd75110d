"""The composition root: the long-lived objects of one process, built once from settings by
:func:`open_process` for the process's :class:`Role` (the web app, ``byodb worker``, one
operator command). Imported only by the entry layers (web, cli)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

import procrastinate
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from byodb.alerts import AlertSettings
from byodb.assistant import ChatModel, chat_model_from_settings
from byodb.assistant.embeddings import EmbeddingModel, embedding_model_from_settings
from byodb.content import resolve_schema_target
from byodb.instances.connection.addresses import Resolver, system_resolver
from byodb.instances.connection.deadlines import Deadline
from byodb.instances.connection.guard import GuardPolicy
from byodb.instances.connection.hostenv import forget_host_libpq_environment
from byodb.instances.connection.session import SessionLimits
from byodb.instances.fleet.schema_migration import MigrationJobs, SchemaMigrator
from byodb.instances.health.checks import HealthChecks, HealthLimits
from byodb.instances.health.jobs import HealthContext
from byodb.instances.health.passive import PassiveHealth
from byodb.instances.health.sweep import HealthSweeper
from byodb.instances.lifecycle.admission import ConnectFlags
from byodb.instances.lifecycle.changes import StateChanges
from byodb.instances.lifecycle.databases import PoolLimits, UserDatabases
from byodb.instances.lifecycle.jobs import ProcrastinateJobs
from byodb.instances.lifecycle.owner import InstanceLifecycle, LifecycleJobs
from byodb.instances.lifecycle.steps import LifecycleLimits
from byodb.jobs.queue import bound_job_app, ensure_job_schema
from byodb.jobs.rollout import begin_auto_rollout
from byodb.maindb.urls import async_url
from byodb.routing import Router
from byodb.services.after_work import AfterWork
from byodb.services.reembed import Reembedder
from byodb.settings import Settings
from byodb.vault import Vault
from byodb.vault.keys import load_key_ring


class ProcessJobs(LifecycleJobs, MigrationJobs, Protocol):
    """The durable jobs this process's objects queue (``ProcrastinateJobs``)."""


class Role(StrEnum):
    """What a process is for, which decides what :func:`open_process` builds for it."""

    web = "web"
    """``byodb serve`` (and ``create_app``): the whole runtime; the app adds its routes,
    listeners and, unless ``BYODB_INLINE_WORKER=false``, the job workers."""
    worker = "worker"
    """``byodb worker``: the whole runtime, for the job workers."""
    operator = "operator"
    """One operator command: the :class:`Core` and the job app, nothing else (no chat
    model, embedder, router or health sweeper; a command that needs the router or a
    sweeper builds it from the core, :func:`user_router`, :func:`health_sweeper`)."""


@dataclass
class Core:
    """What every role builds: main, the vault, the connection layer, the lifecycle of one
    user database and the schema migrator."""

    settings: Settings
    main_url: str
    main: AsyncEngine
    vault: Vault
    databases: UserDatabases
    changes: StateChanges
    lifecycle: InstanceLifecycle
    migrator: SchemaMigrator
    resolver: Resolver

    async def close(self) -> None:
        await self.main.dispose()


@dataclass
class Runtime(Core):
    """The web and worker roles' runtime: the core, the router to users' databases, the
    models, the health sweeper, the re-embedder and the after-work of exchanges."""

    router: Router
    chat_model: ChatModel
    embedder: EmbeddingModel
    health: HealthContext
    reembedder: Reembedder
    after_work: AfterWork

    async def close(self) -> None:
        await self.after_work.close()  # first: the after-work still writes through the router
        await self.router.close()
        await super().close()


def guard_policy(settings: Settings, resolver: Resolver = system_resolver) -> GuardPolicy:
    return GuardPolicy(
        allow_private=settings.private_hosts_allowed, tls_required=settings.tls_required,
        resolver=resolver, connect_timeout_s=settings.connect_timeout_s,
        ca_dir=settings.data_dir / "tls",
        limits=request_session_limits(settings))


def request_session_limits(settings: Settings) -> SessionLimits:
    """The limits of a routed request's transactions: from the request deadline, unless
    BYODB_USER_STATEMENT_TIMEOUT sets the statement limit itself."""
    limits = Deadline(settings.user_request_timeout_s,
                      lock_timeout_s=settings.user_lock_timeout_s).session()
    if settings.user_statement_timeout_s is not None:
        limits = limits.with_statement_timeout(settings.user_statement_timeout_s)
    return limits


def lifecycle_limits(settings: Settings) -> LifecycleLimits:
    return LifecycleLimits(test_s=settings.test_timeout_s, deploy_s=settings.deploy_timeout_s,
                           move_s=settings.move_timeout_s,
                           schema_target=resolve_schema_target(settings.schema_target),
                           lock_timeout_s=settings.user_lock_timeout_s)


def build_core(settings: Settings, main_url: str, *, jobs: ProcessJobs | None = None,
               resolver: Resolver = system_resolver) -> Core:
    # Before anything connects: no PG* variable of this host may shape a connection (a user's
    # above all); main is configured by its URL alone.
    forget_host_libpq_environment()
    main = create_async_engine(async_url(main_url), pool_size=10, max_overflow=10)
    vault = Vault(load_key_ring(settings))
    databases = UserDatabases(guard_policy(settings, resolver), vault, PoolLimits(
        size=settings.user_pool_size, timeout_s=settings.connect_timeout_s * 2,
        idle_timeout_s=settings.user_idle_timeout_s))
    changes = StateChanges(main)
    lifecycle = InstanceLifecycle(main=main, vault=vault, databases=databases, changes=changes,
                                  limits=lifecycle_limits(settings), jobs=jobs,
                                  flags=ConnectFlags(
                                      enabled=settings.byod_enabled,
                                      requires_premium=settings.byod_requires_premium))
    migrator = SchemaMigrator(main=main, databases=databases, changes=changes, jobs=jobs,
                              target=resolve_schema_target(settings.schema_target))
    return Core(settings=settings, main_url=main_url, main=main, vault=vault,
                databases=databases, changes=changes, lifecycle=lifecycle, migrator=migrator,
                resolver=resolver)


def user_router(core: Core, passive: PassiveHealth | None = None) -> Router:
    """The router to users' databases (the caller closes it)."""
    settings = core.settings
    return Router(core.main, databases=core.databases, changes=core.changes,
                  migrator=core.migrator, cache_size=settings.engine_cache_size,
                  request_timeout_s=settings.user_request_timeout_s,
                  file_storage=settings.byod_file_storage, passive=passive)


def health_sweeper(core: Core, passive: PassiveHealth | None = None) -> HealthSweeper:
    """The health sweeper (it records alerts and sends them by mail)."""
    settings = core.settings
    checks = HealthChecks(core.main, core.databases, core.changes, HealthLimits(
        timeout_s=settings.health_timeout_s, failures=settings.health_failures))
    return HealthSweeper(core.main, checks, concurrency=settings.health_concurrency,
                         alerts=AlertSettings.from_settings(settings),
                         idle_interval_s=settings.health_idle_interval_s, passive=passive)


def build_runtime(settings: Settings, main_url: str, *,
                  jobs: ProcessJobs | None = None,
                  resolver: Resolver = system_resolver,
                  chat_model: ChatModel | None = None,
                  embedder: EmbeddingModel | None = None) -> Runtime:
    embedder = embedder or embedding_model_from_settings(settings)
    core = build_core(settings, main_url, jobs=jobs, resolver=resolver)
    passive = PassiveHealth(core.main, clock=core.changes.now)
    router = user_router(core, passive)
    return Runtime(
        settings=settings, main_url=main_url, main=core.main, vault=core.vault,
        databases=core.databases, changes=core.changes, lifecycle=core.lifecycle,
        migrator=core.migrator, resolver=resolver,
        router=router,
        chat_model=chat_model or chat_model_from_settings(settings),
        embedder=embedder,
        health=HealthContext(health_sweeper(core, passive),
                             interval_s=settings.health_interval_s),
        reembedder=Reembedder(router, embedder),
        after_work=AfterWork(deadline_s=settings.after_exchange_timeout_s),
    )


class Process:
    """One process's objects, as :func:`open_process` built them for its role."""

    def __init__(self, role: Role, core: Core, job_app: procrastinate.App,
                 runtime: Runtime | None) -> None:
        self.role = role
        self.core = core
        self.job_app = job_app
        self._runtime = runtime

    @property
    def runtime(self) -> Runtime:
        """The whole runtime (the web and worker roles)."""
        if self._runtime is None:
            raise RuntimeError(f"the {self.role} role builds no router, models or sweeper")
        return self._runtime


@contextlib.asynccontextmanager
async def open_process(settings: Settings, role: Role, main_url: str, *,
                       resolver: Resolver = system_resolver,
                       chat_model: ChatModel | None = None) -> AsyncIterator[Process]:
    """Everything ``role`` needs, started in order and closed in reverse after the block.

    Up: the job app (its own connection pool on main), so the lifecycle can queue jobs;
    the core (main's engine, the vault, the connection layer) and, for web and worker, the
    rest of the runtime; the job queue's schema on main; then, for web and worker, the
    automatic schema rollout (begun by whichever process starts first). Down: the runtime
    (users' engines, then main's pool), then the job app. What runs in the process (the
    app's routes and listeners, the job workers) is the entry point's, inside the block,
    and must have ended when the block does.
    """
    async with bound_job_app(main_url) as job_app:
        jobs = ProcrastinateJobs(job_app)
        runtime: Runtime | None = None
        if role is Role.operator:
            core = build_core(settings, main_url, jobs=jobs, resolver=resolver)
        else:
            core = runtime = build_runtime(settings, main_url, jobs=jobs, resolver=resolver,
                                           chat_model=chat_model)
        try:
            await ensure_job_schema(core.main, job_app)
            if runtime is not None:
                await begin_auto_rollout(job_app, core.main,
                                         target=core.migrator.target,
                                         enabled=settings.auto_migrate)
            yield Process(role, core, job_app, runtime)
        finally:
            await core.close()
