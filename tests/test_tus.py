"""Resumable uploads over tus 1.0: tuspy (a client nobody here wrote) uploads in chunks with
sha1 checksums and resumes an interrupted upload from its URL; raw requests check each
header and each refusal as the protocol states it; a server killed right after a 204
keeps every byte it acknowledged."""

from __future__ import annotations

import base64
import hashlib
import os
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from tusclient.client import TusClient

from tests.conftest import Server, ServerFactory
from tests.helpers import assert_problem, wait_done
from tests.service_fixtures import s3_client
from tests.tus_helpers import CHUNK, TUS, create, head, metadata, patch

pytestmark = pytest.mark.e2e


@pytest.fixture
def client(tus_server: Server) -> Any:
    with httpx.Client(base_url=tus_server.url, timeout=60) as http:
        yield http


def test_options_say_what_the_server_speaks(client: httpx.Client) -> None:
    answer = client.options("/v1/tus/")
    assert answer.status_code == 204
    assert answer.headers["tus-version"] == "1.0.0"
    assert set(answer.headers["tus-extension"].split(",")) >= {
        "creation",
        "creation-with-upload",
        "creation-defer-length",
        "expiration",
        "checksum",
        "termination",
        "concatenation",
    }
    assert answer.headers["tus-max-size"] == str(64 * 1024 * 1024)
    assert set(answer.headers["tus-checksum-algorithm"].split(",")) == {"sha1", "sha256", "md5"}


def test_tuspy_uploads_in_checksummed_chunks(
    client: httpx.Client, tus_server: Server, tmp_path: Path
) -> None:
    data = os.urandom(1_000_000)
    source = tmp_path / "movie.bin"
    source.write_bytes(data)
    with source.open("rb") as stream:
        uploader = TusClient(f"{tus_server.url}/v1/tus/").uploader(
            file_stream=stream,
            chunk_size=256 * 1024,
            upload_checksum=True,
            metadata={"filename": "movie.bin"},
        )
        uploader.upload()
    assert uploader.url is not None
    final = head(client, uploader.url)
    assert final.headers["upload-offset"] == str(len(data))
    file_id = final.headers["file-id"]
    assert final.headers["link"] == f'</v1/files/{file_id}>; rel="file"'
    record = wait_done(client, file_id)
    assert record["filename"] == "movie.bin" and record["size"] == len(data)
    assert record["sha256"] == hashlib.sha256(data).hexdigest()
    assert client.get(f"/v1/files/{file_id}/content").content == data


def test_tuspy_resumes_an_interrupted_upload_from_its_url(
    client: httpx.Client, tus_server: Server, tmp_path: Path
) -> None:
    data = os.urandom(700_000)
    source = tmp_path / "big.bin"
    source.write_bytes(data)
    tus = TusClient(f"{tus_server.url}/v1/tus/")
    with source.open("rb") as stream:
        first = tus.uploader(
            file_stream=stream, chunk_size=100_000, metadata={"filename": "big.bin"}
        )
        first.upload(stop_at=300_000)  # the connection "drops" here
    assert first.url is not None
    assert head(client, first.url).headers["upload-offset"] == "300000"
    with source.open("rb") as stream:
        resumed = tus.uploader(file_stream=stream, chunk_size=100_000, url=first.url)
        assert resumed.offset == 300_000
        resumed.upload()
    file_id = head(client, first.url).headers["file-id"]
    assert client.get(f"/v1/files/{file_id}/content").content == data


def test_creation_with_upload_and_deferred_length(client: httpx.Client) -> None:
    data = b"all of it at once\n" * 100
    answer = client.post(
        "/v1/tus/",
        content=data,
        headers={
            **CHUNK,
            "Upload-Length": str(len(data)),
            "Upload-Metadata": metadata(filename="a.txt"),
        },
    )
    assert answer.status_code == 201 and answer.headers["upload-offset"] == str(len(data))
    assert client.get(f"/v1/files/{answer.headers['file-id']}").json()["filename"] == "a.txt"

    url = create(client, None)
    assert head(client, url).headers["upload-defer-length"] == "1"
    assert patch(client, url, 0, data[:1000]).status_code == 204
    done = patch(client, url, 1000, data[1000:], **{"Upload-Length": str(len(data))})
    assert done.status_code == 204 and "file-id" in done.headers
    assert client.get(f"/v1/files/{done.headers['file-id']}/content").content == data


