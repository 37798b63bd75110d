"""The ``user_database_config`` row of one user on main: read it, save credentials, move
its state machines. Every state change goes through :func:`update_state`, which checks the
transition, and announces it (NOTIFY) so every process drops its cached route."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from sqlalchemy import func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from byodb.instances.guard import DatabaseUrl
from byodb.instances.states import (
    ConnectionStatus,
    DeploymentStatus,
    check_connection_transition,
    check_deployment_transition,
)
from byodb.maindb.tables import user_database_config as udc
from byodb.vault import Secret, Vault

ROUTE_CHANNEL = "byodb_routes"
URL_FIELD = "database_url"


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
            created_at=m["created_at"],
            updated_at=m["updated_at"],
        )

    def decrypt_url(self, vault: Vault) -> Secret[str]:
        assert self.encrypted_url is not None, "no credentials saved"
        return vault.decrypt(self.encrypted_url, user_id=self.user_id, field=URL_FIELD)


async def get_config(conn: AsyncConnection, user_id: str) -> DatabaseConfig | None:
    row = (await conn.execute(select(udc).where(udc.c.user_id == user_id))).first()
    return DatabaseConfig.from_row(row) if row is not None else None


async def load_config(engine: AsyncEngine, user_id: str) -> DatabaseConfig | None:
    """The user's row, read on a connection of its own."""
    async with engine.connect() as conn:
        return await get_config(conn, user_id)


async def _notify(conn: AsyncConnection, user_id: str) -> None:
    await conn.execute(text("select pg_notify(:channel, :user)"),
                       {"channel": ROUTE_CHANNEL, "user": user_id})


async def save_credentials(
    engine: AsyncEngine, vault: Vault, user_id: str, url: DatabaseUrl, raw_url: Secret[str]
) -> DatabaseConfig:
    """Store the URL encrypted and queue the user for a new deployment.

    A first connection goes to ``pending`` (content keeps working on main meanwhile). A user
    already on their own database goes to ``moving``: the app holds their requests for the
    seconds the new credentials take to deploy, instead of showing main's (empty) content.
    """
    ciphertext = vault.encrypt(raw_url, user_id=user_id, field=URL_FIELD)
    values: dict[str, Any] = {
        "encrypted_url": ciphertext,
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
        "updated_at": func.now(),
    }
    async with engine.begin() as conn:
        current = await get_config(conn, user_id)
        if current is not None:
            on_own_database = current.connection_status is ConnectionStatus.connected or (
                current.connection_status is ConnectionStatus.error
                and current.deployment_status is DeploymentStatus.deployed)
            status = ConnectionStatus.moving if on_own_database else ConnectionStatus.pending
            check_connection_transition(current.connection_status, status)
            values["connection_status"] = status.value
        stmt = insert(udc).values(user_id=user_id, credential_version=1, **values)
        stmt = stmt.on_conflict_do_update(
            index_elements=[udc.c.user_id],
            set_={**values, "credential_version": udc.c.credential_version + 1},
        )
        await conn.execute(stmt)
        await _notify(conn, user_id)
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
    **facts: Any,
) -> DatabaseConfig | None:
    """Move a user's state machines (checked) and record facts in one transaction.

    ``expect_credential_version`` makes the update a no-op when the user saved new
    credentials meanwhile (a stale deploy or health result must not overwrite them).
    Returns the new row, or None when there was nothing to update.
    """
    async with engine.begin() as conn:
        row = (await conn.execute(
            select(udc).where(udc.c.user_id == user_id).with_for_update()
        )).first()
        if row is None:
            return None
        current = DatabaseConfig.from_row(row)
        if (expect_credential_version is not None
                and current.credential_version != expect_credential_version):
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
        await _notify(conn, user_id)
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
