"""The audit log through a real server: a row and a log line for key changes, uploads,
downloads, deletes, retries and failed authentications (one row per address and minute);
``GET /v1/audit`` for admin keys, its filters and pages; the retention sweep. The buffered
writer on its own: ``test_audit_buffer.py``."""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import imagegen
from tests.audit_helpers import AuditReader, Row
from tests.conftest import ROOT, Server, ServerFactory
from tests.helpers import (
    assert_problem,
    bearer,
    cli_env,
    create_keys,
    wait_closed,
    wait_done,
)
from uploads_api.db.audit import AuditRepository
from uploads_api.db.engine import create_engines
from uploads_api.db.models import AuditEntry
from uploads_api.db.tables import utcnow

# A server with two owners and an admin -------------------------------------------------------


@dataclass
class Audited(AuditReader):
    alice: str
    bob: str


@pytest.fixture(scope="module")
def audited(module_server_factory: ServerFactory) -> Audited:
    server = module_server_factory(log_format="json")
    keys = create_keys(server.data_dir, "alice", "bob", "ops", admin=("ops",))
    wait_closed(server)
    return Audited(server, keys["ops"], keys["alice"], keys["bob"])


def _audit_lines(server: Server) -> list[Row]:
    lines = [json.loads(line) for line in server.logs().splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("name") == "uploads_api.audit"]


def _flood(server: Server, count: int) -> list[str]:
    """``count`` requests with made-up keys, each on a new connection, from 127.0.0.2 (apart
    from the tests' other requests), all within one minute; the keys sent."""
    if time.time() % 60 > 40:
        time.sleep(60 - time.time() % 60 + 0.5)
    transport = httpx.HTTPTransport(local_address="127.0.0.2")
    bad_keys = ["upk_" + secrets.token_urlsafe(32) for _ in range(count)]
    with httpx.Client(base_url=server.url, transport=transport, timeout=30) as stranger:
        for key in bad_keys:
            headers = {**bearer(key), "Connection": "close"}
            assert_problem(stranger.get("/v1/files", headers=headers), 401, "unauthorized")
    return bad_keys


def _failures_from_the_flood(reader: AuditReader, count: int) -> list[Row]:
    def tallied(rows: list[Row]) -> bool:
        counted: int = sum(r["count"] for r in rows if r["address"] == "127.0.0.2")
        return counted >= count

    rows = reader.wait_rows(tallied, action="auth.failed")
    return [r for r in rows if r["address"] == "127.0.0.2"]


def _utc(at: str) -> datetime:
    when = datetime.fromisoformat(at)
    assert when.utcoffset() == timedelta(0), at
    return when


# Through the server ------------------------------------------------------------------------


@pytest.mark.e2e
def test_an_admin_sees_an_upload_a_download_a_retry_and_a_delete(
    audited: Audited, tmp_path: Path
) -> None:
    photo = imagegen.jpeg_photo(tmp_path, size=(300, 200))
    with audited.client(audited.alice) as alice:
        created = alice.put("/v1/files/photo.jpg", content=photo.read_bytes())
        assert created.status_code == 201, created.text
        file_id = created.json()["id"]
        record = wait_done(alice, file_id)
        # A thumbnail is not a download of the file's bytes: not audited.
        assert alice.get(record["thumbnails"][0]["url"]).status_code == 200
        assert alice.get(f"/v1/files/{file_id}/content").content == photo.read_bytes()
        assert alice.post(f"/v1/files/{file_id}/retry").status_code == 200
        assert alice.delete(f"/v1/files/{file_id}").status_code == 204

    rows = audited.wait_rows(
        lambda rows: len([r for r in rows if r["file_id"] == file_id]) == 4, owner="alice"
    )
    mine = [r for r in rows if r["file_id"] == file_id]
    # Newest first.
    assert [r["action"] for r in mine] == [
        "file.deleted",
        "file.retried",
        "file.downloaded",
        "file.uploaded",
    ]
    times = [_utc(r["at"]) for r in mine]
    assert times == sorted(times, reverse=True)
    assert abs(datetime.now(UTC) - times[0]) < timedelta(minutes=1)
    assert all(r["address"] == "127.0.0.1" and r["count"] == 1 for r in mine)
    assert all(r["owner"] == "alice" for r in mine)
    key_ids = {r["detail"]["key_id"] for r in mine}
    assert len(key_ids) == 1, "every row names the key that acted"
    by_action = {r["action"]: r for r in mine}
    uploaded = by_action["file.uploaded"]["detail"]
    assert (uploaded["size"], uploaded["content_type"]) == (photo.stat().st_size, "image/jpeg")
    assert by_action["file.downloaded"]["detail"]["bytes"] == photo.stat().st_size
    assert by_action["file.retried"]["detail"]["requeued"] == 0

    # The same four, as log lines with the row's fields.
    lines = [line for line in _audit_lines(audited.server) if line.get("file_id") == file_id]
    assert sorted(line["action"] for line in lines) == sorted(r["action"] for r in mine)
    assert all(line["owner"] == "alice" and line["address"] == "127.0.0.1" for line in lines)


