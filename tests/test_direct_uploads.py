"""Direct transfer with S3 (moto's server): parts PUT straight to presigned URLs, completed
through the API, verified by a task that reads the object back; refusals (a wrong ETag, a
missing part, a size that does not add up, a type not allowed) leave nothing behind; an
abandoned upload is aborted by the sweep; downloads answered 302 to a presigned URL."""

from __future__ import annotations

import hashlib
import io
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.cluster import AWS_ENV, ClusterConfig, Worker
from tests.conftest import Server, ServerFactory
from tests.direct_upload_helpers import (
    PART,
    MiB,
    bucket_keys,
    complete,
    counter,
    new_bucket,
    pending_uploads,
    put_parts,
    s3_settings,
    start,
)
from tests.helpers import assert_problem, bearer, cli_env, create_keys, wait_done
from tests.service_fixtures import s3_client

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def s3_server(module_server_factory: ServerFactory, s3_endpoint: str) -> Server:
    bucket = new_bucket(s3_endpoint)
    server = module_server_factory(extra_env=AWS_ENV, **s3_settings(s3_endpoint, bucket))
    server.bucket = bucket  # type: ignore[attr-defined]
    return server


@pytest.fixture
def client(s3_server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=s3_server.url, timeout=60) as http:
        yield http


def test_capabilities_advertise_direct_uploads_on_s3_only(
    client: httpx.Client, server: Server
) -> None:
    offered = client.get("/v1/capabilities").json()
    assert offered["direct_uploads"] == {
        "min_size": 8 * MiB,
        "part_size": PART,
        "max_parts": 10_000,
        "expires_in": 86400,
    }
    assert offered["presigned_downloads"] is False
    assert offered["resumable_uploads"]["endpoint"] == "/v1/tus/"
    assert "concatenation" in offered["resumable_uploads"]["extensions"]
    assert offered["keys_required"] is False
    local = httpx.get(f"{server.url}/v1/capabilities").json()
    assert local["direct_uploads"] is None
    assert local["max_file_size"] == 1024**3 and local["thumbnail_sizes"] == [256, 1024]
    answer = httpx.post(f"{server.url}/v1/direct-uploads", json={"filename": "a", "size": 1})
    assert_problem(answer, 404, "direct-uploads-unavailable")


def test_a_file_in_parts_bypasses_the_api_and_is_verified(
    client: httpx.Client, s3_server: Server, s3_endpoint: str
) -> None:
    data = os.urandom(12 * MiB + 12345)  # three parts: 5, 5 and a bit over 2 MiB
    digest = hashlib.sha256(data).hexdigest()
    through_api = counter(client, "uploads_bytes_total")
    direct_bytes = counter(client, "uploads_direct_bytes_total")
    offer = start(client, data, "big.bin", sha256=digest)
    assert offer["part_size"] == PART and [p["number"] for p in offer["parts"]] == [1, 2, 3]
    assert all(p["url"].startswith(s3_endpoint) for p in offer["parts"])
    answer = complete(client, offer, put_parts(offer, data))
    assert answer.status_code == 201, answer.text
    record = answer.json()
    assert record["id"] == offer["id"] and record["size"] == len(data)
    assert record["status"] == "processing" and record["sha256"] is None
    assert record["tasks"][0]["name"] == "verify"
    done = wait_done(client, record["id"])
    assert done["status"] == "ready", done
    assert done["sha256"] == digest and done["checksum_verified"] is True
    assert done["metadata"]["sha256"] == digest
    assert client.get(done["links"]["content"]).content == data
    # Not one byte of the file reached the API; the direct counter took them all.
    assert counter(client, "uploads_bytes_total") == through_api
    assert counter(client, "uploads_direct_bytes_total") == direct_bytes + len(data)
    assert pending_uploads(s3_endpoint, s3_server.bucket) == []  # type: ignore[attr-defined]


