"""``create_app(settings)``: wires services, routes, error handling and the page."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.resources import files

from fastapi import FastAPI
from fastapi.responses import HTMLResponse

from uploads_api import __version__
from uploads_api.api import files as files_routes
from uploads_api.api import health, tasks
from uploads_api.api.problems import install_error_handlers
from uploads_api.config import Settings
from uploads_api.logs import configure_logging
from uploads_api.middleware import AccessLogMiddleware
from uploads_api.services import Services

PAGE_CSP = (
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self' 'unsafe-inline'; connect-src 'self'; frame-ancestors 'none'"
)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    configure_logging(settings.log_format, settings.log_level)
    services = Services.build(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await services.start()
        try:
            yield
        finally:
            await services.stop()

    app = FastAPI(
        title="uploads-api",
        version=__version__,
        summary="Streaming uploads, thumbnails, metadata and a durable task pipeline.",
        lifespan=lifespan,
    )
    app.state.services = services
    install_error_handlers(app)
    app.include_router(files_routes.router)
    app.include_router(tasks.router)
    app.include_router(health.router)
    app.add_middleware(AccessLogMiddleware)

    page = files("uploads_api.web").joinpath("index.html").read_text(encoding="utf-8")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(page, headers={"Content-Security-Policy": PAGE_CSP})

    return app


def create_app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory`` (and ``--workers N``): settings from the environment."""
    return create_app(Settings())
