"""The API description is the contract: schemathesis run from outside (every check, every
phase, stateful through the description's links) against a live server with keys on;
the full ``Allow`` on 405 and ``OPTIONS``; a page for every problem code."""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.cluster import AWS_ENV
from tests.conftest import ARTIFACTS, ROOT, Server, ServerFactory
from tests.helpers import bearer, create_key, wait_closed
from tests.service_fixtures import s3_client
from uploads_api.api.problem_pages import EXPLANATIONS
from uploads_api.api.problems import PROBLEM_TYPES, STATUS, http_status
from uploads_api.app import create_app
from uploads_api.client import Client
from uploads_api.config import Settings
from uploads_api.errors import UploadsError

pytestmark = pytest.mark.e2e


@dataclass(frozen=True)
class Live:
    server: Server
    key: str

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.server.url, headers=bearer(self.key), timeout=30)


@pytest.fixture(scope="module")
def live(module_server_factory: ServerFactory, s3_endpoint: str) -> Live:
    # On S3, so that the direct-upload operations are offered and run too.
    bucket = f"contract-{secrets.token_hex(6)}"
    s3_client(s3_endpoint).create_bucket(Bucket=bucket)
    server = module_server_factory(
        extra_env=AWS_ENV,
        max_file_size=1024 * 1024,
        storage_url=f"s3://{bucket}/contract",
        s3_endpoint_url=s3_endpoint,
    )
    # An admin key, so that admin-only operations (the audit log) are run too.
    key = create_key(server.data_dir, "contract", admin=True)
    wait_closed(server)
    return Live(server, key)


@pytest.fixture(scope="module")
def description(live: Live) -> dict[str, Any]:
    spec: dict[str, Any] = httpx.get(f"{live.server.url}/openapi.json", timeout=10).json()
    return spec


# The external run -----------------------------------------------------------------------


def test_schemathesis_finds_nothing_with_every_check_and_phase(live: Live) -> None:
    """As a user would run it: the CLI, every check, every phase, the project's
    ``schemathesis.toml`` (which disables nothing; it says where a refusal is right)."""
    report = ARTIFACTS / "schemathesis-junit.xml"
    report.parent.mkdir(exist_ok=True)
    command = [
        str(Path(sys.executable).parent / "schemathesis"),
        "run",
        f"{live.server.url}/openapi.json",
        "--checks",
        "all",
        "--phases",
        "examples,coverage,fuzzing,stateful",
        "--header",
        f"Authorization: Bearer {live.key}",
        "--max-examples",
        "60",
        # The same cases on every run, so that a pass stays a pass.
        "--generation-deterministic",
        "--report",
        "junit",
        "--report-junit-path",
        str(report),
        "--no-color",
    ]
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-20_000:]
    assert "No issues found" in output, output[-5000:]
    assert "29 selected / 29 total" in output, "an operation is missing from the run"


# Methods ----------------------------------------------------------------------------------

ALLOW = {
    "/v1/files": "GET, POST, OPTIONS",
    "/v1/files/check": "POST, OPTIONS",
    "/v1/files/0123456789abcdef0123456789abcdef": "GET, PUT, DELETE, OPTIONS",
    "/v1/files/0123456789abcdef0123456789abcdef/content": "GET, OPTIONS",
    "/v1/files/0123456789abcdef0123456789abcdef/retry": "POST, OPTIONS",
    "/v1/files/0123456789abcdef0123456789abcdef/variants/w=100": "GET, OPTIONS",
    "/v1/tasks": "GET, OPTIONS",
    "/v1/audit": "GET, OPTIONS",
    "/v1/events": "GET, OPTIONS",
    "/v1/events/tokens": "POST, OPTIONS",
    "/healthz": "GET, OPTIONS",
}


@pytest.mark.parametrize("path", sorted(ALLOW))
def test_options_needs_no_key_and_lists_every_method(live: Live, path: str) -> None:
    response = httpx.options(f"{live.server.url}{path}", timeout=10)
    assert (response.status_code, response.content) == (204, b"")
    assert response.headers["allow"] == ALLOW[path]


@pytest.mark.parametrize("path", sorted(ALLOW))
def test_a_405_lists_every_method_of_the_path(live: Live, path: str) -> None:
    with live.client() as client:
        response = client.request("PATCH", path)
    assert response.status_code == 405
    assert response.headers["allow"] == ALLOW[path]
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "method-not-allowed"


def test_the_hash_check_path_is_never_a_file(live: Live) -> None:
    """A concrete path wins over the template, as in OpenAPI: PUT there is not an upload."""
    with live.client() as client:
        data = b"a file named check, sent by PUT"
        refused = client.put("/v1/files/check", content=data)
        assert (refused.status_code, refused.headers["allow"]) == (405, "POST, OPTIONS")
        stored = client.get("/v1/files", params={"sha256": hashlib.sha256(data).hexdigest()})
        assert stored.json()["files"] == []


