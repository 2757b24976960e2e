"""The FastAPI application behind `ioc serve`."""

from __future__ import annotations

import asyncio
import logging
import socket
from contextlib import asynccontextmanager
from collections.abc import Awaitable, Callable
from typing import AsyncIterator

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from dashboards import STATIC
from ioc.serve.api import (
    routes_admin, routes_agency, routes_auth, routes_breakdown, routes_cameras, routes_catalogue, routes_ops, routes_readings,
    routes_map, routes_recordings, routes_replay, routes_wall,
)
from ioc.serve.api import errors
from ioc.serve.api.docs import serve_docs
from ioc.serve.api.login_guard import LoginGuard
from ioc.serve.api.principal_cache import PrincipalCache
from ioc.serve.api.relay import Relay
from ioc.serve.api.revocation import Revocation
from ioc.serve.api.security import TokenIssuer
from ioc.core.logs import REQUEST_CLIENT
from ioc.core.settings import Settings
from ioc.core.storage import rollups
from ioc.core.storage.modes import StorageMode
from ioc.core.storage.pool import create_pool
from ioc.core.storage.schema import check_schema, log_storage

log = logging.getLogger("ioc.api")


async def _rollup_loop(pool: asyncpg.Pool, mode: StorageMode, timezone: str, every_s: float) -> None:
    while True:
        await asyncio.sleep(every_s)
        try:
            async with pool.acquire() as conn:
                await rollups.refresh(conn, mode, timezone)
        except Exception as exc:  # noqa: BLE001 - logged, retried next round
            log.warning("roll-up refresh failed", extra={"error": str(exc)[:300]})


def create_app(settings: Settings) -> FastAPI:
    issuer = TokenIssuer(settings.require_jwt_secret(), settings.jwt_ttl_s)
    dsn = settings.require_database_url()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = await create_pool(dsn, app="ioc-api", min_size=settings.db_pool_min, max_size=settings.db_pool_max)
        info = await check_schema(pool)  # only `ioc migrate` changes the schema: SchemaError if it does not fit
        log_storage(info, settings)
        app.state.pool = pool
        app.state.mode = info.mode
        app.state.timezone = info.timezone
        task = asyncio.create_task(_rollup_loop(pool, info.mode, info.timezone, settings.rollup_refresh_s))
        app.state.wall = None
        if settings.mqtt_url and settings.wall_port:
            from ioc.serve.wall.node import WallNode

            app.state.wall = WallNode(settings, pool, issuer, info.timezone)
            await app.state.wall.start()
        else:
            log.warning("wall hub off: IOC_MQTT_URL is not set or IOC_WALL_PORT is 0")
        app.state.relay = None
        if settings.mqtt_url:
            app.state.relay = Relay(settings)  # agencies' HTTP submissions, through the ingest
            await app.state.relay.start()
        revocation = asyncio.create_task(Revocation(dsn, app.state.principal_cache, app.state.wall).run())
        try:
            yield
        finally:
            if app.state.wall is not None:
                await app.state.wall.stop()
            if app.state.relay is not None:
                await app.state.relay.stop()
            task.cancel()
            revocation.cancel()
            await asyncio.gather(task, revocation, return_exceptions=True)
            await pool.close()

    app = FastAPI(
        title="IOC backend API",
        version="1",
        description="KPIs, areas and readings of the provincial Intelligent Operations Centre.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,  # both served from the package (docs.py): the CDN is unreachable offline
    )
    serve_docs(app)
    errors.install(app)

    @app.middleware("http")
    async def _who(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        # every line logged while serving this request names the client (behind a proxy:
        # X-Forwarded-For, which uvicorn applies with proxy_headers)
        token = REQUEST_CLIENT.set(request.client.host if request.client else None)
        try:
            return await call_next(request)
        finally:
            REQUEST_CLIENT.reset(token)
    app.state.settings = settings
    app.state.issuer = issuer
    app.state.login_guard = LoginGuard()
    app.state.principal_cache = PrincipalCache()
    app.state.wall = None
    app.state.relay = None
    for module in (routes_agency, routes_auth, routes_catalogue, routes_readings, routes_breakdown, routes_admin, routes_cameras,
                   routes_recordings, routes_wall, routes_replay, routes_ops, routes_map):
        app.include_router(module.router)
    # the wall screens, console and tablet pages: files only, nothing from the internet
    app.mount("/wall", StaticFiles(directory=STATIC, html=True, check_dir=False), name="wall")

    @app.get("/", include_in_schema=False)
    async def _home() -> RedirectResponse:
        return RedirectResponse("/wall/console.html")

    @app.exception_handler(asyncpg.DataError)
    async def _bad_value(request: Request, exc: Exception) -> JSONResponse:
        # a NUL character, a number past bigint, a date past year 9999: the database
        # refuses the value, and that is the caller's mistake, not a server error
        log.info("value refused by the database", extra={"path": request.url.path, "error": str(exc)[:200]})
        return JSONResponse({"detail": errors.as_validation_list(f"invalid value: {str(exc)[:200]}")}, status_code=422)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # the default answer echoes the input, which cannot be JSON when it holds NaN
        errors = [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
                  for e in exc.errors()]
        return JSONResponse({"detail": errors}, status_code=422)

    @app.exception_handler(asyncpg.PostgresConnectionError)
    async def _db_down(request: Request, exc: Exception) -> JSONResponse:
        log.error("database unavailable", extra={"path": request.url.path, "error": str(exc)[:200]})
        return JSONResponse({"detail": "database unavailable, try again shortly"}, status_code=503)

    @app.exception_handler(OSError)
    async def _os_error(request: Request, exc: Exception) -> JSONResponse:
        # a network failure here is the database's connection (the API talks to nothing else
        # while answering); any other OSError (a file, a permission) is our fault, not an outage
        if isinstance(exc, (ConnectionError, TimeoutError, socket.gaierror)):
            log.error("database unreachable", extra={"path": request.url.path, "error": str(exc)[:200]})
            return JSONResponse({"detail": "database unavailable, try again shortly"}, status_code=503)
        log.error("request failed", exc_info=exc, extra={"path": request.url.path, "error": str(exc)[:200]})
        return JSONResponse({"detail": "internal error (logged)"}, status_code=500)

    return app
