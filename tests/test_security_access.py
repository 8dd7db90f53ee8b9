"""Access control over real sockets: API keys, owners, admin keys, revocation, and the
refusal to serve an open server on a public interface. Quotas and the concurrent-upload cap:
test_security_limits.py."""

from __future__ import annotations

import hashlib
import re
import socket
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest

from tests import imagegen
from tests.conftest import ROOT, Server, ServerFactory, free_port
from tests.helpers import (
    MULTIPART_TYPE,
    assert_problem,
    bearer,
    cli_env,
    create_key,
    create_keys,
    file_part,
    multipart,
    wait_closed,
    wait_done,
    wait_for,
)

pytestmark = pytest.mark.e2e

KEY_FORMAT = re.compile(r"upk_[A-Za-z0-9_-]{43}")


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "uploads_api.cli", *args],
        capture_output=True,
        text=True,
        env=cli_env(),
        cwd=ROOT,
        timeout=60,
    )


# A server with two owners and an admin ------------------------------------------------------


@dataclass
class Keyed:
    server: Server
    alice: str
    bob: str
    admin: str
    text_id: str
    image_id: str
    image_sha256: str

    def client(self, key: str | None) -> httpx.Client:
        return httpx.Client(
            base_url=self.server.url, headers=bearer(key) if key else {}, timeout=30
        )


@pytest.fixture(scope="module")
def keyed(module_server_factory: ServerFactory, tmp_path_factory: pytest.TempPathFactory) -> Keyed:
    server = module_server_factory()
    keys = create_keys(server.data_dir, "alice", "bob", "ops", admin=("ops",))
    alice, bob, admin = keys["alice"], keys["bob"], keys["ops"]
    wait_closed(server)
    photo_dir = tmp_path_factory.mktemp("photo")
    photo = imagegen.jpeg_photo(photo_dir, size=(400, 300)).read_bytes()
    with httpx.Client(base_url=server.url, headers=bearer(alice), timeout=30) as http:
        text = http.put("/v1/files/secret.txt", content=b"alice's secret\n").json()
        image = http.post("/v1/files", files={"file": ("me.jpg", photo)}).json()["files"][0]
        wait_done(http, text["id"])
        assert wait_done(http, image["id"])["thumbnails"]
    return Keyed(server, alice, bob, admin, text["id"], image["id"], image["sha256"])


def test_keys_create_prints_the_key_alone_and_stores_only_its_hash(keyed: Keyed) -> None:
    done = cli("keys", "create", "dave", "--data-dir", str(keyed.server.data_dir))
    assert done.returncode == 0, done.stderr
    key = done.stdout.removesuffix("\n")
    assert KEY_FORMAT.fullmatch(key), done.stdout
    assert "only its hash is kept" in done.stderr
    listing = cli("keys", "list", "--data-dir", str(keyed.server.data_dir))
    assert listing.returncode == 0, listing.stderr
    rows = {line.split()[2]: line.split() for line in listing.stdout.splitlines()[1:]}
    assert {"alice", "bob", "ops", "dave"} <= set(rows)
    assert rows["dave"][1] == key[:10] and rows["ops"][3] == "True"
    for secret in (key, keyed.alice, keyed.bob, keyed.admin):
        assert secret not in listing.stdout
    with sqlite3.connect(keyed.server.data_dir / "uploads.db") as db:
        hashes = {row[0] for row in db.execute("select key_hash from api_keys")}
    assert hashlib.sha256(key.encode()).hexdigest() in hashes
    assert key not in hashes
    for path in keyed.server.data_dir.glob("uploads.db*"):
        assert key.encode() not in path.read_bytes()


ROUTES = {
    "list": ("GET", "/v1/files"),
    "upload": ("POST", "/v1/files"),
    "put": ("PUT", "/v1/files/sneaky.txt"),
    "check": ("POST", "/v1/files/check"),
    "get": ("GET", "/v1/files/{id}"),
    "content": ("GET", "/v1/files/{id}/content"),
    "thumbnail": ("GET", "/v1/files/{id}/thumbnails/256"),
    "delete": ("DELETE", "/v1/files/{id}"),
    "retry": ("POST", "/v1/files/{id}/retry"),
    "tasks": ("GET", "/v1/tasks"),
    "events": ("GET", "/v1/events"),
    "event-token": ("POST", "/v1/events/tokens"),
    "metrics": ("GET", "/metrics"),
}
CREDENTIALS = {
    "no-header": None,
    "unknown-key": "Bearer upk_" + "A" * 43,
    "basic-auth": "Basic YWxpY2U6cGFzc3dvcmQ=",
    "empty-bearer": "Bearer",
    "key-without-scheme": "upk_" + "A" * 43,
}


