"""What a tus exchange says beside its status, against a real server with a key: the
protocol version on every answer, OPTIONS for anyone, what HEAD repeats and forbids caching,
the completing answer's links, metadata read but never trusted for the type, the quota given
back on termination."""

from __future__ import annotations

import base64
import hashlib
import io
from collections.abc import Iterator

import httpx
import pytest
from PIL import Image

from tests.conftest import Server, ServerFactory
from tests.helpers import assert_problem, bearer, create_keys, wait_done
from tests.tus_helpers import TUS, create, head, metadata, patch

pytestmark = pytest.mark.e2e


def tiny_png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (2, 2), "red").save(out, "PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def keyed(module_server_factory: ServerFactory) -> tuple[Server, str]:
    server = module_server_factory(quota_bytes=1000)
    return server, create_keys(server.data_dir, "alice")["alice"]


@pytest.fixture
def http(keyed: tuple[Server, str]) -> Iterator[httpx.Client]:
    server, key = keyed
    with httpx.Client(base_url=server.url, headers=bearer(key), timeout=30) as client:
        yield client


def test_every_answer_says_tus_resumable(http: httpx.Client) -> None:
    url = create(http, 10)
    answers = {
        "HEAD": head(http, url),
        "PATCH": patch(http, url, 0, b"01234"),
        "conflict": patch(http, url, 0, b"56789"),
        "no key": httpx.head(url, headers=TUS),
        "DELETE": http.delete(url, headers=TUS),
        "gone": head(http, url),
    }
    assert [answer.status_code for answer in answers.values()] == [200, 204, 409, 401, 204, 404]
    assert {name: a.headers.get("tus-resumable") for name, a in answers.items()} == dict.fromkeys(
        answers, "1.0.0"
    )
    assert_problem(answers["conflict"], 409, "offset-mismatch")


def test_options_need_no_key_and_ignore_the_version_asked(keyed: tuple[Server, str]) -> None:
    server, _key = keyed
    for asked in ({}, {"Tus-Resumable": "0.2.2"}):
        answer = httpx.options(f"{server.url}/v1/tus/", headers=asked)
        assert answer.status_code == 204, answer.text
        assert answer.headers["tus-version"] == "1.0.0"
        assert "concatenation" in answer.headers["tus-extension"].split(",")


def test_head_repeats_the_metadata_and_is_never_cached(http: httpx.Client) -> None:
    sent = metadata(filename="notes.txt", filetype="text/plain")
    url = create(http, 10, **{"Upload-Metadata": sent})
    answer = head(http, url)
    assert answer.headers["upload-metadata"] == sent
    assert answer.headers["upload-length"] == "10"
    assert answer.headers["cache-control"] == "no-store"
    assert http.delete(url, headers=TUS).status_code == 204


def test_the_completing_answers_link_the_file(http: httpx.Client) -> None:
    url = create(http, 4)
    done = patch(http, url, 0, b"abcd")
    assert done.status_code == 204
    file_id = done.headers["file-id"]
    assert done.headers["link"] == f'</v1/files/{file_id}>; rel="file"'
    whole = http.post(
        "/v1/tus/",
        content=b"efgh",
        headers={**TUS, "Upload-Length": "4", "Content-Type": "application/offset+octet-stream"},
    )
    assert whole.status_code == 201, whole.text
    other = whole.headers["file-id"]
    assert whole.headers["link"] == f'</v1/files/{other}>; rel="file"'
    assert {http.get(f"/v1/files/{i}/content").content for i in (file_id, other)} == {
        b"abcd",
        b"efgh",
    }
    for file in (file_id, other):
        assert http.delete(f"/v1/files/{file}").status_code == 204


def test_filetype_is_a_hint_and_sha256_may_be_base64(http: httpx.Client) -> None:
    png = tiny_png()
    digest = base64.b64encode(hashlib.sha256(png).digest()).decode()
    hint = metadata(filename="dot.txt", filetype="text/plain", sha256=digest)
    url = create(http, len(png), **{"Upload-Metadata": hint})
    done = patch(http, url, 0, png)
    assert done.status_code == 204, done.text
    record = wait_done(http, done.headers["file-id"])
    assert record["content_type"] == "image/png"  # sniffed, whatever the client said
    assert record["checksum_verified"] is True
    assert http.delete(f"/v1/files/{record['id']}").status_code == 204


def test_termination_gives_the_reservation_back(http: httpx.Client) -> None:
    url = create(http, 900)
    assert_problem(
        http.post("/v1/tus/", headers={**TUS, "Upload-Length": "200"}), 413, "quota-exceeded"
    )
    assert http.delete(url, headers=TUS).status_code == 204
    again = create(http, 900)
    assert http.delete(again, headers=TUS).status_code == 204


def test_an_md5_chunk_checksum_is_checked(http: httpx.Client) -> None:
    url = create(http, 5)
    wrong = base64.b64encode(hashlib.md5(b"other").digest()).decode()
    refused = patch(http, url, 0, b"abcde", **{"Upload-Checksum": f"md5 {wrong}"})
    assert_problem(refused, 460, "checksum-mismatch")
    assert head(http, url).headers["upload-offset"] == "0"
    right = base64.b64encode(hashlib.md5(b"abcde").digest()).decode()
    done = patch(http, url, 0, b"abcde", **{"Upload-Checksum": f"md5 {right}"})
    assert done.status_code == 204
    assert http.delete(f"/v1/files/{done.headers['file-id']}").status_code == 204
