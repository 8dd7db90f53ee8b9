"""Webhooks end to end: a real server sends to a real receiver on loopback, which checks
every request with the ``standardwebhooks`` package; retries, dead deliveries, 410 Gone,
owners, the environment's endpoint, and a server killed while a delivery is in flight."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import Server, ServerFactory
from tests.helpers import assert_problem, bearer, create_keys, wait_done, wait_for
from tests.webhook_receiver import Receiver, receiver

# Loopback receivers are private addresses: allowed here, as on a private network.
HOOKED = {"webhook_allow_private": "true", "webhook_retry_schedule": "0.3,0.3,0.6"}


@pytest.fixture
def hook() -> Iterator[Receiver]:
    with receiver() as listening:
        yield listening


def subscribe(http: httpx.Client, hook: Receiver, **fields: Any) -> dict[str, Any]:
    response = http.post("/v1/webhooks", json={"url": hook.url} | fields)
    assert response.status_code == 201, response.text
    endpoint: dict[str, Any] = response.json()
    assert endpoint["secret"].startswith("whsec_")
    hook.secret = endpoint["secret"]
    return endpoint


def upload_text(http: httpx.Client, text: bytes = b"hello webhooks") -> dict[str, Any]:
    response = http.post("/v1/files", files={"file": ("note.txt", text, "text/plain")})
    assert response.status_code == 201, response.text
    record: dict[str, Any] = response.json()["files"][0]
    return record


def deliveries(http: httpx.Client, endpoint_id: str, **query: str) -> list[dict[str, Any]]:
    response = http.get(f"/v1/webhooks/{endpoint_id}/deliveries", params=query)
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["deliveries"]
    return found


def settled(http: httpx.Client, endpoint_id: str, count: int) -> list[dict[str, Any]]:
    """The endpoint's deliveries once ``count`` of them are no longer pending."""
    found: list[dict[str, Any]] = []

    def done() -> bool:
        nonlocal found
        found = deliveries(http, endpoint_id)
        finished: int = sum(d["state"] != "pending" for d in found)
        return finished >= count

    wait_for(done, timeout=30)
    return found


@pytest.fixture
def hooked(server_factory: ServerFactory) -> Iterator[tuple[Server, httpx.Client]]:
    server = server_factory(**HOOKED)
    with httpx.Client(base_url=server.url, timeout=30) as http:
        yield server, http


def test_events_arrive_signed_with_the_record_as_the_api_answers_it(
    hooked: tuple[Server, httpx.Client], hook: Receiver
) -> None:
    _server, http = hooked
    endpoint = subscribe(http, hook, description="indexer")
    assert {"id", "url", "events", "description", "enabled", "created_at"} <= set(endpoint)
    assert endpoint["events"] == [
        "file.created",
        "file.ready",
        "file.failed",
        "file.deleted",
        "upload.expired",
    ]
    record = upload_text(http)
    final = wait_done(http, record["id"])
    hook.wait_for(2)
    (created,) = hook.of_type("file.created")
    (ready,) = hook.of_type("file.ready")
    for got in (created, ready):
        assert got.verified, got.headers
        assert got.headers["content-type"] == "application/json"
        assert got.headers["webhook-id"].startswith("msg_")
        assert got.payload["timestamp"].endswith("Z")
    assert created.payload["data"]["id"] == record["id"]
    assert created.payload["data"] == record
    assert ready.payload["data"] == final
    # The listing names each event by its webhook-id.
    listed = {d["event_id"]: d for d in settled(http, endpoint["id"], 2)}
    for got in (created, ready):
        delivery = listed[got.headers["webhook-id"]]
        assert (delivery["state"], delivery["attempts"], delivery["last_status"]) == (
            "delivered",
            1,
            200,
        )
        assert delivery["type"] == got.payload["type"]
        assert delivery["last_response"] == '{"ok": true}'
    # The secret is shown once only.
    shown = http.get(f"/v1/webhooks/{endpoint['id']}").json()
    assert "secret" not in shown
    assert shown["description"] == "indexer"


def test_a_receiver_failing_three_times_gets_four_attempts_of_one_webhook_id(
    hooked: tuple[Server, httpx.Client], hook: Receiver
) -> None:
    _server, http = hooked
    hook.answer = lambda n: 500 if n < 3 else 200
    endpoint = subscribe(http, hook, events=["file.created"])
    upload_text(http)
    attempts = hook.wait_for(4)
    assert [a.answered for a in attempts] == [500, 500, 500, 200]
    assert len({a.headers["webhook-id"] for a in attempts}) == 1
    assert all(a.verified for a in attempts)
    (delivery,) = settled(http, endpoint["id"], 1)
    assert (delivery["state"], delivery["attempts"], delivery["last_status"]) == (
        "delivered",
        4,
        200,
    )
    assert len(hook.received) == 4


