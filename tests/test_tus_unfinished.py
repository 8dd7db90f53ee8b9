"""Unfinished tus uploads: each is listed only to the key that made it and hidden from any
other; its whole length is reserved against the quota at creation and counts towards a cap
on open uploads per key; its creation, each PATCH and HEAD say when it expires (counted
from the last PATCH), and once expired it answers 410 and the sweep removes its bytes (on S3
aborting the multipart parts and deleting the tail) and counts it in /metrics."""

from __future__ import annotations

import os
import secrets
import time
from datetime import datetime
from email.utils import parsedate_to_datetime

import httpx
import pytest

from tests.cluster import AWS_ENV
from tests.conftest import ServerFactory
from tests.helpers import assert_problem, bearer, create_keys, sweep
from tests.service_fixtures import s3_client
from tests.tus_helpers import TUS, create, head, metadata, patch

pytestmark = pytest.mark.e2e


def test_unfinished_uploads_are_listed_and_belong_to_their_key(
    server_factory: ServerFactory,
) -> None:
    server = server_factory()
    keys = create_keys(server.data_dir, "alice", "bob")
    with httpx.Client(base_url=server.url, headers=bearer(keys["alice"])) as alice:
        url = create(alice, 100, **{"Upload-Metadata": metadata(filename="half.bin")})
        patch(alice, url, 0, b"x" * 40)
        listed = alice.get("/v1/tus/").json()["uploads"]
        assert [(alice.base_url.join(u["url"]), u["offset"], u["length"]) for u in listed] == [
            (httpx.URL(url), 40, 100)
        ]
        assert listed[0]["metadata"] == {"filename": "half.bin"}
        with httpx.Client(base_url=server.url, headers=bearer(keys["bob"])) as bob:
            assert head(bob, url).status_code == 404
            assert_problem(patch(bob, url, 40, b"y"), 404, "not-found")
            assert bob.delete(url, headers=TUS).status_code == 404
            assert bob.get("/v1/tus/").json()["uploads"] == []
        with httpx.Client(base_url=server.url) as nobody:
            assert head(nobody, url).status_code == 401
            assert_problem(patch(nobody, url, 40, b"y"), 401, "unauthorized")
        refused = alice.put(url, headers=TUS)
        assert_problem(refused, 405, "method-not-allowed")
        assert refused.headers["allow"] == "HEAD, PATCH, DELETE, OPTIONS"
        assert head(alice, url).headers["upload-offset"] == "40"


def test_the_listing_comes_in_pages(server_factory: ServerFactory) -> None:
    server = server_factory()
    with httpx.Client(base_url=server.url) as http:
        made = {httpx.URL(create(http, 10)).path for _ in range(5)}
        seen: list[str] = []
        cursor = None
        pages = 0
        while True:
            params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
            page = http.get("/v1/tus/", params=params).json()
            assert len(page["uploads"]) <= 2
            seen += [u["url"] for u in page["uploads"]]
            pages += 1
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert pages == 3
        assert sorted(seen) == sorted(made), "each upload once"
        refused = http.get("/v1/tus/", params={"cursor": "not-a-cursor"})
        assert refused.status_code == 422
        assert refused.headers["content-type"].startswith("application/problem+json")


def test_creation_patch_and_head_say_when_the_upload_expires(
    server_factory: ServerFactory,
) -> None:
    server = server_factory(tus_expiry=3600)
    with httpx.Client(base_url=server.url) as http:
        created = http.post("/v1/tus/", headers={**TUS, "Upload-Length": "10"})
        assert created.status_code == 201, created.text
        first = parsedate_to_datetime(created.headers["upload-expires"])
        assert abs(first.timestamp() - (time.time() + 3600)) < 60
        url = str(http.base_url.join(created.headers["location"]))
        time.sleep(1.1)  # the header counts whole seconds
        answer = patch(http, url, 0, b"x" * 4)
        assert answer.status_code == 204
        # Counted from the last PATCH, and HEAD and the listing say the same.
        moved = parsedate_to_datetime(answer.headers["upload-expires"])
        assert moved > first
        assert parsedate_to_datetime(head(http, url).headers["upload-expires"]) == moved
        (listed,) = http.get("/v1/tus/").json()["uploads"]
        listed_at = datetime.fromisoformat(listed["expires_at"].replace("Z", "+00:00"))
        assert abs(listed_at.timestamp() - moved.timestamp()) < 1
        # A finished upload is a file: no expiry any more.
        done = patch(http, url, 4, b"y" * 6)
        assert done.status_code == 204 and "upload-expires" not in done.headers
        assert done.headers["file-id"]


def test_quota_is_reserved_at_creation(server_factory: ServerFactory) -> None:
    server = server_factory(quota_bytes=1000)
    with httpx.Client(base_url=server.url) as http:
        create(http, 800)
        over = http.post("/v1/tus/", headers={**TUS, "Upload-Length": "300"})
        assert_problem(over, 413, "quota-exceeded")
        # A plain upload counts the reservation too.
        assert_problem(http.put("/v1/files/a.bin", content=b"z" * 300), 413, "quota-exceeded")


