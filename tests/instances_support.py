"""Reaching byodb's lifecycle pieces directly from tests (no HTTP): a lifecycle without a
job queue for connection tests, and a deploy of the content schema over a URL."""

from __future__ import annotations

import psycopg
from sqlalchemy.ext.asyncio import create_async_engine

from byodb.content.deploy import DeployOutcome, deploy_content_schema
from byodb.instances.connection.addresses import Resolver, system_resolver
from byodb.instances.connection.guard import GuardPolicy
from byodb.instances.connection.probe import ConnectionVerdict
from byodb.instances.lifecycle.changes import StateChanges
from byodb.instances.lifecycle.databases import UserDatabases
from byodb.instances.lifecycle.owner import InstanceLifecycle
from byodb.instances.lifecycle.steps import LifecycleLimits
from byodb.vault import KeyRing, Vault, generate_key_hex


async def connection_test(url: str, *, allow_private: bool, tls_required: bool = False,
                          resolver: Resolver = system_resolver) -> ConnectionVerdict:
    """The connection test a user gets, run by a lifecycle of its own."""
    main = create_async_engine("postgresql+psycopg://")  # never connected: test() needs no main
    vault = Vault(KeyRing.from_hex(generate_key_hex()))
    policy = GuardPolicy(allow_private=allow_private, tls_required=tls_required,
                         resolver=resolver)
    lifecycle = InstanceLifecycle(main=main, vault=vault,
                                  databases=UserDatabases(policy, vault),
                                  changes=StateChanges(main), limits=LifecycleLimits())
    try:
        return await lifecycle.test(url)
    finally:
        await main.dispose()


async def deploy_schema(url: str) -> DeployOutcome:
    """Deploy the content schema on the database at ``url`` as byodb's deploy does."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        return await deploy_content_schema(conn)