def test_a_receiver_that_always_fails_ends_dead_and_can_be_retried(
    hooked: tuple[Server, httpx.Client], hook: Receiver
) -> None:
    _server, http = hooked
    hook.answer = lambda n: 503 if n < 4 else 200
    endpoint = subscribe(http, hook, events=["file.created"])
    upload_text(http)
    hook.wait_for(4)
    (dead,) = settled(http, endpoint["id"], 1)
    assert (dead["state"], dead["attempts"], dead["last_status"]) == ("dead", 4, 503)
    assert dead["next_attempt_at"] is None
    assert dead["last_error"] == "the receiver answered 503"
    assert len(dead["last_response"]) == 1024  # the first KiB of a longer answer
    assert deliveries(http, endpoint["id"], state="pending") == []
    assert [d["id"] for d in deliveries(http, endpoint["id"], state="dead")] == [dead["id"]]

    again = http.post(f"/v1/webhooks/{endpoint['id']}/deliveries/{dead['id']}/retry")
    assert again.status_code == 202, again.text
    attempts = hook.wait_for(5)
    assert attempts[4].headers["webhook-id"] == attempts[0].headers["webhook-id"]
    wait_for(lambda: deliveries(http, endpoint["id"])[0]["state"] == "delivered")


def test_redirects_are_not_followed(hooked: tuple[Server, httpx.Client], hook: Receiver) -> None:
    _server, http = hooked
    with receiver() as elsewhere:
        hook.answer = lambda _n: 307
        hook.location = elsewhere.url
        endpoint = subscribe(http, hook, events=["file.created"])
        upload_text(http)
        (dead,) = settled(http, endpoint["id"], 1)
        assert (dead["state"], dead["attempts"], dead["last_status"]) == ("dead", 4, 307)
        assert elsewhere.received == []


def test_410_gone_disables_the_endpoint_until_it_is_enabled_again(
    hooked: tuple[Server, httpx.Client], hook: Receiver
) -> None:
    _server, http = hooked
    hook.answer = lambda n: 410 if n == 0 else 200
    endpoint = subscribe(http, hook, events=["file.created"])
    upload_text(http, b"first")
    hook.wait_for(1)
    (gone,) = settled(http, endpoint["id"], 1)
    assert (gone["state"], gone["last_status"]) == ("dead", 410)
    shown = http.get(f"/v1/webhooks/{endpoint['id']}").json()
    assert shown["enabled"] is False
    assert "410" in shown["disabled_reason"]

    upload_text(http, b"second, while disabled")
    enabled = http.patch(f"/v1/webhooks/{endpoint['id']}", json={"enabled": True})
    assert enabled.status_code == 200, enabled.text
    assert (enabled.json()["enabled"], enabled.json()["disabled_reason"]) == (True, None)
    upload_text(http, b"third")
    # Events of the time it was disabled were not queued for it.
    second = hook.wait_for(2)[1]
    assert second.payload["data"]["size"] == len(b"third")
    assert len(settled(http, endpoint["id"], 2)) == 2