@pytest.mark.parametrize("credential", list(CREDENTIALS))
@pytest.mark.parametrize("route", list(ROUTES))
def test_every_api_route_needs_a_valid_key(keyed: Keyed, route: str, credential: str) -> None:
    method, template = ROUTES[route]
    path = template.format(id=keyed.image_id)
    header = CREDENTIALS[credential]
    headers = {"Authorization": header} if header else {}
    body = multipart(file_part(b"should never be stored"))
    response = httpx.request(
        method,
        keyed.server.url + path,
        headers={**headers, "Content-Type": MULTIPART_TYPE},
        content=body if method in ("POST", "PUT") else None,
    )
    assert_problem(response, 401, "unauthorized")
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "no-referrer"
    with keyed.client(keyed.admin) as admin:
        files = admin.get("/v1/files").json()["files"]
    assert {f["id"] for f in files} == {keyed.text_id, keyed.image_id}, "nothing added or lost"
    assert keyed.server.temp_files() == []


@pytest.mark.parametrize(
    "path", ["/healthz", "/readyz", "/", "/docs", "/openapi.json", "/static/app.js"]
)
def test_health_the_page_and_the_api_description_are_public(keyed: Keyed, path: str) -> None:
    response = httpx.get(keyed.server.url + path)
    assert response.status_code == 200, response.text
    if path == "/openapi.json":
        schemes = response.json()["components"]["securitySchemes"]
        assert any(s.get("scheme", "").lower() == "bearer" for s in schemes.values())


@pytest.mark.parametrize("method", ["GET", "OPTIONS"])
def test_other_origins_get_no_cors_grant_by_default(keyed: Keyed, method: str) -> None:
    """A page on another site cannot read the API with a visitor's browser."""
    headers = {
        **bearer(keyed.alice),
        "Origin": "https://evil.example",
        "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "authorization",
    }
    response = httpx.request(method, f"{keyed.server.url}/v1/files", headers=headers)
    assert not any(name.startswith("access-control-") for name in response.headers)


def _missing(response: httpx.Response, file_id: str) -> dict[str, str]:
    problem = assert_problem(response, 404, "not-found")
    # Word for word what an id that never existed gets: nothing tells the two apart.
    return {k: str(v).replace(file_id, "<id>") for k, v in problem.items()}


OTHER_OWNER_OPERATIONS = {
    "get": ("GET", "/v1/files/{id}", {}),
    "get-with-wait": ("GET", "/v1/files/{id}?wait=1", {}),
    "content": ("GET", "/v1/files/{id}/content", {}),
    "content-range": ("GET", "/v1/files/{id}/content", {"Range": "bytes=0-9"}),
    "thumbnail": ("GET", "/v1/files/{id}/thumbnails/256", {}),
    "delete": ("DELETE", "/v1/files/{id}", {}),
    "retry": ("POST", "/v1/files/{id}/retry", {}),
}


@pytest.mark.parametrize("operation", list(OTHER_OWNER_OPERATIONS))
def test_another_owners_file_is_not_found(keyed: Keyed, operation: str) -> None:
    method, template, headers = OTHER_OWNER_OPERATIONS[operation]
    never_existed = "0" * 32
    with keyed.client(keyed.bob) as bob, keyed.client(keyed.alice) as alice:
        theirs = bob.request(method, template.format(id=keyed.image_id), headers=headers)
        nobodys = bob.request(method, template.format(id=never_existed), headers=headers)
        assert _missing(theirs, keyed.image_id) == _missing(nobodys, never_existed)
        record = alice.get(f"/v1/files/{keyed.image_id}")
        assert record.status_code == 200, "untouched"
        assert record.json()["status"] == "ready" and record.json()["thumbnails"]
        assert alice.get(f"/v1/files/{keyed.image_id}/thumbnails/256").status_code == 200


def test_another_owners_file_cannot_be_listed_searched_or_checked(keyed: Keyed) -> None:
    with keyed.client(keyed.bob) as bob, keyed.client(keyed.alice) as alice:
        for params in ({}, {"sha256": keyed.image_sha256}, {"status": "ready"}, {"limit": 1000}):
            assert bob.get("/v1/files", params=params).json()["files"] == []
        assert bob.post("/v1/files/check", json={"sha256": [keyed.image_sha256]}).json() == {
            "present": [],
            "missing": [keyed.image_sha256],
        }
        mine = alice.get("/v1/files", params={"sha256": keyed.image_sha256}).json()["files"]
        assert [f["id"] for f in mine] == [keyed.image_id]
        assert alice.post("/v1/files/check", json={"sha256": [keyed.image_sha256]}).json() == {
            "present": [keyed.image_sha256],
            "missing": [],
        }


