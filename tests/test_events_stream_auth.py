"""``GET /v1/events`` end to end, per caller: owners never see each other's events, and a
stream needs a key or a token; tokens valid, expired, tampered, of another use, signed with
a rotated-out key, or of a revoked key. Every read has a timeout, so no test can hang.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import pytest

from tests.conftest import ROOT, Server, ServerFactory
from tests.event_stream_helpers import kinds, open_stream, upload
from tests.helpers import (
    assert_problem,
    bearer,
    cli_env,
    create_key,
    create_keys,
    wait_closed,
    wait_for,
)
from uploads_api.signing import KeyRing

pytestmark = pytest.mark.e2e

OLD_KEY = "old-signing-key-" + "o" * 32
NEW_KEY = "new-signing-key-" + "n" * 32


@dataclass(frozen=True)
class Keyed:
    server: Server
    keys: dict[str, str]


@pytest.fixture(scope="module")
def keyed(module_server_factory: ServerFactory) -> Keyed:
    # The new key signs; the old one still verifies (a rotation in progress).
    server = module_server_factory(event_stream_heartbeat=0.5, signing_key=f"{NEW_KEY},{OLD_KEY}")
    keys = create_keys(server.data_dir, "alice", "bob", "admin", admin=("admin",))
    wait_closed(server)
    return Keyed(server, keys)


def test_another_owners_events_never_appear(keyed: Keyed) -> None:
    server, keys = keyed.server, keyed.keys
    with (
        open_stream(server, keys["alice"]) as alice,
        open_stream(server, keys["bob"]) as bob,
        open_stream(server, keys["admin"]) as admin,
    ):
        alices = upload(server, keys["alice"], "alice.txt")
        bobs = upload(server, keys["bob"], "bob.txt")
        # Each owner's stream, up to its second file's event: nothing of the other's.
        last = upload(server, keys["alice"], "alice-last.txt")
        alice_seen = alice.events(4)
        assert {f.file_id for f in alice_seen} == {alices, last}, kinds(alice_seen)
        bob_last = upload(server, keys["bob"], "bob-last.txt")
        bob_seen = bob.events(4)
        assert {f.file_id for f in bob_seen} == {bobs, bob_last}, kinds(bob_seen)
        assert {f.file_id for f in admin.events(8)} == {alices, bobs, last, bob_last}
    # Resuming from another owner's event is resuming from an unknown one.
    with open_stream(
        server, keys["bob"], headers={"Last-Event-ID": alice_seen[0].id}, params={"wait": 0}
    ) as stream:
        frames = stream.rest()
    assert frames and frames[0].is_comment and "unknown" in frames[0].lines[0]
    assert all(f.is_comment or f.file_id not in {alices, last} for f in frames)


def test_a_stream_needs_a_key_or_a_token(keyed: Keyed) -> None:
    response = httpx.get(f"{keyed.server.url}/v1/events", timeout=10)
    assert_problem(response, 401, "unauthorized")
    assert response.headers["www-authenticate"] == 'Bearer realm="uploads-api"'
    assert_problem(
        httpx.post(f"{keyed.server.url}/v1/events/tokens", timeout=10), 401, "unauthorized"
    )


def issue(keyed: Keyed, owner: str) -> dict[str, Any]:
    response = httpx.post(
        f"{keyed.server.url}/v1/events/tokens", headers=bearer(keyed.keys[owner]), timeout=10
    )
    assert response.status_code == 201, response.text
    issued: dict[str, Any] = response.json()
    return issued


def test_a_token_opens_the_callers_stream_without_a_header(keyed: Keyed) -> None:
    issued = issue(keyed, "alice")
    assert set(issued) == {"token", "expires_at"}
    left = datetime.fromisoformat(issued["expires_at"]).timestamp() - time.time()
    assert 55 < left <= 60, issued["expires_at"]
    with open_stream(keyed.server, params={"token": issued["token"]}) as stream:
        bobs = upload(keyed.server, keyed.keys["bob"], "bob.txt")
        alices = upload(keyed.server, keyed.keys["alice"], "alice.txt")
        assert {f.file_id for f in stream.events(2)} == {alices}
    assert bobs != alices
    # The new key (first in UPLOADS_SIGNING_KEY) signs.
    assert KeyRing([NEW_KEY]).verify(issued["token"]) is not None
    assert KeyRing([OLD_KEY]).verify(issued["token"]) is None


def payload_for(owner: str, *, expires_in: float = 60, use: str = "events") -> dict[str, Any]:
    return {
        "use": use,
        "owner": owner,
        "admin": False,
        "key": None,
        "exp": time.time() + expires_in,
    }


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("expired", lambda: KeyRing([NEW_KEY]).sign(payload_for("alice", expires_in=-1))),
        ("another use", lambda: KeyRing([NEW_KEY]).sign(payload_for("alice", use="link"))),
        ("unknown key", lambda: KeyRing(["some-other-key-" + "x" * 32]).sign(payload_for("alice"))),
        ("not a token", lambda: "abc.def"),
    ],
)
def test_a_bad_token_is_refused(keyed: Keyed, name: str, make: Any) -> None:
    response = httpx.get(f"{keyed.server.url}/v1/events", params={"token": make()}, timeout=10)
    problem = assert_problem(response, 401, "unauthorized")
    assert "token" in problem["detail"], name


def test_a_tampered_token_is_refused(keyed: Keyed) -> None:
    token = issue(keyed, "bob")["token"]
    body, signature = token.split(".")
    claims = KeyRing([NEW_KEY]).verify(token)
    assert claims is not None and claims["owner"] == "bob"
    claims["owner"] = "alice"
    forged = _encode(json.dumps(claims, separators=(",", ":")).encode()) + "." + signature
    response = httpx.get(f"{keyed.server.url}/v1/events", params={"token": forged}, timeout=10)
    assert_problem(response, 401, "unauthorized")
    flipped = body + "." + ("A" if signature[0] != "A" else "B") + signature[1:]
    response = httpx.get(f"{keyed.server.url}/v1/events", params={"token": flipped}, timeout=10)
    assert_problem(response, 401, "unauthorized")


def _encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_a_token_signed_with_a_key_being_rotated_out_still_opens(keyed: Keyed) -> None:
    """UPLOADS_SIGNING_KEY=new,old: what the old key signed verifies until it is dropped."""
    alice_id = _key_id(keyed, "alice")
    old = KeyRing([OLD_KEY]).sign(
        {
            "use": "events",
            "owner": "alice",
            "admin": False,
            "key": alice_id,
            "exp": time.time() + 30,
        }
    )
    with open_stream(keyed.server, params={"token": old, "wait": 0}) as stream:
        assert stream.rest() == []


def _key_id(keyed: Keyed, owner: str) -> int:
    token = issue(keyed, owner)["token"]
    claims = KeyRing([NEW_KEY]).verify(token)
    assert claims is not None
    key_id: int = claims["key"]
    return key_id


def test_a_revoked_keys_stream_ends_and_its_tokens_stop_working(keyed: Keyed) -> None:
    key = create_key(keyed.server.data_dir, "carol")
    carol = Keyed(keyed.server, {"carol": key})
    wait_for(
        lambda: httpx.get(f"{keyed.server.url}/v1/files", headers=bearer(key)).status_code == 200
    )
    token = issue(carol, "carol")["token"]
    with open_stream(keyed.server, key) as stream:
        command = ["keys", "revoke", key[:10], "--data-dir", str(keyed.server.data_dir)]
        revoked = subprocess.run(
            [sys.executable, "-m", "uploads_api.cli", *command],
            capture_output=True,
            text=True,
            env=cli_env(),
            cwd=ROOT,
            timeout=60,
        )
        assert revoked.returncode == 0, revoked.stderr
        frames = stream.rest()  # heartbeat 0.5 s, key answers cached 2 s
    assert frames[-1].lines == (": the API key is no longer valid",)
    response = httpx.get(f"{keyed.server.url}/v1/events", params={"token": token}, timeout=10)
    assert_problem(response, 401, "unauthorized")
