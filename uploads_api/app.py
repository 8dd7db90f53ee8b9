"""``create_app(settings)``: the runtime, routes, error handling, middleware and the page."""

from __future__ import annotations

import gc
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.resources import files
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Scope

from uploads_api import __version__
from uploads_api.api import (
    audit,
    capabilities,
    direct_uploads,
    downloads,
    events,
    health,
    links,
    problem_pages,
    tasks,
    tus,
    tus_chunks,
    tus_protocol,
    uploads,
    variants,
    webhooks,
)
from uploads_api.api import files as files_routes
from uploads_api.api.bind_guard import LoopbackOnlyWhileOpen
from uploads_api.api.contract import install_openapi
from uploads_api.api.methods import MethodGate, route_table
from uploads_api.api.problems import install_error_handlers
from uploads_api.api.tus_protocol import TusProtocol
from uploads_api.body_turns import BodyTurns
from uploads_api.config import Settings
from uploads_api.logs import configure_logging
from uploads_api.middleware import AccessLogMiddleware
from uploads_api.runtime import Runtime
from uploads_api.stop_signals import on_stop_signal

# The page's scripts and styles are files under /static: nothing inline is allowed. Images
# may be blob: URLs (thumbnails fetched with an API key) and data: URLs (placeholders).
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)


class PageFiles(StaticFiles):
    """The page's scripts, styles and icons, from ``uploads_api/web``.

    ``no-cache`` makes browsers revalidate (by ETag) on each load, so after an upgrade a
    page never runs with the previous version's scripts.
    """

    def file_response(
        self,
        full_path: str | os.PathLike[str],
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers["Cache-Control"] = "no-cache"
        return response


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    configure_logging(settings.log_format, settings.log_level)
    runtime = Runtime.build(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        # What start-up made (modules, the app, settings) lives as long as the process:
        # kept out of the collector, a full collection under load pauses the event loop
        # for less (200 photos at once: longest pause 80-90 ms -> 60-70 ms).
        gc.collect()
        gc.freeze()
        try:
            # Event streams never end by themselves: end them at the signal, not after
            # uvicorn has waited its graceful timeout for them.
            with on_stop_signal(runtime.event_stream.end_streams):
                yield
        finally:
            await runtime.stop()

    app = FastAPI(
        title="uploads-api",
        version=__version__,
        summary="Streaming uploads, thumbnails, metadata and a durable task pipeline.",
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    install_error_handlers(app)
    install_openapi(
        app,
        refine=lambda schema: describe(schema, settings),
    )
    routers = [
        uploads.router,
        files_routes.router,
        downloads.router,
        variants.router,
        links.router,
        direct_uploads.router,
        capabilities.router,
        tus.router,
        tasks.router,
        webhooks.router,
        events.router,
        audit.router,
        health.router,
        problem_pages.router,
    ]
    for router in routers:
        app.include_router(router)
    # The upload operations: a plain ASGI endpoint, ahead of the routes that describe them
    # (its module says why). The other methods of their paths go on to those routes.
    file_uploads: Any = uploads.FileUploads()
    for method, path in uploads.PATHS.items():
        served = Route(path, file_uploads, methods=[method], include_in_schema=False)
        app.router.routes.insert(0, served)
    # HEAD and PATCH of an upload: a plain ASGI endpoint, a request per chunk (its module says why).
    # Starlette takes an ASGI app as a route's endpoint; FastAPI's signature names only functions.
    endpoint: Any = tus_chunks.TusChunks()
    app.router.add_route(
        tus_chunks.PATH, endpoint, methods=tus_chunks.METHODS, include_in_schema=False
    )
    app.add_middleware(MethodGate)
    app.add_middleware(TusProtocol, max_size=settings.max_file_size)
    # `uploads-api serve` refuses a public bind while no key exists; uvicorn run directly
    # does not, so the app itself refuses API requests arriving on a public address.
    app.add_middleware(LoopbackOnlyWhileOpen, is_open=runtime.authenticator.is_open)
    if settings.cors_origins:
        # Off unless configured: a browser page elsewhere may not call this API by default.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"],
            # Last-Event-ID: what an EventSource sends when it reconnects to /v1/events.
            allow_headers=[
                "Authorization",
                "Content-Type",
                "Content-Digest",
                "Last-Event-ID",
                *tus_protocol.REQUEST_HEADERS,
            ],
            expose_headers=[
                "ETag",
                "Retry-After",
                "Content-Range",
                "Content-Disposition",
                "Content-Length",
                *tus_protocol.RESPONSE_HEADERS,
            ],
        )
    # A few request bodies served at once, a chunk at a time (body_turns.py says why).
    app.add_middleware(BodyTurns, at_once=settings.bodies_at_once)
    app.add_middleware(AccessLogMiddleware)

    page = files("uploads_api.web").joinpath("index.html").read_text(encoding="utf-8")
    page_headers = {"Content-Security-Policy": PAGE_CSP, "Cache-Control": "no-cache"}

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(page, headers=page_headers)

    app.mount("/static", PageFiles(packages=[("uploads_api", "web")]), name="static")
    app.state.route_table = route_table(app, routers)

    return app


def describe(schema: dict[str, Any], settings: Settings) -> None:
    """What the description says that depends on the settings."""
    variants.describe_specs(schema, settings.variant_max_size, settings.variant_presets)
    downloads.describe_link_access(schema)
    direct_uploads.describe_limits(schema, settings.max_file_size)
    links.describe_links(
        schema,
        settings.link_max_age,
        variants.spec_pattern(settings.variant_max_size, settings.variant_presets),
    )


def create_app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory`` (and ``--workers N``): settings from the environment."""
    return create_app(Settings())
