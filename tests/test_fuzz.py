"""Fuzzing: schemathesis against the live API's own description, and hypothesis against
the multipart intake with random part layouts and random chunk boundaries."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import negative_data_rejection, positive_data_acceptance
from schemathesis.core.result import Err

from tests.conftest import Server, ServerFactory
from tests.helpers import Part, bearer, create_key, multipart, wait_closed
from uploads_api.api.problems import http_status
from uploads_api.db.models import NewFile
from uploads_api.errors import UploadsError
from uploads_api.ingest.limits import IngestLimits
from uploads_api.ingest.multipart import MultipartIntake
from uploads_api.ingest.names import clean_filename
from uploads_api.ingest.policy import UploadPolicy
from uploads_api.storage.local import LocalStorage

# The API against its OpenAPI description ------------------------------------------------------


@dataclass(frozen=True)
class Live:
    server: Server
    key: str


@pytest.fixture(scope="module")
def live(module_server_factory: ServerFactory) -> Live:
    """A server with a key, so that the described bearer scheme is really enforced."""
    server = module_server_factory(max_file_size=1024 * 1024)
    key = create_key(server.data_dir, "fuzzer")
    wait_closed(server)
    return Live(server, key)


@pytest.fixture(scope="module")
def api_schema(live: Live) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{live.server.url}/openapi.json")


def described_operations(
    schema: schemathesis.BaseSchema,
) -> Iterator[schemathesis.APIOperation[Any, Any, Any, Any]]:
    """Every operation in the description; one that cannot be read fails the test."""
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            raise result.err()
        yield result.ok()


# Listed here so that each is its own test; the first test notices a new operation.
OPERATIONS = [
    "GET /healthz",
    "GET /readyz",
    "GET /v1/files",
    "POST /v1/files",
    "POST /v1/files/check",
    "PUT /v1/files/{file}",
    "GET /v1/files/{file}",
    "DELETE /v1/files/{file}",
    "GET /v1/files/{file_id}/content",
    "GET /v1/files/{file_id}/thumbnails/{size}",
    "GET /v1/files/{file_id}/variants/{spec}",
    "POST /v1/files/{file_id}/retry",
    "POST /v1/files/{file_id}/links",
    "POST /v1/direct-uploads",
    "POST /v1/direct-uploads/{upload_id}/complete",
    "DELETE /v1/direct-uploads/{upload_id}",
    "GET /v1/capabilities",
    "GET /v1/tasks",
    "GET /v1/audit",
    "POST /v1/webhooks",
    "GET /v1/webhooks",
    "GET /v1/webhooks/{endpoint_id}",
    "PATCH /v1/webhooks/{endpoint_id}",
    "DELETE /v1/webhooks/{endpoint_id}",
    "POST /v1/webhooks/{endpoint_id}/test",
    "GET /v1/webhooks/{endpoint_id}/deliveries",
    "POST /v1/webhooks/{endpoint_id}/deliveries/{delivery_id}/retry",
    "GET /v1/events",
    "POST /v1/events/tokens",
]


@pytest.mark.e2e
def test_every_described_operation_is_fuzzed(api_schema: schemathesis.BaseSchema) -> None:
    described = {f"{op.method.upper()} {op.path}" for op in described_operations(api_schema)}
    assert described == set(OPERATIONS)


# A checksum the client gives (the `sha256` field, `Content-Digest`) fits the description
# as any 64 hex digits, but bytes that do not match it must be refused: there "schema-valid
# data must be accepted" does not hold (schemathesis.toml says the same for the CLI).
CHECKSUMMED = {"POST /v1/files", "PUT /v1/files/{file}"}
# Headers that frame the message itself: a case that invents one (a GET with
# `Transfer-Encoding: Hc`) is refused by the HTTP server's parser, in plain text, before the
# app sees it. That is the server's answer to a malformed message, not the API's.
FRAMING = {"transfer-encoding", "content-length"}
# The event stream is endless unless `wait` ends it: every case gets `wait=0` (what is
# stored, then the end), as schemathesis.toml says for the CLI; tests/test_events_stream.py
# covers `wait` itself.
ENDLESS = {"GET /v1/events"}


@pytest.mark.e2e
@pytest.mark.parametrize(
    "operation",
    OPERATIONS,
)
def test_the_api_matches_its_description(
    live: Live, api_schema: schemathesis.BaseSchema, operation: str
) -> None:
    """No 5xx, and every answer (status, content type, headers, body) as described, for
    valid and invalid requests alike."""
    method, path = operation.split(" ", 1)
    described = api_schema[path][method]
    # Unknown query parameters are ignored, as HTTP APIs commonly do, and this test always
    # sends the key, so a "negative" case whose only flaw is one of those is rightly
    # accepted. Invalid values of known parameters still get their documented 4xx.
    excluded = [negative_data_rejection]
    if operation in CHECKSUMMED:
        excluded.append(positive_data_acceptance)

    @settings(
        max_examples=30,
        deadline=None,
        database=None,
        derandomize=True,  # the same cases on every run, so a marker stays true
        suppress_health_check=list(HealthCheck),
    )
    @given(
        case=described.as_strategy(GenerationMode.POSITIVE)
        | described.as_strategy(GenerationMode.NEGATIVE)
    )
    def check(case: schemathesis.Case[Any]) -> None:
        if operation in ENDLESS:
            case.query = {**(case.query or {}), "wait": 0}
        for name in [name for name in case.headers or {} if name.lower() in FRAMING]:
            del case.headers[name]
        response = case.call(headers=bearer(live.key), timeout=30)
        authorization = response.request.headers.get("Authorization")
        if authorization is None and (case.query or {}).get("link") is not None:
            # No key but a link (the download routes): one this server never signed is
            # 403 `invalid-link`, or 422 if it is not even of a link's form.
            assert response.status_code in (403, 422), response.text
            assert response.headers["content-type"] == ["application/problem+json"]
            return
        if authorization != f"Bearer {live.key}":
            # A negative case that dropped or spoiled the key: 401, as problem+json.
            assert response.status_code == 401, response.text
            assert response.headers["content-type"] == ["application/problem+json"]
            assert response.headers["www-authenticate"][0].startswith("Bearer")
            return
        case.validate_response(response, excluded_checks=excluded)

    check()


@pytest.mark.e2e
def test_the_description_lists_the_refusals_every_route_can_give(
    api_schema: schemathesis.BaseSchema,
) -> None:
    missing = []
    for operation in described_operations(api_schema):
        label = f"{operation.method.upper()} {operation.path}"
        if operation.path in ("/healthz", "/readyz"):
            continue
        expected = {"401"}
        if label in ("POST /v1/files", "PUT /v1/files/{file}"):
            expected |= {"408", "429"}
        missing += [
            f"{label}: {code}"
            for code in sorted(expected - set(operation.definition.raw["responses"]))
        ]
    assert missing == []


@pytest.mark.e2e
@pytest.mark.parametrize("cursor", [2**63, 10**30])
def test_a_task_cursor_past_64_bits_is_refused_not_a_server_error(live: Live, cursor: int) -> None:
    response = httpx.get(
        f"{live.server.url}/v1/tasks", params={"cursor": cursor}, headers=bearer(live.key)
    )
    assert response.status_code == 422, response.text


# The multipart intake on random layouts -------------------------------------------------------

BOUNDARY = b"fuzz-boundary-3Zq"  # its own, for the TRICKY data built from it
MAX_FILE_SIZE = 1024 * 1024
LIMITS = IngestLimits(
    max_files=20,
    max_fields=20,
    max_field_size=1024 * 1024,  # the generated fields go up to 320 KB
    max_header_size=16 * 1024,
)
# Data that looks like the parser's delimiters without being the whole delimiter.
TRICKY = [
    b"\r\n",
    b"\r\n--",
    b"--",
    b"\r\n--" + BOUNDARY[:-1],
    b"--" + BOUNDARY,
    b"\r\n-" + BOUNDARY,
    b"\r\r\n--" + BOUNDARY[:5],
    b"\r\n\r\n",
    BOUNDARY,
]


def _delimited(parts: list[Part]) -> bytes:
    return multipart(*parts, boundary=BOUNDARY.decode())


data_st = st.lists(st.one_of(st.binary(max_size=200), st.sampled_from(TRICKY)), max_size=12).map(
    b"".join
) | st.builds(lambda chunk, n: chunk * n, st.binary(min_size=1, max_size=64), st.integers(1, 5000))
names_st = st.text(
    st.characters(blacklist_categories=["Cs"], blacklist_characters='"\\\r\n'), max_size=40
)
field_names_st = st.from_regex(r"[a-z][a-z0-9_]{0,11}", fullmatch=True).filter(
    lambda name: name != "sha256"
)
part_st = st.builds(
    Part,
    name=field_names_st,
    data=data_st,
    filename=st.none() | names_st,
)


def _no_delimiter_inside(parts: list[Part]) -> bool:
    return all(b"\r\n--" + BOUNDARY not in b"\r\n" + p.data for p in parts)


layouts = st.lists(part_st, min_size=1, max_size=8).filter(
    lambda parts: any(p.filename is not None for p in parts) and _no_delimiter_inside(parts)
)


async def _chunks(body: bytes, cuts: list[int]) -> AsyncIterator[bytes]:
    edges = [0, *sorted({c % (len(body) + 1) for c in cuts}), len(body)]
    for start, end in itertools.pairwise(edges):
        if end > start:
            yield body[start:end]
        await asyncio.sleep(0)


def _receive(root: Path, body: bytes, cuts: list[int]) -> tuple[LocalStorage, list[NewFile]]:
    storage = LocalStorage(root / "blobs", root / "tmp")
    intake = MultipartIntake(storage, LIMITS, UploadPolicy(max_file_size=MAX_FILE_SIZE))
    content_type = f"multipart/form-data; boundary={BOUNDARY.decode()}"
    return storage, asyncio.run(intake.receive(content_type, _chunks(body, cuts)))


def _files_in(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


fuzz = settings(
    max_examples=150,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


@fuzz
@given(parts=layouts, cuts=st.lists(st.integers(0, 1 << 20), max_size=20))
def test_random_layouts_store_every_file_byte_for_byte(parts: list[Part], cuts: list[int]) -> None:
    body = _delimited(parts)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        _storage, got = _receive(root, body, cuts)
        files = [p for p in parts if p.filename is not None]
        assert [(f.filename, f.size, f.sha256) for f in got] == [
            (clean_filename(p.filename), len(p.data), hashlib.sha256(p.data).hexdigest())
            for p in files
        ]
        for item, source in zip(got, files, strict=True):
            assert (root / "blobs" / item.storage_key).read_bytes() == source.data
        assert list((root / "tmp").iterdir()) == []
        assert len(_files_in(root / "blobs")) == len(files)


@fuzz
@given(
    parts=layouts,
    cuts=st.lists(st.integers(0, 1 << 20), max_size=20),
    keep=st.floats(0, 1, exclude_max=True),
)
def test_truncated_bodies_are_refused_and_leave_nothing(
    parts: list[Part], cuts: list[int], keep: float
) -> None:
    body = _delimited(parts)
    # Cut anywhere before the closing delimiter's final "--".
    truncated = body[: int(keep * (len(body) - len(b"--\r\n")))]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        with pytest.raises(UploadsError) as caught:
            _receive(root, truncated, cuts)
        assert 400 <= http_status(caught.value) < 500
        assert _files_in(root) == []
