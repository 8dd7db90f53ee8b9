"""Each upload's sha256, made from its chunks as they pass (in the process that took them)
or read back when that process did not take them all: right in every case, on local disk
and on S3, and its type sniffed from the head alone."""

from __future__ import annotations

import base64
import hashlib
import itertools
import os

import httpx
import pytest

from tests.conftest import Server, ServerFactory
from tests.helpers import wait_done
from tests.tus_helpers import TUS, create, patch

pytestmark = pytest.mark.e2e

PNG_HEAD = b"\x89PNG\r\n\x1a\n"


def test_a_refused_chunk_sent_again_still_hashes_right(tus_server: Server) -> None:
    data = PNG_HEAD + os.urandom(200_000)
    with httpx.Client(base_url=tus_server.url, timeout=60) as client:
        url = create(client, len(data))
        assert patch(client, url, 0, data[:90_000]).status_code == 204
        wrong = base64.b64encode(hashlib.sha1(b"not these").digest()).decode()
        refused = patch(client, url, 90_000, data[90_000:], **{"Upload-Checksum": f"sha1 {wrong}"})
        assert refused.status_code == 460
        right = base64.b64encode(hashlib.sha1(data[90_000:]).digest()).decode()
        done = patch(client, url, 90_000, data[90_000:], **{"Upload-Checksum": f"sha1 {right}"})
        assert done.status_code == 204, done.text
        record = wait_done(client, done.headers["file-id"])
    assert record["sha256"] == hashlib.sha256(data).hexdigest()
    # Sniffed from the head, read alone when the hash was made on the way.
    assert record["content_type"] == "image/png"


def test_chunks_taken_by_either_of_two_processes_hash_right(
    server_factory: ServerFactory,
) -> None:
    """A connection per chunk lets the kernel hand each to either process."""
    server = server_factory(workers=2)
    data = os.urandom(3 * 1024 * 1024 + 11)
    bounds = [*range(0, len(data), 200_000), len(data)]
    with httpx.Client(base_url=server.url, timeout=60) as first:
        url = create(first, len(data))
    for start, end in itertools.pairwise(bounds):
        with httpx.Client(timeout=60) as fresh:
            answer = patch(fresh, url, start, data[start:end])
            assert answer.status_code == 204, answer.text
    with httpx.Client(base_url=server.url, timeout=60) as client:
        record = wait_done(client, answer.headers["file-id"])
    assert record["sha256"] == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("restart", [False, True], ids=["hashes-kept", "after-a-restart"])
def test_a_concatenation_hashes_right_whether_its_parts_were_hashed_here(
    server_factory: ServerFactory, restart: bool
) -> None:
    server = server_factory()
    pieces = [b"", os.urandom(1_500_000), os.urandom(700_000)]
    with httpx.Client(base_url=server.url, timeout=60) as client:
        urls = []
        for piece in pieces:
            url = create(client, len(piece), **{"Upload-Concat": "partial"})
            if piece:
                assert patch(client, url, 0, piece).status_code == 204
            urls.append(url)
    if restart:
        server.kill()
        server.start()
    with httpx.Client(base_url=server.url, timeout=60) as client:
        final = client.post("/v1/tus/", headers={**TUS, "Upload-Concat": "final;" + " ".join(urls)})
        assert final.status_code == 201, final.text
        record = wait_done(client, final.headers["file-id"])
        assert record["sha256"] == hashlib.sha256(b"".join(pieces)).hexdigest()
        assert client.get(f"/v1/files/{record['id']}/content").content == b"".join(pieces)
