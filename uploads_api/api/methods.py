"""Which methods a path supports: ``OPTIONS`` answered 204 without a key, and every 405
with the full ``Allow``.

Starlette answers a 405 with the methods of the first route whose path matched, but one
path can be served by several routes (``PUT /v1/files/{file}`` beside
``GET|DELETE /v1/files/{file}``), and RFC 9110 wants every method the resource supports.
A concrete path wins over a template, as in OpenAPI: ``/v1/files/check`` is the hash
check (``POST``), never a file of that name, so other methods there are 405 too.
"""

from __future__ import annotations

from fastapi import APIRouter
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from uploads_api.api.problems import framework_problem

# The order methods are listed in, for stable headers.
_ORDER = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def route_table(app: Starlette, routers: list[APIRouter]) -> list[BaseRoute]:
    """Every route, flat: the app's own (docs, page, static files) and the routers'.
    Included routers are wrapped inside ``app.router``, so they are listed from here."""
    own = [route for route in app.router.routes if isinstance(route, Route | Mount)]
    return [*own, *(route for router in routers for route in router.routes)]


def _is_concrete(route: BaseRoute) -> bool:
    return isinstance(route, Route) and not route.param_convertors


def allowed_methods(routes: list[BaseRoute], scope: Scope) -> list[str]:
    """Every method served at this scope's path, plus ``OPTIONS``; empty when no route
    serves the path at all."""
    probe = {**scope, "type": "http", "method": "OPTIONS"}
    matching = [route for route in routes if route.matches(probe)[0] is not Match.NONE]
    if any(_is_concrete(route) for route in matching):
        matching = [route for route in matching if _is_concrete(route)]
    methods: set[str] = set()
    for route in matching:
        if isinstance(route, Route) and route.methods:
            methods |= route.methods
        elif isinstance(route, Mount):
            methods |= {"GET", "HEAD"}  # static files
    if not methods:
        return []
    methods.add("OPTIONS")
    return sorted(methods, key=lambda m: (_ORDER.index(m) if m in _ORDER else len(_ORDER), m))


class MethodGate:
    """``OPTIONS``: 204 with ``Allow``. A method a path does not serve: 405 with the full
    ``Allow``, whether this gate or the router finds it out."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._concrete: dict[str, set[str]] | None = None

    def _concrete_paths(self, routes: list[BaseRoute]) -> dict[str, set[str]]:
        if self._concrete is None:
            concrete: dict[str, set[str]] = {}
            for route in routes:
                if isinstance(route, Route) and _is_concrete(route) and route.methods:
                    concrete.setdefault(route.path, set()).update(route.methods)
            self._concrete = concrete
        return self._concrete

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        routes: list[BaseRoute] = scope["app"].state.route_table
        method = scope["method"]
        if method == "OPTIONS":
            methods = allowed_methods(routes, scope)
            if methods:
                await Response(status_code=204, headers={"Allow": ", ".join(methods)})(
                    scope, receive, send
                )
                return
        # Routes match the path below the app's mount point, so the lookup does too.
        path = scope["path"].removeprefix(scope.get("root_path", ""))
        served = self._concrete_paths(routes).get(path)
        if served is not None and method not in served and method != "OPTIONS":
            await self._refuse(routes, scope, receive, send)
            return

        async def send_with_allow(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 405:
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"allow"]
                allow = ", ".join(allowed_methods(routes, scope))
                message["headers"] = [*headers, (b"allow", allow.encode())]
            await send(message)

        await self.app(scope, receive, send_with_allow)

    @staticmethod
    async def _refuse(routes: list[BaseRoute], scope: Scope, receive: Receive, send: Send) -> None:
        allow = ", ".join(allowed_methods(routes, scope))
        detail = f"{scope['method']} is not served at {scope['path']}; it serves {allow}"
        response = framework_problem(405, detail, scope["path"])
        response.headers["Allow"] = allow
        await response(scope, receive, send)
