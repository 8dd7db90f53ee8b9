"""Limits per owner over real sockets: the quotas of bytes and of files, and the cap on
concurrent uploads. What a limit refuses is kept nowhere, and other owners are not held up."""

from __future__ import annotations

import socket
from dataclasses import dataclass

import httpx
import pytest

from tests.conftest import Server, ServerFactory
from tests.helpers import (
    assert_healthy,
    assert_problem,
    bearer,
    blob_files,
    create_keys,
    request_head,
    wait_closed,
    wait_for,
)

pytestmark = pytest.mark.e2e


# Quotas and the concurrent-upload cap ---------------------------------------------------------


@dataclass
class Limited:
    server: Server
    keys: dict[str, str]


@pytest.fixture(scope="module")
def limited(module_server_factory: ServerFactory) -> Limited:
    server = module_server_factory(quota_bytes=1000, quota_files=3, max_concurrent_uploads=2)
    keys = create_keys(server.data_dir, "ann", "olga", "fay", "otto", "sam", "sue", "tina")
    wait_closed(server)
    return Limited(server, keys)


# Each step is one request with files of these sizes (one file: a raw PUT) and its answer.
QUOTAS = {
    "bytes": (
        "ann",
        "olga",
        "UPLOADS_QUOTA_BYTES",
        1000,
        [([600], 201), ([401], 413), ([150, 300], 413), ([400], 201), ([1], 413)],
    ),
    "files": (
        "fay",
        "otto",
        "UPLOADS_QUOTA_FILES",
        3,
        [([1], 201), ([1], 201), ([1, 1], 413), ([1], 201), ([0], 413)],
    ),
}


def _upload(http: httpx.Client, sizes: list[int]) -> httpx.Response:
    if len(sizes) == 1:
        return http.put("/v1/files/q.bin", content=b"q" * sizes[0])
    files = [("file", (f"q{i}.bin", b"q" * size)) for i, size in enumerate(sizes)]
    return http.post("/v1/files", files=files)


@pytest.mark.parametrize("quota", list(QUOTAS))
def test_an_upload_crossing_a_quota_is_refused_and_kept_nowhere(
    limited: Limited, quota: str
) -> None:
    owner, other, setting, limit, steps = QUOTAS[quota]
    server = limited.server
    with httpx.Client(base_url=server.url, headers=bearer(limited.keys[owner])) as http:
        kept: list[str] = []
        for sizes, status in steps:
            blobs = blob_files(server)
            response = _upload(http, sizes)
            if status == 201:
                assert response.status_code == 201, response.text
                body = response.json()
                kept += [f["id"] for f in body.get("files", [body])]
            else:
                problem = assert_problem(response, 413, "quota-exceeded")
                assert (problem["quota"], problem["limit"]) == (setting, limit)
                assert blob_files(server) == blobs
            assert server.temp_files() == []
            listed = http.get("/v1/files").json()["files"]
            assert sorted(f["id"] for f in listed) == sorted(kept)
    # Quotas are per owner: another owner starts from nothing.
    with httpx.Client(base_url=server.url, headers=bearer(limited.keys[other])) as http:
        response = _upload(http, [300, 300, 300])
        assert response.status_code == 201, response.text
    assert_healthy(server)


def test_uploads_beyond_the_concurrent_cap_get_429(limited: Limited) -> None:
    server = limited.server
    held = []
    head = request_head(
        "PUT",
        "/v1/files/slow.bin",
        content_type="application/octet-stream",
        length=500,
        headers=(f"Authorization: Bearer {limited.keys['sam']}",),
    )
    try:
        for _ in range(2):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            sock.sendall(head + b"s" * 10)  # and then nothing: the upload stays open
            held.append(sock)
        with httpx.Client(base_url=server.url, headers=bearer(limited.keys["sam"])) as sam:
            wait_for(
                lambda: "uploads_in_progress 2.0" in sam.get("/metrics").text,
                what="both slow uploads to be open",
            )
            refused = sam.put("/v1/files/third.bin", content=b"3")
            problem = assert_problem(refused, 429, "too-many-uploads")
            assert refused.headers["retry-after"] == "1"
            assert "at most 2 uploads" in problem["detail"]
            assert sam.get("/v1/files").status_code == 200, "only uploads are capped"
            with httpx.Client(base_url=server.url, headers=bearer(limited.keys["sue"])) as sue:
                assert sue.put("/v1/files/other.bin", content=b"s").status_code == 201
            for sock in held:
                sock.close()
            held.clear()
            wait_for(lambda: server.temp_files() == [], what="the abandoned uploads to go")
            wait_for(
                lambda: sam.put("/v1/files/fourth.bin", content=b"4").status_code == 201,
                what="the slots to be released",
            )
            assert {f["filename"] for f in sam.get("/v1/files").json()["files"]} == {"fourth.bin"}
    finally:
        for sock in held:
            sock.close()
    assert_healthy(server)


def test_a_tus_patch_holds_a_slot_only_while_its_body_arrives(limited: Limited) -> None:
    server = limited.server
    auth = f"Authorization: Bearer {limited.keys['tina']}"
    tus = ("Tus-Resumable: 1.0.0",)
    with httpx.Client(base_url=server.url, headers=bearer(limited.keys["tina"])) as tina:
        created = tina.post("/v1/tus/", headers={"Tus-Resumable": "1.0.0", "Upload-Length": "300"})
        assert created.status_code == 201, created.text
        url = created.headers["location"]
        chunk = "application/offset+octet-stream"
        patch_head = request_head(
            "PATCH", url, content_type=chunk, length=100, headers=(auth, *tus, "Upload-Offset: 0")
        )
        put_head = request_head(
            "PUT", "/v1/files/slow.bin", content_type=chunk, length=500, headers=(auth,)
        )
        with (
            socket.create_connection(("127.0.0.1", server.port), timeout=10) as patching,
            socket.create_connection(("127.0.0.1", server.port), timeout=10) as putting,
        ):
            patching.sendall(patch_head + b"p" * 10)
            putting.sendall(put_head + b"s" * 10)
            wait_for(
                lambda: "uploads_in_progress 2.0" in tina.get("/metrics").text,
                what="the PATCH and the PUT to hold both slots",
            )
            assert_problem(tina.put("/v1/files/third.bin", content=b"3"), 429, "too-many-uploads")
            patching.sendall(b"p" * 90)
            assert patching.recv(4096).startswith(b"HTTP/1.1 204")
            # Paused at 100 of 300 bytes, the upload holds no slot: the PUT still open has
            # one, and another upload takes the other.
            wait_for(
                lambda: "uploads_in_progress 1.0" in tina.get("/metrics").text,
                what="the PATCH to give its slot back",
            )
            assert tina.put("/v1/files/fourth.bin", content=b"4").status_code == 201
        offset = tina.head(url, headers={"Tus-Resumable": "1.0.0"}).headers["upload-offset"]
        assert offset == "100"
