"""The ``user_database_config`` row of one user on main: read it, save credentials, move
its state machines. Every state change goes through :func:`update_state`, which checks the
transition, and announces it (NOTIFY on :data:`ROUTE_CHANNEL`) so every process drops its
cached route — and, when the connection status changed, its pool for that user.

The one placement decision, :meth:`DatabaseConfig.access`, lives here too."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from sqlalchemy import func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from byodb.instances.connection.guard import DatabaseUrl
from byodb.instances.lifecycle.states import (
    ConnectionStatus,
    ContentAccess,
    DeploymentStatus,
    Placement,
    check_connection_transition,
    check_deployment_transition,
)
from byodb.maindb.tables import user_database_config as udc
from byodb.vault import Secret, Vault

ROUTE_CHANNEL = "byodb_routes"
URL_FIELD = "database_url"
PREVIOUS_URL_FIELD = "previous_database_url"
POOL_SUFFIX = "\x1fpool"
"""A notification ``user_id + POOL_SUFFIX`` means: drop the route *and* the user's pool."""


@dataclass(frozen=True)
class DatabaseConfig:
    """A user's BYOD record as the app sees it (the ciphertext stays opaque here)."""

    user_id: str
    encrypted_url: str | None
    credential_version: int
    redacted_url: str | None
    host: str | None
    connection_status: ConnectionStatus
    connection_error: str | None
    connection_error_code: str | None
    last_connection_test: datetime | None
    consecutive_failures: int
    schema_version: int | None
    deployment_status: DeploymentStatus
    deployment_progress: str | None
    deployment_step: int
    deployment_total_steps: int
    last_schema_deploy: datetime | None
    instance_id: UUID | None
    content_placement: Placement
    previous_encrypted_url: str | None
    previous_instance_id: UUID | None
    previous_database_mode: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: Any) -> DatabaseConfig:
        m = row._mapping
        return cls(
            user_id=m["user_id"],
            encrypted_url=m["encrypted_url"],
            credential_version=m["credential_version"],
            redacted_url=m["redacted_url"],
            host=m["host"],
            connection_status=ConnectionStatus(m["connection_status"]),
            connection_error=m["connection_error"],
            connection_error_code=m["connection_error_code"],
            last_connection_test=m["last_connection_test"],
            consecutive_failures=m["consecutive_failures"],
            schema_version=m["schema_version"],
            deployment_status=DeploymentStatus(m["deployment_status"]),
            deployment_progress=m["deployment_progress"],
            deployment_step=m["deployment_step"],
            deployment_total_steps=m["deployment_total_steps"],
            last_schema_deploy=m["last_schema_deploy"],
            instance_id=m["instance_id"],
            content_placement=Placement(m["content_placement"]),
            previous_encrypted_url=m["previous_encrypted_url"],
            previous_instance_id=m["previous_instance_id"],
            previous_database_mode=m["previous_database_mode"],
            created_at=m["created_at"],
            updated_at=m["updated_at"],
        )

    def decrypt_url(self, vault: Vault) -> Secret[str]:
        assert self.encrypted_url is not None, "no credentials saved"
        return vault.decrypt(self.encrypted_url, user_id=self.user_id, field=URL_FIELD)

    def decrypt_previous_url(self, vault: Vault) -> Secret[str]:
        assert self.previous_encrypted_url is not None, "no previous database"
        return vault.decrypt(self.previous_encrypted_url, user_id=self.user_id,
                             field=PREVIOUS_URL_FIELD)

    @property
    def access(self) -> ContentAccess:
        """The one placement decision: what a content request of this user may do now.

        A move or deploy under way holds requests; content still on main is served from
        main (a first deploy or onboarding move that failed never switched the user over);
        content on their database is served only while it is connected — in error the
        app blocks, never falling back to main.
        """
        if self.connection_status is ConnectionStatus.moving:
            return ContentAccess.held
        if self.content_placement is Placement.main:
            return ContentAccess.main
        if self.connection_status is ConnectionStatus.connected:
            return ContentAccess.user
        return ContentAccess.unavailable

    @property
    def switching(self) -> bool:
        """A switch to another database is under way (the old one's URL is kept)."""
        return self.previous_encrypted_url is not None


def access_of(config: DatabaseConfig | None) -> ContentAccess:
    """:meth:`DatabaseConfig.access` for a user who may have no BYOD row at all."""
    return config.access if config is not None else ContentAccess.main


async def get_config(conn: AsyncConnection, user_id: str, *,
                     for_update: bool = False) -> DatabaseConfig | None:
    query = select(udc).where(udc.c.user_id == user_id)
    row = (await conn.execute(query.with_for_update() if for_update else query)).first()
    return DatabaseConfig.from_row(row) if row is not None else None


async def load_config(engine: AsyncEngine, user_id: str) -> DatabaseConfig | None:
    """The user's row, read on a connection of its own."""
    async with engine.connect() as conn:
        return await get_config(conn, user_id)


async def _notify(conn: AsyncConnection, user_id: str, *, drop_pool: bool) -> None:
    payload = user_id + POOL_SUFFIX if drop_pool else user_id
    await conn.execute(text("select pg_notify(:channel, :payload)"),
                       {"channel": ROUTE_CHANNEL, "payload": payload})