def test_an_upload_of_unknown_length_stops_at_the_quota(server_factory: ServerFactory) -> None:
    server = server_factory(quota_bytes=1000)
    with httpx.Client(base_url=server.url) as http:
        url = create(http, None)
        assert patch(http, url, 0, b"a" * 600).status_code == 204
        # Counted as it arrives: a plain upload meets the first 600 bytes.
        assert_problem(http.put("/v1/files/a.bin", content=b"z" * 500), 413, "quota-exceeded")
        refused = patch(http, url, 600, b"b" * 401)
        assert_problem(refused, 413, "quota-exceeded")
        assert head(http, url).headers["upload-offset"] == "600"  # nothing of it kept
        done = patch(http, url, 600, b"b" * 400, **{"Upload-Length": "1000"})
        assert done.status_code == 204, done.text
        content = http.get(f"/v1/files/{done.headers['file-id']}/content").content
        assert content == b"a" * 600 + b"b" * 400


def test_expired_uploads_answer_410_then_the_sweep_removes_them(
    server_factory: ServerFactory,
) -> None:
    server = server_factory(tus_expiry=1)
    with httpx.Client(base_url=server.url) as http:
        url = create(http, 100)
        patch(http, url, 0, b"p" * 50)
        partials = list((server.data_dir / "tus").rglob("*"))
        assert any(path.is_file() for path in partials)
        time.sleep(1.5)
        assert_problem(head_problem(http, url), 410, "upload-expired")
        sweep(server.data_dir, {"UPLOADS_TUS_EXPIRY": "1"})
        assert head(http, url).status_code == 404
        assert not [p for p in (server.data_dir / "tus").rglob("*") if p.is_file()]


def test_the_servers_own_sweep_counts_expired_uploads(server_factory: ServerFactory) -> None:
    server = server_factory(tus_expiry=1, sweep_interval=1)
    with httpx.Client(base_url=server.url) as http:
        url = create(http, 100)
        deadline = time.monotonic() + 20
        while (removed := expired_count(http)) < 1 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert removed == 1
        assert head(http, url).status_code == 404


def expired_count(client: httpx.Client) -> float:
    """``uploads_resumable_expired_total`` from the server's ``/metrics``."""
    for line in client.get("/metrics").text.splitlines():
        if line.startswith("uploads_resumable_expired_total "):
            return float(line.split()[1])
    return 0.0


def head_problem(client: httpx.Client, url: str) -> httpx.Response:
    """HEAD has no body; the same request as GET-less PATCH shows the problem."""
    return patch(client, url, 50, b"")


def test_on_s3_parts_and_tails_go_with_an_expired_upload(
    server_factory: ServerFactory, s3_endpoint: str
) -> None:
    """More than a part (8 MiB) and a tail: the sweep aborts the parts, removes the tail."""
    bucket = f"tus-{secrets.token_hex(6)}"
    s3 = s3_client(s3_endpoint)
    s3.create_bucket(Bucket=bucket)
    settings = {
        "UPLOADS_STORAGE_URL": f"s3://{bucket}/tus",
        "UPLOADS_S3_ENDPOINT_URL": s3_endpoint,
        "UPLOADS_TUS_EXPIRY": "1",
    }
    server = server_factory(extra_env={**AWS_ENV, **settings})
    data = os.urandom(9 * 1024 * 1024)
    with httpx.Client(base_url=server.url, timeout=60) as http:
        url = create(http, 20 * 1024 * 1024)
        assert patch(http, url, 0, data).status_code == 204
        assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads")
        assert s3.list_objects_v2(Bucket=bucket).get("KeyCount") == 1  # the tail
        time.sleep(1.5)
        sweep(server.data_dir, {**AWS_ENV, **settings})
        assert head(http, url).status_code == 404
    assert not s3.list_multipart_uploads(Bucket=bucket).get("Uploads")
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount") == 0


def test_open_uploads_per_key_are_capped(server_factory: ServerFactory) -> None:
    server = server_factory(tus_max_open=2)
    with httpx.Client(base_url=server.url, timeout=30) as http:
        first = create(http, 10)
        create(http, 10)
        assert_problem(
            http.post("/v1/tus/", headers={**TUS, "Upload-Length": "10"}), 429, "too-many-uploads"
        )
        # A finished upload no longer counts.
        assert patch(http, first, 0, b"0123456789").status_code == 204
        create(http, 10)


def test_a_key_at_its_cap_can_still_join_its_parts(server_factory: ServerFactory) -> None:
    server = server_factory(tus_max_open=2)
    partial = {**TUS, "Upload-Length": "5", "Upload-Concat": "partial"}
    with httpx.Client(base_url=server.url, timeout=30) as http:
        urls = [http.post("/v1/tus/", headers=partial).headers["location"] for _ in range(2)]
        for url, piece in zip(urls, (b"01234", b"56789"), strict=True):
            assert patch(http, url, 0, piece).status_code == 204
        assert_problem(http.post("/v1/tus/", headers=partial), 429, "too-many-uploads")
        final = http.post("/v1/tus/", headers={**TUS, "Upload-Concat": "final;" + " ".join(urls)})
        assert final.status_code == 201, final.text
        file_id = final.headers["file-id"]
        assert http.get(f"/v1/files/{file_id}/content").content == b"0123456789"
        # The joined parts are gone, and with them the key's open uploads.
        create(http, 10)