def test_tasks_show_an_owner_their_own_and_an_admin_all(keyed: Keyed) -> None:
    with (
        keyed.client(keyed.bob) as bob,
        keyed.client(keyed.alice) as alice,
        keyed.client(keyed.admin) as admin,
    ):
        bobs = bob.put("/v1/files/bob.txt", content=b"bob's own").json()["id"]
        wait_done(bob, bobs)
        try:
            seen = {
                name: http.get("/v1/tasks", params={"limit": 1000}).json()["tasks"]
                for name, http in (("alice", alice), ("bob", bob), ("admin", admin))
            }
            assert {t["file_id"] for t in seen["bob"]} == {bobs}
            assert {t["file_id"] for t in seen["alice"]} == {keyed.text_id, keyed.image_id}
            everyone = {t["file_id"] for t in seen["admin"]}
            assert {bobs, keyed.text_id, keyed.image_id} <= everyone
            assert None in everyone, "the admin sees the periodic sweeps too"
            skipped = bob.get("/v1/tasks", params={"state": "skipped"}).json()["tasks"]
            # A text file: no thumbnails, and so nothing to clean up.
            assert [t["file_id"] for t in skipped] == [bobs, bobs]
            assert {f["id"] for f in admin.get("/v1/files").json()["files"]} == everyone - {None}
            assert admin.get(f"/v1/files/{keyed.image_id}").status_code == 200
        finally:
            assert bob.delete(f"/v1/files/{bobs}").status_code == 204


def test_a_revoked_key_is_refused_within_the_cache_time(keyed: Keyed) -> None:
    key = create_key(keyed.server.data_dir, "carol")
    with keyed.client(key) as carol:
        wait_for(lambda: carol.get("/v1/files").status_code == 200, what="the new key")
        done = cli("keys", "revoke", key[:10], "--data-dir", str(keyed.server.data_dir))
        assert done.returncode == 0, done.stderr
        assert "revoked 1 key(s)" in done.stderr
        # Within the 2 s cache, and some slack for a busy machine.
        wait_for(lambda: carol.get("/v1/files").status_code == 401, timeout=5, what="revocation")
        problem = assert_problem(carol.get("/v1/tasks"), 401, "unauthorized")
        assert problem["detail"] == "the API key is not valid"
    listing = cli("keys", "list", "--data-dir", str(keyed.server.data_dir)).stdout
    (carol_row,) = [line for line in listing.splitlines() if " carol " in line]
    assert carol_row.split()[-1] != "-", "shown as revoked"
    again = cli("keys", "revoke", key[:10], "--data-dir", str(keyed.server.data_dir))
    assert again.returncode == 1


def test_revoking_the_last_key_does_not_reopen_the_server(server: Server) -> None:
    """Once a key has existed the server stays closed: otherwise revoking the last key
    would hand anyone admin access, even on a public interface."""
    key = create_key(server.data_dir, "solo")
    wait_closed(server)
    assert cli("keys", "revoke", "1", "--data-dir", str(server.data_dir)).returncode == 0
    time.sleep(2.5)  # past the authenticator's cache
    assert httpx.get(f"{server.url}/v1/files").status_code == 401
    assert httpx.get(f"{server.url}/v1/files", headers=bearer(key)).status_code == 401


# Refusing to serve an open server on a public interface --------------------------------------


@pytest.mark.parametrize("keys", ["no-key", "only-a-revoked-key"])
def test_an_open_server_refuses_a_public_interface(tmp_path: Path, keys: str) -> None:
    data_dir = tmp_path / "data"
    if keys == "only-a-revoked-key":
        create_key(data_dir, "gone")
        assert cli("keys", "revoke", "1", "--data-dir", str(data_dir)).returncode == 0
    port = free_port()
    done = cli("serve", "--host", "0.0.0.0", "--port", str(port), "--data-dir", str(data_dir))
    assert done.returncode == 2
    assert "refusing to serve on 0.0.0.0 without API keys" in done.stderr
    assert f"uploads-api keys create OWNER --data-dir {data_dir}" in done.stderr
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_a_public_interface_with_a_key_starts_closed(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    key = create_key(data_dir, "owner")
    server = Server(data_dir, {"UPLOADS_HOST": "0.0.0.0"}, tmp_path / "server.log")
    server.start()
    try:
        assert server.process is not None
        listening = [
            c.laddr
            for c in psutil.Process(server.process.pid).net_connections("tcp")
            if c.status == psutil.CONN_LISTEN
        ]
        assert [(a.ip, a.port) for a in listening] == [("0.0.0.0", server.port)]
        # Connections go to 127.0.0.1 only: loopback traffic.
        assert httpx.get(f"{server.url}/healthz").status_code == 200
        assert_problem(httpx.get(f"{server.url}/v1/files"), 401, "unauthorized")
        assert httpx.get(f"{server.url}/v1/files", headers=bearer(key)).status_code == 200
    finally:
        server.stop()
