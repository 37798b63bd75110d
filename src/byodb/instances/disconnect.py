"""Leaving BYOD: keep the data where it is, migrate it back to main, or delete it.

``keep`` is immediate. ``migrate`` and ``delete`` need the user's database and run as a
durable job: the user is ``moving`` (requests held) until the data is on main (copied and
verified before anything is deleted on their side) or deleted. In every mode the saved
credentials are erased at the end, and the credential version is bumped so any queued job
for the old credentials becomes a no-op.
"""

from __future__ import annotations

import asyncio
import logging
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, text

from byodb.content import CONTENT_SCHEMA, content_table_names
from byodb.errors import Conflict
from byodb.instances.config_store import DatabaseConfig, load_config, update_state
from byodb.instances.connect import checked_target_for, user_sync_engine
from byodb.instances.moves import delete_user_rows, move_user_content
from byodb.instances.states import ConnectionStatus, DeploymentStatus
from byodb.maindb.tables import user_database_config as udc
from byodb.routing.router import holding_user_writes_on_main
from byodb.runtime import Runtime

log = logging.getLogger(__name__)


class DisconnectMode(StrEnum):
    keep = "keep"
    migrate = "migrate"
    delete = "delete"


_ERASED: dict[str, Any] = {"encrypted_url": None, "key_id": None, "schema_version": None,
           "deployment_step": 0, "deployment_total_steps": 0, "instance_id": None,
           "consecutive_failures": 0, "connection_error": None, "connection_error_code": None,
           "credential_version": udc.c.credential_version + 1}


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


async def disconnect_keep(rt: Runtime, user_id: str) -> DatabaseConfig | None:
    """Stop using the user's database; its data stays there untouched."""
    config = await update_state(
        rt.main, user_id, connection=ConnectionStatus.disconnected,
        deployment=DeploymentStatus.not_started,
        deployment_progress="Disconnected; your data stays on your database", **_ERASED)
    await rt.router.forget_user(user_id)
    return config


async def start_moving(rt: Runtime, user_id: str, mode: DisconnectMode) -> DatabaseConfig | None:
    label = "Moving your data back" if mode is DisconnectMode.migrate else "Deleting your data"
    config = await update_state(rt.main, user_id, connection=ConnectionStatus.moving,
                                deployment_progress=label)
    rt.router.invalidate(user_id)
    return config


async def run_disconnect(rt: Runtime, user_id: str, credential_version: int,
                         mode: DisconnectMode) -> None:
    """The job body for ``migrate`` and ``delete``."""
    config = await load_config(rt.main, user_id)
    if config is None or config.credential_version != credential_version:
        return
    try:
        target = await checked_target_for(config, rt.vault, rt.settings, rt.resolver)
        user_engine = user_sync_engine(target)
        main_engine = rt.main_sync_engine()

        def work() -> None:
            with user_engine.connect() as user_conn, main_engine.connect() as main_conn:
                if mode is DisconnectMode.migrate:
                    with holding_user_writes_on_main(main_conn, user_id):
                        move_user_content(user_conn, main_conn, user_id,
                                          lock_source_tables=True)
                else:
                    delete_user_rows(user_conn, user_id)
                    drop_schema_if_empty(user_conn)

        try:
            await asyncio.to_thread(work)
        finally:
            await asyncio.to_thread(user_engine.dispose)
            await asyncio.to_thread(main_engine.dispose)
    except Exception as exc:
        log.warning("disconnect (%s) failed for a user: %s", mode, type(exc).__name__)
        await update_state(rt.main, user_id, connection=ConnectionStatus.error,
                           expect_credential_version=credential_version,
                           connection_error=f"Disconnecting ({mode}) failed; nothing was "
                           "lost. Retry the connection, then try again.",
                           connection_error_code="disconnect_failed")
        rt.router.invalidate(user_id)
        return
    done = ("Disconnected; your data was moved back" if mode is DisconnectMode.migrate
            else "Disconnected; your data was deleted from your database")
    await update_state(rt.main, user_id, connection=ConnectionStatus.disconnected,
                       deployment=DeploymentStatus.not_started,
                       expect_credential_version=credential_version,
                       deployment_progress=done, **_ERASED)
    await rt.router.forget_user(user_id)


def drop_schema_if_empty(conn: Connection) -> bool:
    """Drop the byodb schema when no content of anyone is left in it."""
    with conn.begin():
        for name in content_table_names():
            if conn.execute(text(f"select exists (select 1 from {CONTENT_SCHEMA}.{name})")
                            ).scalar():
                return False
        conn.execute(text(f"drop schema {CONTENT_SCHEMA} cascade"))
    return True