def test_a_direct_image_goes_through_the_pipeline(client: httpx.Client) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (640, 480), (200, 30, 30)).save(buffer, "JPEG")
    data = buffer.getvalue()  # one part, smaller than the part size: S3 takes it as the last
    offer = start(client, data, "red.jpg")
    record = complete(client, offer, put_parts(offer, data)).json()
    done = wait_done(client, record["id"])
    assert done["status"] == "ready" and done["content_type"] == "image/jpeg"
    assert done["checksum_verified"] is False  # no hash was announced
    assert done["sha256"] == hashlib.sha256(data).hexdigest()
    assert done["metadata"]["image"]["width"] == 640
    assert {t["size"] for t in done["thumbnails"]} == {256, 1024}
    thumb = client.get(done["thumbnails"][0]["url"])
    assert thumb.status_code == 200 and Image.open(io.BytesIO(thumb.content)).width == 256
    # Variants are made and kept on S3 as on local disk.
    variant = client.get(f"/v1/files/{done['id']}/variants/w=100,fmt=png")
    assert variant.status_code == 200, variant.text
    assert Image.open(io.BytesIO(variant.content)).size == (100, 75)
    again = client.get(f"/v1/files/{done['id']}/variants/w=100,fmt=png")
    assert again.content == variant.content and again.headers["etag"] == variant.headers["etag"]


def test_the_cluster_verifies_in_a_celery_worker(
    request: pytest.FixtureRequest,
    server_factory: ServerFactory,
    s3_endpoint: str,
    tmp_path: Path,
) -> None:
    """The same task code in the scale-out mode: PostgreSQL, Redis, a Celery worker."""
    bucket = new_bucket(s3_endpoint)
    config = ClusterConfig(
        database_url=request.getfixturevalue("postgres_url"),
        storage_url=f"s3://{bucket}/uploads",
        s3_endpoint=s3_endpoint,
        broker_url=request.getfixturevalue("redis_url") + "/0",
    )
    worker = Worker(config, tmp_path / "worker", tmp_path / "worker.log", beat=False)
    worker.start()
    try:
        server = server_factory(
            extra_env=AWS_ENV, direct_upload_part_size=PART, **config.settings()
        )
        data = os.urandom(PART + 4321)
        digest = hashlib.sha256(data).hexdigest()
        with httpx.Client(base_url=server.url, timeout=60) as http:
            offer = start(http, data, sha256=digest)
            record = complete(http, offer, put_parts(offer, data)).json()
            done = wait_done(http, record["id"], timeout=60)
        assert done["status"] == "ready" and done["sha256"] == digest
        assert done["checksum_verified"] is True
    finally:
        worker.stop()


def test_a_wrong_etag_is_refused_and_the_upload_stays_open(client: httpx.Client) -> None:
    data = os.urandom(PART + 100)
    offer = start(client, data)
    parts = put_parts(offer, data)
    forged = [parts[0], {"number": 2, "etag": '"' + "0" * 32 + '"'}]
    problem = assert_problem(complete(client, offer, forged), 409, "invalid-parts")
    assert problem["parts"] == 2
    answer = complete(client, offer, parts)
    assert answer.status_code == 201, answer.text
    assert client.get(f"/v1/files/{offer['id']}/content").content == data


def test_a_missing_part_is_refused(client: httpx.Client) -> None:
    data = os.urandom(PART * 2 + 1)
    offer = start(client, data)
    parts = put_parts(offer, data)
    assert_problem(complete(client, offer, parts[:2]), 409, "invalid-parts")  # not listed
    assert_problem(complete(client, offer, [parts[1], parts[0], parts[2]]), 409, "invalid-parts")
    # Listed, never sent: storage has no such part.
    unsent = start(client, data)
    first_two = put_parts({**unsent, "parts": unsent["parts"][:2]}, data)
    forged = {"number": 3, "etag": '"' + "1" * 32 + '"'}
    assert_problem(complete(client, unsent, [*first_two, forged]), 409, "invalid-parts")
    assert client.get(f"/v1/files/{unsent['id']}").status_code == 404