def test_each_refusal_is_the_one_tus_names(client: httpx.Client) -> None:
    assert_problem(
        client.post("/v1/tus/", headers={"Upload-Length": "10"}), 412, "tus-version-unsupported"
    )
    refused = client.post("/v1/tus/", headers={"Tus-Resumable": "0.2.2", "Upload-Length": "1"})
    assert refused.headers["tus-version"] == "1.0.0"
    too_big = client.post("/v1/tus/", headers={**TUS, "Upload-Length": str(65 * 1024 * 1024)})
    assert_problem(too_big, 413, "file-too-large")
    url = create(client, 10)
    assert_problem(patch(client, url, 3, b"abc"), 409, "offset-mismatch")
    wrong_type = client.patch(url, content=b"abc", headers={**TUS, "Upload-Offset": "0"})
    assert_problem(wrong_type, 415, "unsupported-media-type")
    assert_problem(patch(client, url, 0, b"x" * 11), 413, "file-too-large")
    assert head(client, url).headers["upload-offset"] == "0"
    sha1 = base64.b64encode(hashlib.sha1(b"not these").digest()).decode()
    mismatch = patch(client, url, 0, b"abcde", **{"Upload-Checksum": f"sha1 {sha1}"})
    assert mismatch.status_code == 460 and mismatch.json()["code"] == "checksum-mismatch"
    assert head(client, url).headers["upload-offset"] == "0"
    unknown = patch(client, url, 0, b"abcde", **{"Upload-Checksum": "crc32 AAAA"})
    assert_problem(unknown, 400, "checksum-algorithm-unsupported")
    good = base64.b64encode(hashlib.sha256(b"abcde").digest()).decode()
    assert (
        patch(client, url, 0, b"abcde", **{"Upload-Checksum": f"sha256 {good}"}).status_code == 204
    )
    # Termination, through the method override that proxies allow.
    gone = client.post(url, headers={**TUS, "X-HTTP-Method-Override": "DELETE"})
    assert gone.status_code == 204
    assert head(client, url).status_code == 404


def test_a_whole_file_sha256_that_does_not_match_ends_the_upload(client: httpx.Client) -> None:
    data = b"0123456789" * 10
    url = create(
        client, len(data), **{"Upload-Metadata": metadata(filename="x.txt", sha256="00" * 32)}
    )
    answer = patch(client, url, 0, data)
    problem = assert_problem(answer, 460, "checksum-mismatch")
    assert problem["actual"] == hashlib.sha256(data).hexdigest()
    assert head(client, url).status_code == 404
    # No file was made of it.
    assert client.get("/v1/files", params={"sha256": problem["actual"]}).json()["files"] == []
    right = hashlib.sha256(data).hexdigest()
    url = create(client, len(data), **{"Upload-Metadata": metadata(sha256=right)})
    done = patch(client, url, 0, data)
    assert client.get(f"/v1/files/{done.headers['file-id']}").json()["checksum_verified"] is True


def test_an_acknowledged_chunk_survives_a_kill(tus_server: Server) -> None:
    # On S3, 6 MiB is a part and a tail waiting for the next chunk.
    acknowledged = 6 * 1024 * 1024 + 200_000
    data = os.urandom(acknowledged + 300_000)
    with httpx.Client(base_url=tus_server.url, timeout=30) as http:
        url = create(http, len(data))
        assert patch(http, url, 0, data[:acknowledged]).status_code == 204
    tus_server.kill()
    tus_server.start()
    with httpx.Client(base_url=tus_server.url, timeout=30) as http:
        assert head(http, url).headers["upload-offset"] == str(acknowledged)
        done = patch(http, url, acknowledged, data[acknowledged:])
        assert done.status_code == 204
        record = wait_done(http, done.headers["file-id"])
        assert record["sha256"] == hashlib.sha256(data).hexdigest()


def test_partial_uploads_concatenate_into_one_file(client: httpx.Client) -> None:
    pieces = [os.urandom(50_000), os.urandom(70_000), b"tail"]
    urls = []
    for piece in pieces:
        answer = client.post(
            "/v1/tus/",
            headers={**TUS, "Upload-Length": str(len(piece)), "Upload-Concat": "partial"},
        )
        assert answer.status_code == 201
        url = answer.headers["location"]
        done = patch(client, url, 0, piece)
        assert done.status_code == 204 and "file-id" not in done.headers  # never a file itself
        assert head(client, url).headers["upload-concat"] == "partial"
        urls.append(url)
    unfinished = client.post(
        "/v1/tus/", headers={**TUS, "Upload-Length": "10", "Upload-Concat": "partial"}
    ).headers["location"]
    refused = client.post(
        "/v1/tus/", headers={**TUS, "Upload-Concat": f"final;{urls[0]} {unfinished}"}
    )
    assert_problem(refused, 400, "invalid-tus-request")
    final = client.post(
        "/v1/tus/",
        headers={
            **TUS,
            "Upload-Concat": "final;" + " ".join(urls),
            "Upload-Metadata": metadata(filename="joined.bin"),
        },
    )
    assert final.status_code == 201, final.text
    record = wait_done(client, final.headers["file-id"])
    assert record["filename"] == "joined.bin"
    assert record["sha256"] == hashlib.sha256(b"".join(pieces)).hexdigest()
    assert client.get(f"/v1/files/{record['id']}/content").content == b"".join(pieces)
    assert head(client, final.headers["location"]).headers["upload-concat"].startswith("final;")
    assert_problem(patch(client, final.headers["location"], 0, b"x"), 403, "forbidden")
    assert all(head(client, url).status_code == 404 for url in urls)


