"""The FastAPI application factory and its lifespan (the web role's process, job workers,
listeners)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from byodb import __version__
from byodb.assistant import ChatModel
from byodb.executors import IoThreads
from byodb.instances.connection.addresses import Resolver, system_resolver
from byodb.jobs.queue import run_workers
from byodb.maindb.migrate import upgrade_main
from byodb.runtime import Role, open_process
from byodb.settings import Settings, get_settings
from byodb.web.access_log import AccessLogMiddleware
from byodb.web.api import admin as admin_api
from byodb.web.api import admin_health as admin_health_api
from byodb.web.api import admin_migrations as admin_migrations_api
from byodb.web.api import areas as areas_api
from byodb.web.api import byod as byod_api
from byodb.web.api import byod_events as byod_events_api
from byodb.web.api import changes as changes_api
from byodb.web.api import conversations as conversations_api
from byodb.web.api import export as portability_api
from byodb.web.api import files as files_api
from byodb.web.api import imports as imports_api
from byodb.web.api import search as search_api
from byodb.web.auth import Authenticator
from byodb.web.edge_limits import BodyLimits, EdgeLimits
from byodb.web.errors import error_body, install_error_handlers
from byodb.web.metrics import install_metrics
from byodb.web.notify import listen_for_route_changes
from byodb.web.pages import install_pages
from byodb.web.proxies import TrustedProxiesMiddleware
from byodb.web.ratelimit import RateLimiter
from byodb.web.readiness import ReadinessProbe
from byodb.web.realtime import ChangeHub, ContentChangeAnnouncer, listen_for_content_changes
from byodb.web.same_site import SameSiteMiddleware
from byodb.web.users import UserDirectory

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, *, main_url: str | None = None,
               resolver: Resolver = system_resolver, chat_model: ChatModel | None = None,
               run_worker: bool | None = None, migrate: bool = True) -> FastAPI:
    """Build the app. ``main_url`` defaults to ``BYODB_DATABASE_URL``."""
    settings = settings or get_settings()
    settings.check_production()
    url = main_url or settings.database_url
    if not url:
        raise RuntimeError("no main database: set BYODB_DATABASE_URL or use `byodb serve`")
    with_worker = settings.run_worker_in_app if run_worker is None else run_worker

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if migrate:
            # Alembic is synchronous: a thread of its own, not the default pool (DESIGN §7).
            migrating = IoThreads(1, name="byodb-upgrade-main")
            try:
                await migrating.run(upgrade_main, url)
            finally:
                migrating.close()
        tasks: list[asyncio.Task[None]] = []
        async with open_process(settings, Role.web, url, resolver=resolver,
                                chat_model=chat_model) as process:
            runtime, job_app = process.runtime, process.job_app
            app.state.runtime = runtime
            app.state.job_app = job_app
            app.state.authenticator = Authenticator(settings)
            app.state.users = UserDirectory(runtime.main)
            app.state.test_limiter = RateLimiter(settings.test_rate_limit_per_minute)
            app.state.readiness = ReadinessProbe.for_main(runtime.main, url,
                                                          timeout_s=settings.ready_timeout_s)
            await imports_api.start_imports(app, runtime)
            tasks.append(asyncio.create_task(listen_for_route_changes(url, runtime.router)))
            app.state.changes = ChangeHub()
            if settings.byod_realtime:
                tasks.append(asyncio.create_task(
                    listen_for_content_changes(url, app.state.changes)))
            if with_worker:
                tasks.append(asyncio.create_task(
                    run_workers(job_app, runtime.lifecycle, name="inline",
                                main=runtime.main, migrator=runtime.migrator,
                                health=runtime.health,
                                reembedder=runtime.reembedder)))
            try:
                yield
            finally:
                await imports_api.stop_imports(app)
                for task in tasks:
                    task.cancel()
                for task in tasks:
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task

    app = FastAPI(title="byodb", version=__version__, lifespan=lifespan,
                  description="Bring your own database: each user's chat content on a "
                              "PostgreSQL they own.")
    install_error_handlers(app)
    # Outside the error handlers, inside the access log (which then logs its 413s and 401s).
    app.add_middleware(ContentChangeAnnouncer, enabled=settings.byod_realtime)
    app.add_middleware(EdgeLimits, limits=BodyLimits.from_settings(settings))
    # Cross-site cookie requests are refused before any body is read (web/same_site.py).
    app.add_middleware(SameSiteMiddleware)
    app.add_middleware(AccessLogMiddleware)
    # Outermost: the scheme a trusted proxy forwarded is in place before anything reads it.
    app.add_middleware(TrustedProxiesMiddleware, settings=settings)

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"], responses={503: {"description": "not ready"}})
    async def readyz() -> JSONResponse:
        """200 only when main is reachable and migrated: where a load balancer sends
        traffic (``/healthz`` is for restarts)."""
        probe: ReadinessProbe = app.state.readiness
        reason = await probe.not_ready_reason()
        if reason is None:
            return JSONResponse({"status": "ready"})
        return JSONResponse(error_body("not_ready", reason), status_code=503,
                            headers={"Retry-After": "5"})

    app.include_router(byod_api.router)
    app.include_router(byod_events_api.router)
    app.include_router(changes_api.router)
    app.include_router(admin_api.router)
    app.include_router(admin_health_api.router)
    app.include_router(admin_migrations_api.router)
    app.include_router(conversations_api.router)
    app.include_router(files_api.router)
    app.include_router(search_api.router)
    app.include_router(areas_api.build_router())
    app.include_router(portability_api.router)
    app.include_router(imports_api.router)
    install_metrics(app, settings)  # GET /metrics + request latency (outermost)
    install_pages(app)  # pages and /static last: API routes take precedence
    return app
