"""Refuse API calls that arrive on a non-loopback address while no API key exists.

Until the first key is created every request is admin. ``uploads-api serve`` refuses to
start on a public host in that state, but ``uvicorn --factory
uploads_api.app:create_app_from_env --host 0.0.0.0`` (or gunicorn, or a container) never
runs that check, and the app cannot see uvicorn's ``--host``. What it can see, on every
request, is ``scope["server"]``: the local address the connection arrived on. So the check
is made here, per request: a connection to 127.0.0.1 on a server bound to 0.0.0.0 still
passes, one arriving on a public interface is answered 403 until a key exists.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Awaitable, Callable

from starlette.types import ASGIApp, Receive, Scope, Send

from uploads_api.api.problems import error_response
from uploads_api.errors import KeysRequired

log = logging.getLogger(__name__)

# Guarded is everything but these, so a route added later is covered without a list to
# keep up: the page and its assets hold no data, probes must work from an orchestrator on
# the pod's address, and the schema is public anyway.
PUBLIC_PATHS = frozenset(
    {"/", "/healthz", "/readyz", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"}
)
PUBLIC_PREFIXES = ("/static/", "/problems")

DETAIL = (
    "This server has no API key yet, so it lets anyone do anything; it answers API calls"
    " only on a loopback address until a key exists. Create one with"
    " `uploads-api keys create OWNER`, or bind a loopback address (--host 127.0.0.1)."
)


def is_local(server: tuple[str, int | None] | None) -> bool:
    """Whether the connection arrived on a loopback address (or a unix socket)."""
    if server is None or server[1] is None:  # no address known, or a unix socket path
        return True
    try:
        address = ipaddress.ip_address(server[0])
    except ValueError:
        return server[0] == "localhost"  # an unknown name is not trusted
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:127.0.0.1; Python < 3.13 calls it public
    return address.is_loopback


class LoopbackOnlyWhileOpen:
    """Answer 403 ``keys-required`` to API calls off loopback while ``is_open()`` is true.

    The body is never read, and every other request passes through untouched.
    """

    def __init__(self, app: ASGIApp, *, is_open: Callable[[], Awaitable[bool]]) -> None:
        self.app = app
        self.is_open = is_open
        self._warned = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or _is_public(scope)
            or is_local(scope.get("server"))
            or not await self.is_open()
        ):
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        # Once as a warning, for the operator; every refusal after that only at debug.
        level, self._warned = logging.DEBUG if self._warned else logging.WARNING, True
        log.log(
            level,
            "refusing %s %s arriving on %s: no API key exists yet, so the server only answers"
            " on loopback; create one with `uploads-api keys create OWNER`",
            scope.get("method"),
            path,
            scope["server"][0],
        )
        await error_response(KeysRequired(DETAIL), path)(scope, receive, send)


def _is_public(scope: Scope) -> bool:
    path: str = scope["path"].removeprefix(scope.get("root_path", ""))
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)