def test_deleted_and_failed_files_carry_their_records(
    hooked: tuple[Server, httpx.Client], hook: Receiver
) -> None:
    _server, http = hooked
    subscribe(http, hook, events=["file.deleted", "file.failed"])
    record = upload_text(http)
    wait_done(http, record["id"])
    as_it_was = http.get(f"/v1/files/{record['id']}").json()
    assert http.delete(f"/v1/files/{record['id']}").status_code == 204
    broken = http.post(
        "/v1/files",
        files={"file": ("broken.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "image/png")},
    ).json()["files"][0]
    failed = wait_done(http, broken["id"])
    assert failed["status"] == "failed"
    hook.wait_for(2)
    (deleted,) = hook.of_type("file.deleted")
    assert deleted.payload["data"] == as_it_was
    (failure,) = hook.of_type("file.failed")
    assert failure.payload["data"]["id"] == broken["id"]
    errors = [t["error"] for t in failure.payload["data"]["tasks"] if t["state"] == "failed"]
    assert errors and all(errors)
    assert not hook.of_type("file.created")


def test_test_event_goes_to_that_endpoint_only(
    hooked: tuple[Server, httpx.Client], hook: Receiver
) -> None:
    _server, http = hooked
    endpoint = subscribe(http, hook)
    with receiver() as other:
        subscribe(http, other)
        response = http.post(f"/v1/webhooks/{endpoint['id']}/test")
        assert response.status_code == 202, response.text
        assert response.json()["type"] == "webhook.test"
        (got,) = hook.wait_for(1)
        assert got.verified
        assert got.payload["data"] == {"endpoint_id": endpoint["id"]}
        assert got.headers["webhook-id"] == response.json()["event_id"]
        assert other.received == []


def test_endpoints_belong_to_their_owner(server_factory: ServerFactory, hook: Receiver) -> None:
    server = server_factory(**HOOKED)
    keys = create_keys(server.data_dir, "alice", "bob", "root", admin=("root",))
    with (
        httpx.Client(base_url=server.url, headers=bearer(keys["alice"]), timeout=30) as alice,
        httpx.Client(base_url=server.url, headers=bearer(keys["bob"]), timeout=30) as bob,
        httpx.Client(base_url=server.url, headers=bearer(keys["root"]), timeout=30) as root,
    ):
        endpoint = subscribe(alice, hook, events=["file.created"])
        assert_problem(bob.get(f"/v1/webhooks/{endpoint['id']}"), 404, "not-found")
        assert_problem(bob.delete(f"/v1/webhooks/{endpoint['id']}"), 404, "not-found")
        assert bob.get("/v1/webhooks").json()["endpoints"] == []
        assert [e["id"] for e in root.get("/v1/webhooks").json()["endpoints"]] == [endpoint["id"]]
        upload_text(bob, b"bob's")
        mine = upload_text(alice, b"alice's")
        (got,) = hook.wait_for(1)
        assert got.payload["data"]["id"] == mine["id"]
        assert len(hook.received) == 1
        assert alice.delete(f"/v1/webhooks/{endpoint['id']}").status_code == 204

        def audited() -> list[dict[str, Any]]:
            rows: list[dict[str, Any]] = root.get("/v1/audit", params={"owner": "alice"}).json()[
                "items"
            ]
            return [row for row in rows if row["action"].startswith("webhook.")]

        wait_for(lambda: len(audited()) == 2, timeout=10)
        deleted, created = audited()
        assert (created["action"], deleted["action"]) == ("webhook.created", "webhook.deleted")
        assert created["detail"]["endpoint_id"] == endpoint["id"]
        assert "secret" not in created["detail"]


def test_the_environment_endpoint_takes_every_owners_events(
    server_factory: ServerFactory, hook: Receiver
) -> None:
    secret = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    hook.secret = secret
    server = server_factory(
        **HOOKED, webhook_url=hook.url.replace("127.0.0.1", "localhost"), webhook_secret=secret
    )
    keys = create_keys(server.data_dir, "alice", "bob")
    for owner in ("alice", "bob"):
        with httpx.Client(base_url=server.url, headers=bearer(keys[owner])) as http:
            wait_done(http, upload_text(http, owner.encode())["id"])
    received = hook.wait_for(4)
    assert all(r.verified for r in received)
    assert sorted(r.payload["data"]["filename"] for r in hook.of_type("file.ready")) == [
        "note.txt",
        "note.txt",
    ]


def test_a_delivery_in_flight_when_the_server_is_killed_is_sent_after_restart(
    server_factory: ServerFactory,
) -> None:
    release = threading.Event()
    with receiver() as hook:

        def answer(n: int) -> int:
            if n == 0:
                release.wait(30)  # the first attempt hangs until the server is dead
            return 200

        hook.answer = answer
        server = server_factory(**HOOKED, webhook_timeout="2")
        with httpx.Client(base_url=server.url, timeout=30) as http:
            subscribe(http, hook, events=["file.created"])
            record = upload_text(http)
        hook.wait_for(1)  # the first attempt has arrived, and hangs
        server.kill()
        release.set()
        server.start()
        attempts = hook.wait_for(2, timeout=60)
        assert len({a.headers["webhook-id"] for a in attempts}) == 1
        assert attempts[-1].payload["data"]["id"] == record["id"]
        assert attempts[-1].verified


def test_loopback_targets_are_refused_unless_private_targets_are_allowed(
    server: Server, client: httpx.Client, hook: Receiver
) -> None:
    port = hook.url.split(":")[2].split("/")[0]
    for url in (
        f"http://127.0.0.1:{port}/hook",
        f"http://127.1.2.3:{port}/hook",
        f"http://[::1]:{port}/hook",
        f"http://[::ffff:127.0.0.1]:{port}/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/",
        "http://0.0.0.0/",
        f"http://user:secret@localhost:{port}/hook",
        f"http://local host:{port}/hook",
    ):
        problem = assert_problem(
            client.post("/v1/webhooks", json={"url": url}), 422, "webhook-target-refused"
        )
        assert problem["url"] == url
    assert_problem(
        client.post("/v1/webhooks", json={"url": f"ftp://localhost:{port}/"}),
        422,
        "validation-error",
    )
    # A name is checked when sending: localhost resolves to loopback; a name outside
    # UPLOADS_WEBHOOK_ALLOWED_TARGETS is not even looked up.
    endpoint = subscribe(client, hook, url=hook.url.replace("127.0.0.1", "localhost"))
    elsewhere = subscribe(client, hook, url="https://hooks.example.com/uploads")
    upload_text(client)
    for delivery in settled(client, endpoint["id"], 2):
        assert delivery["state"] == "dead"
        assert delivery["last_status"] is None
        assert delivery["last_error"].startswith("refused: localhost is ")
        assert "loopback" in delivery["last_error"]
    for delivery in settled(client, elsewhere["id"], 2):
        assert delivery["state"] == "dead"
        assert delivery["last_error"] == (
            "refused: hooks.example.com is not in UPLOADS_WEBHOOK_ALLOWED_TARGETS"
        )
    assert hook.received == []
