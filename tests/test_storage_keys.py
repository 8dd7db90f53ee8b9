"""Storage keys: which keys and file ids are valid, and how the key builders and
``file_id_of`` map between a file id and the keys of its blobs."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.storage_helpers import BAD_KEYS, new_id
from uploads_api.storage.keys import (
    file_id_of,
    original_key,
    thumbnail_key,
    thumbnail_prefix,
    validate_file_id,
    validate_key,
)


@pytest.mark.parametrize("key", BAD_KEYS)
def test_validate_key_rejects(key: str) -> None:
    with pytest.raises(ValueError, match="invalid storage key"):
        validate_key(key)


@pytest.mark.parametrize(
    "key",
    ["a", "0", "a.b-c_d/0", "originals/ab/" + "ab" * 16, "thumbnails/ab/x/256.webp", "a" * 512],
)
def test_validate_key_accepts(key: str) -> None:
    assert validate_key(key) == key


@pytest.mark.parametrize(
    ("check", "value"),
    [(validate_key, "originals/ab/cd\n"), (validate_file_id, "ab" * 16 + "\n")],
    ids=["key", "file-id"],
)
def test_a_trailing_newline_is_rejected(check: Callable[[str], str], value: str) -> None:
    with pytest.raises(ValueError, match="invalid"):
        check(value)


def test_key_builders_round_trip() -> None:
    file_id = new_id()
    original = original_key(file_id)
    assert original == f"originals/{file_id[:2]}/{file_id}"
    assert validate_key(original) == original
    assert file_id_of(original) == file_id
    for size, extension in [(256, "webp"), (1024, "jpg"), (64, "png")]:
        thumb = thumbnail_key(file_id, size, extension)
        assert thumb == f"{thumbnail_prefix(file_id)}/{size}.{extension}"
        assert thumb.startswith(f"thumbnails/{file_id[:2]}/{file_id}/")
        assert file_id_of(thumb) == file_id
    assert file_id_of(thumbnail_prefix(file_id)) == file_id


@pytest.mark.parametrize(
    "key",
    ["originals", "originals/ab", "tmp/ab/" + "ab" * 16, "originals/ab/" + "AB" * 16, "x/y/z"],
)
def test_file_id_of_other_keys_is_none(key: str) -> None:
    assert file_id_of(key) is None


@pytest.mark.parametrize("file_id", ["ab" * 16, "0" * 32, "0123456789abcdef" * 2])
def test_validate_file_id_accepts(file_id: str) -> None:
    assert validate_file_id(file_id) == file_id


@pytest.mark.parametrize(
    "file_id", ["", "ab" * 15, "ab" * 17, "AB" * 16, "g" * 32, "../" + "a" * 29, "ab" * 15 + "/x"]
)
def test_validate_file_id_rejects(file_id: str) -> None:
    with pytest.raises(ValueError, match="invalid file id"):
        validate_file_id(file_id)
    with pytest.raises(ValueError, match="invalid file id"):
        original_key(file_id)
    with pytest.raises(ValueError, match="invalid file id"):
        thumbnail_key(file_id, 256, "webp")


@pytest.mark.parametrize("extension", ["../x", "WEBP", "we bp", "x\\y"])
def test_thumbnail_key_refuses_odd_extensions(extension: str) -> None:
    with pytest.raises(ValueError, match="invalid storage key"):
        thumbnail_key(new_id(), 256, extension)
