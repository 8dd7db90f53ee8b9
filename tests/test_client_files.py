"""The Python client's local files: ``collect_files`` applies globs and takes each file
once, ``sha256_files`` hashes in order and stops when told, and a file that changes while
it is sent is refused."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from tests.helpers import sha256 as sha
from uploads_api.client import IntegrityError, collect_files
from uploads_api.client.sources import UploadSource, sha256_files


@pytest.mark.parametrize(("change", "word"), [(b"more", "grew"), (None, "shrank")])
def test_a_file_changed_while_sent_is_refused(
    tmp_path: Path, change: bytes | None, word: str
) -> None:
    path = tmp_path / "live.log"
    path.write_bytes(b"a" * 10)
    reader = UploadSource(path).open()
    try:
        if change is None:
            path.write_bytes(b"a" * 5)
        else:
            with path.open("ab") as stream:
                stream.write(change)
        with pytest.raises(IntegrityError, match=word):
            reader.read()
    finally:
        reader.close()


def test_collect_files_applies_globs(tmp_path: Path) -> None:
    for name in ["a.jpg", "b.txt", "sub/c.jpg", "sub/deep/d.jpg", ".git/e.jpg"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(name.encode())
    found = collect_files(tmp_path, recursive=True, include=["*.jpg"], exclude=[".git"])
    assert [p.relative_to(tmp_path).as_posix() for p in found] == [
        "a.jpg",
        "sub/c.jpg",
        "sub/deep/d.jpg",
    ]
    assert collect_files(tmp_path) == [tmp_path / "a.jpg", tmp_path / "b.txt"]
    with pytest.raises(FileNotFoundError):
        collect_files(tmp_path / "missing")


def test_collect_files_takes_a_file_once_however_it_is_reached(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    for name in ["a.jpg", "sub/b.jpg"]:
        (photos / name).write_bytes(name.encode())
    (photos / "sub" / "link.jpg").symlink_to(photos / "a.jpg")
    os.link(photos / "a.jpg", photos / "hard.jpg")  # another name, not a link: kept
    (tmp_path / "album").symlink_to(photos)
    found = collect_files(
        [photos / "sub" / "b.jpg", photos, tmp_path / "album", photos / "sub" / ".." / "a.jpg"],
        recursive=True,
    )
    assert found == [photos / "sub" / "b.jpg", photos / "a.jpg", photos / "hard.jpg"]


def test_sha256_files_hashes_in_order_and_stops_when_told(tmp_path: Path) -> None:
    paths = [tmp_path / "a", tmp_path / "missing", tmp_path / "b"]
    paths[0].write_bytes(b"a")
    paths[2].write_bytes(b"b" * (3 * 1024 * 1024))
    digests = sha256_files(paths)
    assert digests[0] == sha(b"a") and digests[2] == sha(b"b" * (3 * 1024 * 1024))
    assert isinstance(digests[1], FileNotFoundError)
    stop = threading.Event()
    stop.set()
    with pytest.raises(InterruptedError):
        sha256_files(paths, stop)