@pytest.mark.e2e
def test_an_admin_acting_on_another_owners_file_is_recorded_as_such(audited: Audited) -> None:
    with audited.client(audited.bob) as bob:
        file_id = bob.put("/v1/files/b.txt", content=b"bob's").json()["id"]
    with audited.client(audited.admin) as admin:
        assert (
            admin.get(f"/v1/files/{file_id}/content", headers={"Range": "bytes=1-2"}).content
            == b"ob"
        )
        assert admin.delete(f"/v1/files/{file_id}").status_code == 204
    rows = audited.wait_rows(
        lambda rows: any(r["file_id"] == file_id for r in rows),
        owner="ops",
        action="file.downloaded",
    )
    rows = [r for r in rows if r["file_id"] == file_id]
    assert len(rows) == 1
    assert rows[0]["detail"]["file_owner"] == "bob"
    assert (rows[0]["detail"]["bytes"], rows[0]["detail"]["range"]) == (2, [1, 2])
    deleted = audited.wait_rows(
        lambda rows: any(r["file_id"] == file_id for r in rows), owner="ops", action="file.deleted"
    )
    assert [r["detail"]["file_owner"] for r in deleted if r["file_id"] == file_id] == ["bob"]


@pytest.mark.e2e
def test_a_key_that_is_not_an_admins_gets_403(audited: Audited) -> None:
    with audited.client(audited.alice) as alice:
        assert_problem(alice.get("/v1/audit"), 403, "forbidden")
        # Refused before anything else is looked at.
        assert_problem(alice.get("/v1/audit", params={"cursor": "nonsense"}), 403, "forbidden")
    with audited.client(None) as nobody:
        assert_problem(nobody.get("/v1/audit"), 401, "unauthorized")


@pytest.mark.e2e
def test_fifty_bad_keys_from_one_address_make_one_row_and_keep_no_key(audited: Audited) -> None:
    bad_keys = _flood(audited.server, 50)
    mine = _failures_from_the_flood(audited, 50)
    assert len(mine) == 1, mine
    assert mine[0]["count"] == 50
    assert (mine[0]["owner"], mine[0]["file_id"], mine[0]["detail"]) == (None, None, None)

    lines = [
        line
        for line in _audit_lines(audited.server)
        if line["action"] == "auth.failed" and line["address"] == "127.0.0.2"
    ]
    assert len(lines) == 50
    table, logs = audited.table(), audited.server.logs()
    for key in bad_keys:
        secret = key.removeprefix("upk_")
        for part in (secret, secret[:8], secret[-8:]):
            assert part not in table
            assert part not in logs


@pytest.mark.e2e
@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_two_processes_count_failures_into_one_row(
    server_factory: ServerFactory, request: pytest.FixtureRequest, database: str
) -> None:
    """Each process counts its own share in memory; the database row takes both."""
    settings: dict[str, object] = {"workers": 2}
    env = cli_env()
    if database == "postgresql":
        url: str = request.getfixturevalue("postgres_url")
        settings["database_url"] = url
        env["UPLOADS_DATABASE_URL"] = url
    server = server_factory(**settings)
    created = subprocess.run(
        [sys.executable, "-m", "uploads_api.cli", "keys", "create", "ops", "--admin"],
        capture_output=True,
        text=True,
        env={**env, "UPLOADS_DATA_DIR": str(server.data_dir)},
        cwd=ROOT,
        timeout=60,
        check=True,
    )
    reader = AuditReader(server, created.stdout.strip())
    wait_closed(server)
    _flood(server, 60)
    mine = _failures_from_the_flood(reader, 60)
    assert [r["count"] for r in mine] == [60]


