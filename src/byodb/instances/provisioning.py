"""Connecting a user's database after they saved it: deploy the content schema, move their
existing content from main over, then switch them to ``connected``. Also the retry.

Runs as a durable job (``byodb.jobs``); the job payload is the user id and credential
version only — never the URL. Progress is written step by step to the config row.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging

from sqlalchemy import text
from sqlalchemy.engine import Engine

from byodb.content import CONTENT_SCHEMA_VERSION
from byodb.errors import ByodbError
from byodb.instances.config_store import DatabaseConfig, load_config, update_state
from byodb.instances.connect import checked_target_for, user_sync_engine
from byodb.instances.deploy import DeployOutcome, deploy_content_schema_on
from byodb.instances.guard import ConnectionCheckError
from byodb.instances.moves import move_user_content
from byodb.instances.probe import open_connection, read_deployed_version
from byodb.instances.states import ConnectionStatus, DeploymentStatus
from byodb.routing.router import holding_user_writes_on_main
from byodb.runtime import Runtime

log = logging.getLogger(__name__)


def _public_error(exc: BaseException) -> tuple[str, str]:
    """A message and code safe to store and show: no URL, no password, no content."""
    if isinstance(exc, ByodbError):
        return exc.message, exc.code
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
        return "The deployment timed out.", "timeout"
    sqlstate = getattr(getattr(exc, "orig", exc), "sqlstate", None)
    if sqlstate == "42501":
        return "The database user lacks a privilege the deployment needs.", \
            "insufficient_privileges"
    if sqlstate:
        return f"The database rejected a deployment step (SQLSTATE {sqlstate}).", "deploy_failed"
    return "The database could not be reached during deployment.", "unreachable"


async def provision_user_database(rt: Runtime, user_id: str, credential_version: int) -> None:
    """Deploy + move + connect for the saved credentials ``credential_version``."""
    config = await load_config(rt.main, user_id)
    if config is None or config.credential_version != credential_version:
        log.info("skipping stale provisioning job")
        return
    expect = credential_version
    loop = asyncio.get_running_loop()

    reports: list[concurrent.futures.Future[object]] = []

    def progress(step: int, total: int, label: str) -> None:
        # Called from the deploy thread; each report is written by the event loop.
        reports.append(asyncio.run_coroutine_threadsafe(update_state(
            rt.main, user_id, expect_credential_version=expect,
            deployment_progress=label, deployment_step=step, deployment_total_steps=total,
        ), loop))

    async def reports_written() -> None:
        # Progress must never land after (and overwrite) the final state.
        await asyncio.gather(*(asyncio.wrap_future(f) for f in reports),
                             return_exceptions=True)

    await update_state(rt.main, user_id, deployment=DeploymentStatus.deploying,
                       expect_credential_version=expect, deployment_progress="Connecting",
                       deployment_step=0, connection_error=None, connection_error_code=None)
    rt.router.invalidate(user_id)
    deployed = False
    try:
        target = await checked_target_for(config, rt.vault, rt.settings, rt.resolver)
        probe = await open_connection(target, timeout_s=rt.settings.test_timeout_s)
        await probe.close()
        engine = user_sync_engine(target)
        try:
            def deploy() -> DeployOutcome:
                with engine.connect() as conn:
                    return deploy_content_schema_on(conn, progress=progress,
                                                    timeout_s=rt.settings.deploy_timeout_s)

            try:
                outcome = await asyncio.wait_for(asyncio.to_thread(deploy),
                                                 rt.settings.deploy_timeout_s + 5)
            finally:
                await reports_written()
            await update_state(rt.main, user_id, deployment=DeploymentStatus.deployed,
                               expect_credential_version=expect,
                               schema_version=CONTENT_SCHEMA_VERSION,
                               instance_id=outcome.instance_id,
                               last_schema_deploy=text("now()"),
                               deployment_progress="Moving your existing content")
            deployed = True
            await _move_from_main(rt, user_id, expect, engine)
        finally:
            await asyncio.to_thread(engine.dispose)
    except Exception as exc:
        message, code = _public_error(exc)
        log.warning("provisioning failed for a user: %s (%s)", code, message)
        stage = "Moving your content failed" if deployed else "Deployment failed"
        await update_state(rt.main, user_id, connection=ConnectionStatus.error,
                           deployment=None if deployed else DeploymentStatus.failed,
                           expect_credential_version=expect,
                           connection_error=message, connection_error_code=code,
                           deployment_progress=f"{stage}: {message}")
        rt.router.invalidate(user_id)
        return
    rt.router.invalidate(user_id)


async def _move_from_main(rt: Runtime, user_id: str, expect: int, user_engine: Engine) -> None:
    """Hold the user's writes, move their content from main, and switch them over."""
    await update_state(rt.main, user_id, connection=ConnectionStatus.moving,
                       expect_credential_version=expect,
                       deployment_progress="Moving your existing content")
    rt.router.invalidate(user_id)
    main_engine = rt.main_sync_engine()

    def move() -> int:
        with main_engine.connect() as main_conn, user_engine.connect() as user_conn, \
                holding_user_writes_on_main(main_conn, user_id):
            return move_user_content(main_conn, user_conn, user_id).total_rows

    try:
        moved = await asyncio.to_thread(move)
    finally:
        await asyncio.to_thread(main_engine.dispose)
    await update_state(rt.main, user_id, connection=ConnectionStatus.connected,
                       expect_credential_version=expect, consecutive_failures=0,
                       last_connection_test=text("now()"),
                       deployment_progress=f"Connected; moved {moved} rows to your database")


async def retry_connection(rt: Runtime, user_id: str) -> DatabaseConfig | None:
    """Test the saved database now. Connected again → ``connected``; else stays ``error``.

    Returns the new config; a user whose deployment never completed should re-run
    provisioning instead (the API decides).
    """
    config = await load_config(rt.main, user_id)
    if config is None or config.encrypted_url is None:
        return config
    try:
        target = await checked_target_for(config, rt.vault, rt.settings, rt.resolver)
        conn = await open_connection(target, timeout_s=rt.settings.test_timeout_s)
        async with conn:
            version = await read_deployed_version(conn)
        if version != config.schema_version:
            raise ConnectionCheckError(
                "The byodb schema on your database is missing or not the deployed version.",
                hint="Redeploy from Settings → Database.", code="schema_conflict")
    except ConnectionCheckError as exc:
        rt.router.invalidate(user_id)
        return await update_state(
            rt.main, user_id, connection=ConnectionStatus.error,
            expect_credential_version=config.credential_version,
            connection_error=exc.message, connection_error_code=exc.code,
            last_connection_test=text("now()"),
            consecutive_failures=config.consecutive_failures + 1)
    await rt.router.forget_user(user_id)  # fresh pool: old connections died with the server
    new = await update_state(
        rt.main, user_id, connection=ConnectionStatus.connected,
        expect_credential_version=config.credential_version, connection_error=None,
        connection_error_code=None, consecutive_failures=0, last_connection_test=text("now()"))
    rt.router.invalidate(user_id)
    return new
