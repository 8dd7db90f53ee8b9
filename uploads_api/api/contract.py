"""The parts of the OpenAPI description that FastAPI cannot infer: which problem codes an
operation answers with, under which status, with which headers; the ``Problem`` schema;
header parameters; binary bodies. Routes build their ``responses`` from these, so the
description lists every answer the server can give."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from uploads_api.api.problems import PROBLEM_JSON, PROBLEM_TYPE_BASE, PROBLEM_TYPES

PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "title": "Problem",
    "description": "An RFC 9457 problem. `code` is stable; each has a page at `type`.",
    "required": ["type", "title", "status", "detail", "code"],
    "properties": {
        "type": {"type": "string", "description": "`/problems/<code>`: what it means"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "code": {"type": "string", "enum": sorted(PROBLEM_TYPES)},
        "instance": {"type": "string"},
    },
    "additionalProperties": True,
}

# Headers a problem of that status carries.
_PROBLEM_HEADERS: dict[int, dict[str, Any]] = {
    401: {
        "WWW-Authenticate": {
            "description": 'Always `Bearer realm="uploads-api"`',
            "schema": {"type": "string"},
        }
    },
    416: {"Content-Range": {"description": "`bytes */<size>`", "schema": {"type": "string"}}},
    429: {
        "Retry-After": {
            "description": "Seconds to wait before trying again",
            "schema": {"type": "integer"},
        }
    },
}

# Every API route can answer these (a key is checked, the database may be down).
COMMON_CODES = ("unauthorized", "keys-required", "validation-error", "service-unavailable")


def problem_responses(*codes: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI responses for these problem codes, grouped by status, with their headers."""
    by_status: dict[int, list[str]] = defaultdict(list)
    for code in dict.fromkeys((*codes, *COMMON_CODES)):
        status = PROBLEM_TYPES[code].status
        assert status is not None, code
        by_status[status].append(code)
    responses: dict[int | str, dict[str, Any]] = {}
    for status, listed in sorted(by_status.items()):
        names = ", ".join(f"[`{c}`]({PROBLEM_TYPE_BASE}{c})" for c in listed)
        entry: dict[str, Any] = {
            "description": f"Problem: {names}",
            "content": {PROBLEM_JSON: {"schema": PROBLEM_REF}},
        }
        if status in _PROBLEM_HEADERS:
            entry["headers"] = _PROBLEM_HEADERS[status]
        responses[status] = entry
    return responses


def header(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    """A response header's description."""
    return {"description": description, "schema": schema or {"type": "string"}}


BINARY = {"type": "string", "format": "binary"}


def install_openapi(
    app: FastAPI, *, refine: Callable[[dict[str, Any]], None] | None = None
) -> None:
    """Generate the description once, with the ``Problem`` schema among the components;
    ``refine`` adds what depends on the settings (the variant specs a server serves)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                summary=app.summary,
                routes=app.routes,
            )
            schema.setdefault("components", {}).setdefault("schemas", {})["Problem"] = (
                PROBLEM_SCHEMA
            )
            if refine is not None:
                refine(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented override