@dataclass(frozen=True)
class Switch:
    """A move of the user's content from the database it is on to the one being saved."""

    from_url: Secret[str]
    from_instance_id: UUID | None
    old_database: str  # "keep" | "delete": what the old database keeps after the move


async def save_credentials(
    engine: AsyncEngine, vault: Vault, user_id: str, url: DatabaseUrl, raw_url: Secret[str],
    *, switch: Switch | None = None,
) -> DatabaseConfig:
    """Store the URL encrypted and queue the user for a new deployment.

    Content still on main: ``pending`` (they keep working on main meanwhile). Content on
    their database: ``moving`` — requests are held for the seconds the deploy (and, for a
    ``switch`` to another database, the move) takes, instead of showing main's (empty)
    content. ``switch`` keeps the old database's URL, encrypted, until the move is done.
    """
    values: dict[str, Any] = {
        "encrypted_url": vault.encrypt(raw_url, user_id=user_id, field=URL_FIELD),
        "key_id": vault.current_key_id,
        "redacted_url": url.redacted(),
        "host": url.host,
        "connection_status": ConnectionStatus.pending.value,
        "connection_error": None,
        "connection_error_code": None,
        "consecutive_failures": 0,
        "deployment_status": DeploymentStatus.not_started.value,
        "deployment_progress": "Waiting to deploy",
        "deployment_step": 0,
        "deployment_total_steps": 0,
        "previous_encrypted_url": None,
        "previous_instance_id": None,
        "previous_database_mode": None,
        "updated_at": func.now(),
    }
    if switch is not None:
        values["previous_encrypted_url"] = vault.encrypt(
            switch.from_url, user_id=user_id, field=PREVIOUS_URL_FIELD)
        values["previous_instance_id"] = switch.from_instance_id
        values["previous_database_mode"] = switch.old_database
    async with engine.begin() as conn:
        current = await get_config(conn, user_id, for_update=True)
        if current is not None:
            status = (ConnectionStatus.moving if current.content_placement is Placement.user
                      else ConnectionStatus.pending)
            check_connection_transition(current.connection_status, status)
            values["connection_status"] = status.value
        stmt = insert(udc).values(user_id=user_id, credential_version=1, **values)
        stmt = stmt.on_conflict_do_update(
            index_elements=[udc.c.user_id],
            set_={**values, "credential_version": udc.c.credential_version + 1},
        )
        await conn.execute(stmt)
        await _notify(conn, user_id, drop_pool=True)
        saved = await get_config(conn, user_id)
    assert saved is not None
    return saved


async def update_state(
    engine: AsyncEngine,
    user_id: str,
    *,
    connection: ConnectionStatus | None = None,
    deployment: DeploymentStatus | None = None,
    expect_credential_version: int | None = None,
    expect_connection: ConnectionStatus | None = None,
    **facts: Any,
) -> DatabaseConfig | None:
    """Move a user's state machines (checked) and record facts in one transaction.

    ``expect_credential_version`` makes the update a no-op when the user saved new
    credentials meanwhile (a stale deploy or health result must not overwrite them);
    ``expect_connection`` likewise when the connection status moved on since it was read
    (a health result must not undo a disconnect or a move that began meanwhile).
    Returns the new row, or None when there was nothing to update.
    """
    async with engine.begin() as conn:
        current = await get_config(conn, user_id, for_update=True)
        if current is None:
            return None
        if (expect_credential_version is not None
                and current.credential_version != expect_credential_version):
            return None
        if expect_connection is not None and current.connection_status is not expect_connection:
            return None
        values: dict[str, Any] = dict(facts)
        if connection is not None:
            check_connection_transition(current.connection_status, connection)
            values["connection_status"] = connection.value
        if deployment is not None:
            check_deployment_transition(current.deployment_status, deployment)
            values["deployment_status"] = deployment.value
        values["updated_at"] = datetime.now(UTC)
        await conn.execute(udc.update().where(udc.c.user_id == user_id).values(**values))
        await _notify(conn, user_id, drop_pool=connection is not None
                      and connection is not current.connection_status)
        return await get_config(conn, user_id)


async def rotate_credentials(engine: AsyncEngine, vault: Vault) -> int:
    """Re-encrypt every stored URL not under the current key; online and idempotent.

    Each row is updated only if its ciphertext is still the one we read, so a user saving
    new credentials at the same moment is never overwritten. Returns rows re-encrypted.
    """
    rotated = 0
    async with engine.connect() as conn:
        rows = (await conn.execute(
            select(udc.c.user_id, udc.c.encrypted_url)
            .where(udc.c.encrypted_url.is_not(None), udc.c.key_id != vault.current_key_id)
        )).all()
    for user_id, ciphertext in rows:
        plain = vault.decrypt(ciphertext, user_id=user_id, field=URL_FIELD)
        fresh = vault.encrypt(plain, user_id=user_id, field=URL_FIELD)
        async with engine.begin() as conn:
            result = await conn.execute(
                udc.update()
                .where(udc.c.user_id == user_id, udc.c.encrypted_url == ciphertext)
                .values(encrypted_url=fresh, key_id=vault.current_key_id))
            rotated += result.rowcount
    return rotated
