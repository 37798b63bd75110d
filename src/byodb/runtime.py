"""The composition root: the long-lived objects of one process (web app or worker), built
once from settings. Imported only by the entry layers (web, cli, jobs)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

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
from byodb.instances.lifecycle.owner import InstanceLifecycle, LifecycleJobs
from byodb.instances.lifecycle.steps import LifecycleLimits
from byodb.maindb.urls import async_url
from byodb.routing import Router
from byodb.services.after_work import AfterWork
from byodb.services.reembed import Reembedder
from byodb.settings import Settings
from byodb.vault import Vault
from byodb.vault.keys import load_key_ring


class ProcessJobs(LifecycleJobs, MigrationJobs, Protocol):
    """The durable jobs this process's objects queue (``ProcrastinateJobs``)."""


@dataclass
class Runtime:
    settings: Settings
    main_url: str
    main: AsyncEngine
    vault: Vault
    databases: UserDatabases
    lifecycle: InstanceLifecycle
    migrator: SchemaMigrator
    router: Router
    chat_model: ChatModel
    resolver: Resolver
    embedder: EmbeddingModel
    health: HealthContext
    reembedder: Reembedder
    after_work: AfterWork

    async def close(self) -> None:
        await self.after_work.close()  # first: the after-work still writes through the router
        await self.router.close()
        await self.main.dispose()


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


def build_runtime(settings: Settings, main_url: str, *,
                  jobs: ProcessJobs | None = None,
                  resolver: Resolver = system_resolver,
                  chat_model: ChatModel | None = None,
                  embedder: EmbeddingModel | None = None) -> Runtime:
    embedder = embedder or embedding_model_from_settings(settings)
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
    passive = PassiveHealth(main, clock=changes.now)
    router = Router(main, databases=databases, changes=changes, migrator=migrator,
                    cache_size=settings.engine_cache_size,
                    request_timeout_s=settings.user_request_timeout_s,
                    file_storage=settings.byod_file_storage, passive=passive)
    return Runtime(
        settings=settings,
        main_url=main_url,
        main=main,
        vault=vault,
        databases=databases,
        lifecycle=lifecycle,
        migrator=migrator,
        router=router,
        chat_model=chat_model or chat_model_from_settings(settings),
        resolver=resolver,
        embedder=embedder,
        health=HealthContext(HealthSweeper(main, HealthChecks(
                                               main, databases, changes, HealthLimits(
                                                   timeout_s=settings.health_timeout_s,
                                                   failures=settings.health_failures)),
                                           concurrency=settings.health_concurrency,
                                           alerts=AlertSettings.from_settings(settings),
                                           idle_interval_s=settings.health_idle_interval_s,
                                           passive=passive),
                             interval_s=settings.health_interval_s),
        reembedder=Reembedder(router, embedder),
        after_work=AfterWork(deadline_s=settings.after_exchange_timeout_s),
    )