@pytest.mark.parametrize("name", ["check", "dir/check"])
def test_the_client_sends_a_file_named_check_as_multipart(
    live: Live, tmp_path: Path, name: str
) -> None:
    path = tmp_path / "check"
    path.write_bytes(b"named like the hash check")
    with Client(live.server.url, api_key=live.key) as client:
        record = client.upload(path, filename=name)
        assert (record.filename, record.size) == ("check", path.stat().st_size)
        copy = tmp_path / "copy"
        client.download(record.id, copy)
        assert copy.read_bytes() == path.read_bytes()
        client.delete(record.id)


def test_an_unknown_path_is_404_even_for_options(live: Live) -> None:
    assert httpx.options(f"{live.server.url}/v1/nothing", timeout=10).status_code == 404


# Problems ---------------------------------------------------------------------------------


def _error_classes(root: type[UploadsError] = UploadsError) -> list[type[UploadsError]]:
    return [root, *(c for sub in root.__subclasses__() for c in _error_classes(sub))]


def test_every_error_has_a_status_and_a_page() -> None:
    for cls in _error_classes():
        assert cls.code in PROBLEM_TYPES
        assert cls is UploadsError or http_status(cls("x")) != 500, f"{cls.__name__}: no status"
    assert set(EXPLANATIONS) == set(PROBLEM_TYPES)
    assert all(status in {*range(400, 600)} for status in STATUS.values())


@pytest.mark.parametrize("code", sorted(PROBLEM_TYPES))
def test_each_problem_type_is_a_page_served_without_a_key(live: Live, code: str) -> None:
    response = httpx.get(f"{live.server.url}/problems/{code}", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert f"<code>{code}</code>" in response.text
    assert PROBLEM_TYPES[code].title in response.text


def test_a_problem_type_resolves_to_its_page(live: Live) -> None:
    with live.client() as client:
        problem = client.get("/v1/files/0123456789abcdef0123456789abcdef").json()
        assert problem["type"] == "/problems/not-found"
        page = client.get(problem["type"])
    assert page.status_code == 200 and "not-found" in page.text


def test_the_api_docs_list_every_problem_code_once() -> None:
    text = (ROOT / "docs" / "api.md").read_text()
    table = text[text.index("## Errors") :]
    listed = re.findall(r"^\| \d{3}|varies \| `([a-z-]+)` \|", table, flags=re.M)
    codes = re.findall(r"^\| (?:\d{3}|varies) \| `([a-z-]+)` \|", table, flags=re.M)
    assert listed and sorted(codes) == sorted(PROBLEM_TYPES)
    assert len(codes) == len(set(codes))


# The description itself -------------------------------------------------------------------


def test_one_template_per_path_and_an_operation_id_for_each(description: dict[str, Any]) -> None:
    templates = [re.sub(r"\{[^}]+\}", "{}", path) for path in description["paths"]]
    assert len(templates) == len(set(templates))
    ids = [op["operationId"] for item in description["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids)) and all(ids)


def test_bodies_media_types_and_headers_are_described(description: dict[str, Any]) -> None:
    paths = description["paths"]
    assert paths["/v1/files/{file}"]["put"]["requestBody"]["required"] is False
    content = paths["/v1/files/{file_id}/content"]["get"]
    assert set(content["responses"]["200"]["content"]) == {"*/*", "application/octet-stream"}
    assert {"ETag", "Accept-Ranges"} <= set(content["responses"]["200"]["headers"])
    assert "Content-Range" in content["responses"]["206"]["headers"]
    assert {p["name"].lower() for p in content["parameters"]} >= {"range", "if-none-match"}
    thumbnail = paths["/v1/files/{file_id}/thumbnails/{size}"]["get"]["responses"]["200"]
    assert set(thumbnail["content"]) == {
        "image/avif",
        "image/jpeg",
        "image/png",
        "image/webp",
        "application/octet-stream",
    }
    variant = paths["/v1/files/{file_id}/variants/{spec}"]["get"]["responses"]
    assert set(variant["200"]["content"]) == set(thumbnail["content"])
    assert {"ETag", "Vary", "Cache-Control"} <= set(variant["200"]["headers"])
    assert "ETag" in variant["304"]["headers"]
    assert {"400", "403", "404", "422"} <= set(variant)
    put = paths["/v1/files/{file}"]["put"]
    assert "Location" in put["responses"]["201"]["headers"]
    assert "Retry-After" in put["responses"]["429"]["headers"]
    assert "content-digest" in {p["name"].lower() for p in put["parameters"]}
    assert "Problem" in description["components"]["schemas"]


def test_a_concrete_path_wins_below_a_mount_point_too(tmp_path: Path) -> None:
    """Behind a proxy that mounts the app at /api, PUT /api/v1/files/check is still 405."""
    app = create_app(Settings(data_dir=tmp_path, log_level="WARNING"))

    async def main() -> httpx.Response:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, root_path="/api")
            async with httpx.AsyncClient(
                transport=transport, base_url="http://127.0.0.1:8000"
            ) as client:
                return await client.put("/api/v1/files/check", content=b"x")

    response = asyncio.run(main())
    assert (response.status_code, response.headers["allow"]) == (405, "POST, OPTIONS")