def test_parts_that_do_not_add_up_leave_nothing(
    client: httpx.Client, s3_server: Server, s3_endpoint: str
) -> None:
    data = os.urandom(PART + 1000)
    offer = start(client, data)
    short = data[:-10]
    parts = put_parts(offer, short)
    problem = assert_problem(complete(client, offer, parts), 422, "size-mismatch")
    assert problem["size"] == len(short) and problem["expected"] == len(data)
    assert client.get(f"/v1/files/{offer['id']}").status_code == 404
    bucket = s3_server.bucket  # type: ignore[attr-defined]
    assert not [key for key in bucket_keys(s3_endpoint, bucket) if offer["id"] in key]
    # The upload is spent.
    assert_problem(complete(client, offer, parts), 404, "not-found")


def test_a_hash_that_does_not_match_fails_the_file(client: httpx.Client) -> None:
    data = b"these are the bytes sent\n" * 100
    offer = start(client, data, "notes.txt", sha256="ab" * 32)
    record = complete(client, offer, put_parts(offer, data)).json()
    done = wait_done(client, record["id"])
    assert done["status"] == "failed"
    verify = next(task for task in done["tasks"] if task["name"] == "verify")
    assert verify["state"] == "failed" and "not the " + "ab" * 32 in verify["error"]
    assert done["sha256"] == hashlib.sha256(data).hexdigest()
    assert done["checksum_verified"] is False


def test_limits_apply_before_and_after_the_bytes(
    server_factory: ServerFactory, s3_endpoint: str
) -> None:
    bucket = new_bucket(s3_endpoint)
    server = server_factory(
        extra_env=AWS_ENV,
        **s3_settings(
            s3_endpoint,
            bucket,
            max_file_size=10 * MiB,
            quota_bytes=8 * MiB,
            allowed_types="image/*",
        ),
    )
    with httpx.Client(base_url=server.url, timeout=60) as http:
        too_big = http.post("/v1/direct-uploads", json={"filename": "a", "size": 11 * MiB})
        assert_problem(too_big, 422, "validation-error")
        over_quota = http.post("/v1/direct-uploads", json={"filename": "a", "size": 9 * MiB})
        assert_problem(over_quota, 413, "quota-exceeded")
        text = b"not a picture at all\n" * 50
        offer = start(http, text, "a.txt")
        refused = complete(http, offer, put_parts(offer, text))
        assert_problem(refused, 415, "unsupported-media-type")
        assert http.get("/v1/files").json()["files"] == []
    assert bucket_keys(s3_endpoint, bucket) == []
    assert pending_uploads(s3_endpoint, bucket) == []


def test_another_owner_cannot_complete_or_abort(
    server_factory: ServerFactory, s3_endpoint: str
) -> None:
    bucket = new_bucket(s3_endpoint)
    server = server_factory(extra_env=AWS_ENV, **s3_settings(s3_endpoint, bucket))
    keys = create_keys(server.data_dir, "alice", "bob")
    data = b"alice's bytes"
    with httpx.Client(base_url=server.url, timeout=60, headers=bearer(keys["alice"])) as alice:
        offer = start(alice, data)
        parts = put_parts(offer, data)
        with httpx.Client(base_url=server.url, headers=bearer(keys["bob"])) as bob:
            assert_problem(complete(bob, offer, parts), 404, "not-found")
            assert_problem(bob.delete(f"/v1/direct-uploads/{offer['id']}"), 404, "not-found")
        assert complete(alice, offer, parts).status_code == 201


def test_an_aborted_upload_is_gone(
    client: httpx.Client, s3_server: Server, s3_endpoint: str
) -> None:
    data = os.urandom(100)
    offer = start(client, data)
    parts = put_parts(offer, data)
    bucket = s3_server.bucket  # type: ignore[attr-defined]
    upload_count = len(pending_uploads(s3_endpoint, bucket))
    assert client.delete(f"/v1/direct-uploads/{offer['id']}").status_code == 204
    assert len(pending_uploads(s3_endpoint, bucket)) == upload_count - 1
    assert_problem(complete(client, offer, parts), 404, "not-found")


