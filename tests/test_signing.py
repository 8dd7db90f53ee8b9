"""The key ring: a key generated once (mode 0600) that processes starting together agree
on; tokens that verify with any key of the ring and only with them; expiry; tampering."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from tests.conftest import ROOT
from uploads_api.config import Settings
from uploads_api.signing import KEY_FILE, KeyRing, load_or_create_key

OLD = "o" * 43
NEW = "n" * 43
CLAIMS: dict[str, Any] = {"use": "test", "owner": "alice"}


def test_a_key_is_generated_once_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "data" / KEY_FILE
    key = load_or_create_key(path)
    assert len(key) >= 43 and path.read_text().strip() == key
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_or_create_key(path) == key
    assert list(path.parent.iterdir()) == [path], "no temporary file is left behind"
    token = KeyRing.load((), tmp_path / "data").sign(CLAIMS)
    assert KeyRing([key]).verify(token) == CLAIMS


def test_processes_starting_together_agree_on_one_key(tmp_path: Path) -> None:
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from uploads_api.signing import load_or_create_key\n"
        "time.sleep(max(0.0, float(sys.argv[2]) - time.time()))\n"
        "print(load_or_create_key(Path(sys.argv[1])))\n"
    )
    start = str(time.time() + 1.5)  # every process imports first, then all go at once
    path = tmp_path / KEY_FILE
    running = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(path), start],
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        for _ in range(6)
    ]
    keys = {process.communicate(timeout=60)[0].strip() for process in running}
    assert all(process.returncode == 0 for process in running)
    assert keys == {path.read_text().strip()}
    assert [p.name for p in tmp_path.iterdir()] == [KEY_FILE]


def test_an_empty_key_file_is_an_error_not_a_new_key(tmp_path: Path) -> None:
    (tmp_path / KEY_FILE).write_text("\n")
    with pytest.raises(ValueError, match="empty"):
        load_or_create_key(tmp_path / KEY_FILE)


def test_configured_keys_win_over_the_generated_one(tmp_path: Path) -> None:
    ring = KeyRing.load((NEW,), tmp_path)
    assert not (tmp_path / KEY_FILE).exists()
    assert KeyRing([NEW]).verify(ring.sign(CLAIMS)) == CLAIMS


def test_rotation_the_first_key_signs_and_every_key_verifies() -> None:
    rotating = KeyRing([NEW, OLD])
    signed_before = KeyRing([OLD]).sign(CLAIMS)
    assert rotating.verify(signed_before) == CLAIMS
    signed_now = rotating.sign(CLAIMS)
    assert KeyRing([NEW]).verify(signed_now) == CLAIMS
    assert KeyRing([OLD]).verify(signed_now) is None
    # The old key dropped: what it signed no longer verifies.
    assert KeyRing([NEW]).verify(signed_before) is None


def _encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_tampered_expired_and_malformed_tokens_do_not_verify() -> None:
    ring = KeyRing([NEW])
    token = ring.sign({**CLAIMS, "exp": time.time() + 60})
    body, signature = token.split(".")
    assert ring.verify(token) is not None
    forged = json.dumps({**CLAIMS, "owner": "mallory", "exp": time.time() + 60}).encode()
    for bad in [
        _encode(forged) + "." + signature,
        body + "." + signature[:-2],
        body + "." + _encode(b"\0" * 32),
        body,
        "",
        ".",
        "é." + signature,
        body + ".!!!",
        token + ".",  # characters the decoder would skip
        body + "." + signature[:4] + "=" + signature[4:],
        ring.sign({**CLAIMS, "exp": time.time() - 1}),
        ring.sign({**CLAIMS, "exp": "tomorrow"}),
        ring.sign({**CLAIMS, "exp": True}),
    ]:
        assert ring.verify(bad) is None, bad
    # Signed, but not a JSON object: no payload.
    list_body = _encode(b"[1, 2]")
    assert ring.verify(list_body + "." + ring.sign(CLAIMS).split(".")[1]) is None
    assert KeyRing([NEW]).verify(ring.sign(CLAIMS)) == CLAIMS, "no exp: no expiry"


def test_short_configured_keys_are_refused() -> None:
    with pytest.raises(ValidationError, match="at least 32 characters"):
        Settings(signing_key=f"{NEW},short")
    assert Settings(signing_key=f" {NEW} , {OLD} ").signing_key == (NEW, OLD)