@pytest.mark.e2e
def test_filters_and_cursor_pages(audited: Audited) -> None:
    owner = "bob"
    with audited.client(audited.bob) as bob:
        ids = [bob.put(f"/v1/files/{i}.txt", content=b"%d" % i).json()["id"] for i in range(5)]
    everything = audited.wait_rows(
        lambda rows: {r["file_id"] for r in rows} >= set(ids), owner=owner, action="file.uploaded"
    )
    newest = everything[:5]
    assert [r["file_id"] for r in newest] == ids[::-1]

    with audited.client(audited.admin) as admin:
        paged: list[Row] = []
        cursor = None
        for _ in range(10):
            params: dict[str, Any] = {"owner": owner, "action": "file.uploaded", "limit": 2}
            page = admin.get(
                "/v1/audit", params={**params, **({"cursor": cursor} if cursor else {})}
            )
            assert page.status_code == 200 and len(page.json()["items"]) <= 2
            paged += page.json()["items"]
            cursor = page.json()["next_cursor"]
            if cursor is None:
                break
        assert paged == everything
        assert len({r["id"] for r in paged}) == len(paged)

        # since is inclusive, until exclusive; any offset names the same instant.
        middle = newest[2]["at"]
        since = admin.get("/v1/audit", params={"owner": owner, "since": middle}).json()["items"]
        assert [r["id"] for r in since if r["action"] == "file.uploaded"] == [
            r["id"] for r in newest[:3]
        ]
        shifted = (_utc(middle) + timedelta(hours=2)).replace(tzinfo=None)
        as_offset = shifted.isoformat(timespec="microseconds") + "+02:00"
        again = admin.get("/v1/audit", params={"owner": owner, "since": as_offset}).json()["items"]
        assert again == since
        until = admin.get(
            "/v1/audit", params={"owner": owner, "action": "file.uploaded", "until": middle}
        ).json()["items"]
        assert [r["id"] for r in until][:2] == [r["id"] for r in newest[3:5]]

        assert admin.get("/v1/audit", params={"owner": "nobody-at-all"}).json() == {
            "items": [],
            "next_cursor": None,
        }
        for bad in (
            {"cursor": "abc"},
            {"cursor": ""},
            {"since": "yesterday"},
            {"until": "2026-01-01T00:00:00"},
            {"since": "2026-02-30T00:00:00Z"},
        ):
            assert_problem(admin.get("/v1/audit", params=bad), 400, "bad-request")
        assert_problem(
            admin.get("/v1/audit", params={"action": "file.eaten"}), 422, "validation-error"
        )
        assert_problem(admin.get("/v1/audit", params={"limit": 1001}), 422, "validation-error")


@pytest.mark.e2e
def test_key_create_and_revoke_on_the_command_line_leave_rows(audited: Audited) -> None:
    env = {**cli_env(), "UPLOADS_DATA_DIR": str(audited.server.data_dir)}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "uploads_api.cli", "keys", *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
            timeout=60,
            check=True,
        )

    key = cli("create", "carol").stdout.strip()
    cli("revoke", key[:10])
    # Written before each command returned.
    rows = audited.rows(owner="carol")
    assert [r["action"] for r in rows] == ["key.revoked", "key.created"]
    assert rows[0]["detail"]["key_id"] == rows[1]["detail"]["key_id"]
    assert rows[1]["detail"]["admin"] is False
    assert all(r["address"] is None for r in rows)
    assert key.removeprefix("upk_") not in audited.table()
    # The module's own keys, made before the server started answering to them.
    ops = audited.rows(owner="ops", action="key.created")
    assert [r["detail"]["admin"] for r in ops] == [True]


@pytest.mark.e2e
def test_the_sweep_removes_rows_past_the_retention(audited: Audited) -> None:
    now = utcnow()
    owner = "retired-" + secrets.token_hex(4)
    ages = {"old": timedelta(days=91), "week": timedelta(days=7), "fresh": timedelta(minutes=1)}
    url = f"sqlite+aiosqlite:///{audited.server.data_dir / 'uploads.db'}"

    async def inject() -> None:
        engines = create_engines(url)
        try:
            entries = [
                AuditEntry(at=now - age, action="file.deleted", owner=owner, file_id=name)
                for name, age in ages.items()
            ]
            await AuditRepository(engines).write(entries)
        finally:
            await engines.dispose()

    asyncio.run(inject())
    assert {r["file_id"] for r in audited.rows(owner=owner)} == set(ages)

    def sweep(**settings: str) -> str:
        env = {**cli_env(), **{f"UPLOADS_{k.upper()}": v for k, v in settings.items()}}
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "uploads_api.cli",
                "sweep",
                "--data-dir",
                str(audited.server.data_dir),
            ],
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
            timeout=60,
            check=True,
        )
        return done.stdout

    # The default keeps 90 days.
    assert "1 audit rows" in sweep()
    assert {r["file_id"] for r in audited.rows(owner=owner)} == {"week", "fresh"}
    assert "1 audit rows" in sweep(audit_retention=str(24 * 3600))
    assert {r["file_id"] for r in audited.rows(owner=owner)} == {"fresh"}
