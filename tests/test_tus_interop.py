"""This project's tus client against the reference server it did not write: @tus/server
with its file store (Node). A file sent in checksummed chunks arrives whole; a transfer
cut off part-way is resumed from the server's offset by a second one."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, free_port
from tests.service_fixtures import unavailable
from uploads_api.client.resumable import AsyncResumableUploads, Sent
from uploads_api.client.resume_state import ResumeState
from uploads_api.client.retry import RetryPolicy
from uploads_api.client.sources import UploadSource

pytestmark = pytest.mark.e2e

SCRIPT = ROOT / "tests" / "clients" / "tus_server.mjs"
PACKAGE = ROOT / ".cache" / "node" / "node_modules" / "@tus" / "server" / "package.json"
MiB = 1024 * 1024


class Stop(Exception):
    """Raised from the progress callback: the transfer is cut off there."""


@pytest.fixture
def reference(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """@tus/server on a free loopback port; its URL and the file store's directory."""
    if shutil.which("node") is None or not PACKAGE.is_file():
        unavailable("node or @tus/server missing: `make test-tools` installs it")
    port = free_port()
    store = tmp_path / "store"
    store.mkdir()
    process = subprocess.Popen(
        ["node", str(SCRIPT), str(port), str(store)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        assert json.loads(process.stdout.readline()) == {"listening": port}
        yield f"http://127.0.0.1:{port}", store
    finally:
        process.terminate()
        process.wait(10)
        if process.stdout is not None:
            process.stdout.close()


def transfer(base: str, path: Path, state: Path, stop_at: int | None = None) -> Sent:
    def progress(sent: int) -> None:
        if stop_at is not None and sent >= stop_at:
            raise Stop

    async def run() -> Sent:
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            uploads = AsyncResumableUploads(
                http,
                base,
                RetryPolicy(attempts=2),
                threshold=1,
                chunk_size=MiB,
                state=ResumeState(state),
            )
            source = UploadSource(path)
            ranges = source.open_ranges()
            assert ranges is not None
            try:
                key = uploads.resume_key(path, ranges.size)
                return await uploads.transfer(ranges, path.name, key, None, progress, None)
            finally:
                ranges.close()

    return asyncio.run(run())


def stored_bytes(store: Path, url: str) -> bytes:
    return (store / url.rstrip("/").rsplit("/", 1)[-1]).read_bytes()


def test_a_file_arrives_whole_at_the_reference_server(
    reference: tuple[str, Path], tmp_path: Path
) -> None:
    base, store = reference
    data = os.urandom(5 * MiB + 99)
    source = tmp_path / "a.bin"
    source.write_bytes(data)
    sent = transfer(base, source, tmp_path / "state.json")
    assert sent.file_id is None  # a plain tus server makes no file of ours
    assert hashlib.sha256(stored_bytes(store, sent.url)).digest() == hashlib.sha256(data).digest()


def test_a_cut_off_transfer_resumes_at_the_reference_server(
    reference: tuple[str, Path], tmp_path: Path
) -> None:
    base, store = reference
    data = os.urandom(6 * MiB)
    source = tmp_path / "b.bin"
    source.write_bytes(data)
    state = tmp_path / "state.json"
    with pytest.raises(Stop):
        transfer(base, source, state, stop_at=2 * MiB)
    (url,) = [json.loads(value)[0] for value in json.loads(state.read_text()).values()]
    offset = int(httpx.head(url, headers={"Tus-Resumable": "1.0.0"}).headers["upload-offset"])
    assert offset == 2 * MiB
    sent = transfer(base, source, state)
    assert sent.url == url
    assert stored_bytes(store, url) == data
    assert json.loads(state.read_text()) == {}