def test_the_sweep_aborts_an_abandoned_upload(
    server_factory: ServerFactory, s3_endpoint: str
) -> None:
    bucket = new_bucket(s3_endpoint)
    settings = s3_settings(s3_endpoint, bucket, direct_upload_expiry=2)
    server = server_factory(extra_env=AWS_ENV, **settings)
    data = os.urandom(PART + 1)
    with httpx.Client(base_url=server.url, timeout=60) as http:
        abandoned = start(http, data)
        put_parts({**abandoned, "parts": abandoned["parts"][:1]}, data)
        assert len(pending_uploads(s3_endpoint, bucket)) == 1
        time.sleep(2.5)
        env = {
            **cli_env(),
            **AWS_ENV,
            **{f"UPLOADS_{k.upper()}": str(v) for k, v in settings.items()},
        }
        swept = subprocess.run(
            [sys.executable, "-m", "uploads_api.cli", "sweep", "--data-dir", str(server.data_dir)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert swept.returncode == 0, swept.stderr
        assert pending_uploads(s3_endpoint, bucket) == []
        assert_problem(complete(http, abandoned, []), 422, "validation-error")
        gone = complete(
            http, abandoned, [{"number": 1, "etag": '"x"'}, {"number": 2, "etag": '"y"'}]
        )
        assert_problem(gone, 404, "not-found")


def test_downloads_can_redirect_to_presigned_urls(
    server_factory: ServerFactory, s3_endpoint: str
) -> None:
    bucket = new_bucket(s3_endpoint)
    # The public address clients reach: here another name for the same loopback server.
    public = s3_endpoint.replace("127.0.0.1", "localhost")
    server = server_factory(
        extra_env=AWS_ENV,
        **s3_settings(
            s3_endpoint, bucket, s3_presigned_downloads="true", s3_public_endpoint_url=public
        ),
    )
    data = b"<html><script>alert(1)</script></html>"
    with httpx.Client(base_url=server.url, timeout=60) as http:
        assert http.get("/v1/capabilities").json()["presigned_downloads"] is True
        offer = start(http, data, "page.html")
        assert all(part["url"].startswith(public) for part in offer["parts"])
        record = complete(http, offer, put_parts(offer, data)).json()
        answer = http.get(record["links"]["content"])
        assert answer.status_code == 302
        location = answer.headers["location"]
        assert location.startswith(public) and answer.headers["cache-control"] == "no-store"
        with httpx.Client(timeout=60) as storage:
            fetched = storage.get(location)
            assert fetched.content == data
            # Active content goes as plain bytes, as an attachment, from storage too.
            assert fetched.headers["content-type"] == "application/octet-stream"
            assert fetched.headers["content-disposition"].startswith("attachment")
            ranged = storage.get(location, headers={"Range": "bytes=0-5"})
            assert ranged.status_code == 206 and ranged.content == data[:6]
        link = http.post(
            f"/v1/files/{record['id']}/links", json={"target": "content", "expires_in": 60}
        ).json()
        through_link = httpx.get(link["url"])
        assert through_link.status_code == 302
        expires = int(re.search(r"X-Amz-Expires=(\d+)", through_link.headers["location"]).group(1))  # type: ignore[union-attr]
        assert 1 <= expires <= 60


def test_a_completion_storage_already_did_is_recorded(
    client: httpx.Client, s3_server: Server, s3_endpoint: str
) -> None:
    """A retried CompleteMultipartUpload after a lost answer finds no upload: the object is
    there, of the right size, so the file is recorded."""
    data = os.urandom(PART + 7)
    offer = start(client, data)
    parts = put_parts(offer, data)
    bucket = s3_server.bucket  # type: ignore[attr-defined]
    s3 = s3_client(s3_endpoint)
    (pending,) = [
        u
        for u in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
        if offer["id"] in u["Key"]
    ]
    s3.complete_multipart_upload(
        Bucket=bucket,
        Key=pending["Key"],
        UploadId=pending["UploadId"],
        MultipartUpload={"Parts": [{"PartNumber": p["number"], "ETag": p["etag"]} for p in parts]},
    )
    answer = complete(client, offer, parts)
    assert answer.status_code == 201, answer.text
    assert wait_done(client, offer["id"])["sha256"] == hashlib.sha256(data).hexdigest()