def test_two_writers_at_once_get_one_423(tus_server: Server) -> None:
    """While one PATCH streams its body, another on the same upload is refused with 423."""
    import threading

    with httpx.Client(base_url=tus_server.url, timeout=60) as http:
        url = create(http, 2_000_000)
    release = threading.Event()

    def slow_body() -> Any:
        yield b"a" * 100_000
        release.wait(10)
        yield b"b" * 100_000

    results: dict[str, int] = {}

    def first() -> None:
        with httpx.Client(timeout=60) as http:
            answer = http.patch(url, content=slow_body(), headers={**CHUNK, "Upload-Offset": "0"})
            results["first"] = answer.status_code

    thread = threading.Thread(target=first)
    thread.start()
    time.sleep(0.5)
    with httpx.Client(timeout=60) as http:
        second = http.patch(url, content=b"c" * 10, headers={**CHUNK, "Upload-Offset": "0"})
        results["second"] = second.status_code
    release.set()
    thread.join(20)
    assert results == {"first": 204, "second": 423}
    with httpx.Client(timeout=60) as http:
        assert http.head(url, headers=TUS).headers["upload-offset"] == "200000"


def test_on_s3_an_upload_larger_than_a_part_is_assembled(tus_server: Server) -> None:
    data = os.urandom(17 * 1024 * 1024 + 5)  # two whole parts and a tail
    with httpx.Client(base_url=tus_server.url, timeout=120) as http:
        url = create(http, len(data))
        position = 0
        for size in (3 * 1024 * 1024, 9 * 1024 * 1024, len(data)):
            end = min(size + position, len(data))
            answer = patch(http, url, position, data[position:end])
            assert answer.status_code == 204, answer.text
            position = end
            if position == len(data):
                break
        file_id = answer.headers["file-id"]
        record = wait_done(http, file_id)
        assert record["sha256"] == hashlib.sha256(data).hexdigest()
        assert http.get(f"/v1/files/{file_id}/content").content == data


def test_pieces_of_5_mib_and_more_are_joined_whole(
    tus_server: Server, request: pytest.FixtureRequest
) -> None:
    mib = 1024 * 1024
    pieces = [os.urandom(5 * mib + 1), os.urandom(5 * mib + 2), os.urandom(100)]
    with httpx.Client(base_url=tus_server.url, timeout=120) as http:
        urls = []
        for piece in pieces:
            headers = {**TUS, "Upload-Length": str(len(piece)), "Upload-Concat": "partial"}
            url = http.post("/v1/tus/", headers=headers).headers["location"]
            assert patch(http, url, 0, piece).status_code == 204
            urls.append(url)
        final = http.post("/v1/tus/", headers={**TUS, "Upload-Concat": "final;" + " ".join(urls)})
        assert final.status_code == 201, final.text
        file_id = final.headers["file-id"]
        assert wait_done(http, file_id)["sha256"] == hashlib.sha256(b"".join(pieces)).hexdigest()
        assert http.get(f"/v1/files/{file_id}/content").content == b"".join(pieces)
    bucket = getattr(tus_server, "bucket", None)
    if bucket is not None:
        # Each piece copied within S3 as one part: three parts, where sending the bytes
        # again in 8 MiB parts would have made two.
        s3 = s3_client(request.getfixturevalue("s3_endpoint"))
        etag = s3.head_object(Bucket=bucket, Key=f"tus/originals/{file_id[:2]}/{file_id}")["ETag"]
        assert etag.strip('"').endswith("-3"), etag


def test_cors_lets_a_page_elsewhere_speak_tus(server_factory: ServerFactory) -> None:
    origin = "https://app.example"
    server = server_factory(cors_origins=origin)
    with httpx.Client(base_url=server.url, timeout=30) as http:
        preflight = http.options(
            "/v1/tus/0123456789abcdef0123456789abcdef",
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "PATCH",
                "Access-Control-Request-Headers": (
                    "tus-resumable,upload-offset,content-type,upload-checksum"
                ),
            },
        )
        assert preflight.status_code == 200
        methods = preflight.headers["access-control-allow-methods"].replace(" ", "").split(",")
        assert {"PATCH", "HEAD", "DELETE"} <= set(methods)
        allowed = preflight.headers["access-control-allow-headers"].lower()
        assert set(allowed.replace(" ", "").split(",")) >= {
            "tus-resumable",
            "upload-length",
            "upload-defer-length",
            "upload-offset",
            "upload-metadata",
            "upload-checksum",
            "upload-concat",
            "x-http-method-override",
        }
        created = http.post("/v1/tus/", headers={**TUS, "Upload-Length": "5", "Origin": origin})
        exposed = created.headers["access-control-expose-headers"].lower()
        assert set(exposed.replace(" ", "").split(",")) >= {
            "tus-resumable",
            "location",
            "upload-offset",
            "upload-length",
            "upload-expires",
            "file-id",
            "link",
        }
