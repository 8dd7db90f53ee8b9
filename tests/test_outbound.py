"""The guard against server-side request forgery, as a unit: which addresses are refused,
in every form, and that a name is checked by what it resolves to. No test here sends
anything anywhere: resolution is replaced, and the sender's transport refuses any address
but loopback."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.db_helpers import open_repository
from tests.webhook_receiver import Receiver, receiver
from uploads_api.config import Settings
from uploads_api.db.deliveries import DeliveryRepository
from uploads_api.db.events import EventWriter
from uploads_api.db.tables import utcnow
from uploads_api.db.webhooks import EndpointRepository
from uploads_api.outbound import TargetPolicy, TargetRefused, not_public
from uploads_api.tasks.webhooks import WebhookSender

REFUSED = {
    "127.0.0.1": "loopback",
    "127.255.0.9": "loopback",
    "::1": "loopback",
    "10.0.0.1": "private",
    "172.16.0.1": "private",
    "172.31.255.254": "private",
    "192.168.1.1": "private",
    "fc00::1": "private",
    "fd12:3456::1": "private",
    "169.254.169.254": "link-local",
    "169.254.0.1": "link-local",
    "fe80::1": "link-local",
    "224.0.0.1": "multicast",
    "239.255.255.250": "multicast",
    "ff02::1": "multicast",
    "0.0.0.0": "unspecified",
    "::": "unspecified",
    "100.64.0.1": "not globally reachable",
    "168.63.129.16": "a cloud metadata address",
}


def _mapped(address: str) -> list[str]:
    """The IPv6 spellings of an IPv4 address that reach it."""
    if ":" in address:
        return []
    v4 = ipaddress.IPv4Address(address)
    return [
        f"::ffff:{v4}",
        f"::{v4}",
        str(ipaddress.IPv6Address((0x2002 << 112) | (int(v4) << 80))),
    ]


@pytest.mark.parametrize("address", [a for a in REFUSED] + [m for a in REFUSED for m in _mapped(a)])
def test_addresses_that_are_not_public_are_refused(address: str) -> None:
    reason = not_public(ipaddress.ip_address(address))
    assert reason is not None
    plain = address.split("::ffff:")[-1]
    if plain in REFUSED:
        assert reason == REFUSED[plain]


@pytest.mark.parametrize(
    "address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"]
)
def test_public_addresses_pass(address: str) -> None:
    assert not_public(ipaddress.ip_address(address)) is None


@pytest.fixture
def resolving(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, list[str]]]:
    """Replace name resolution: name -> its addresses. Looking up any other name fails the
    test, so nothing reaches a real resolver."""
    table: dict[str, list[str]] = {}

    async def getaddrinfo(
        self: asyncio.AbstractEventLoop, host: str, port: int, **_kw: Any
    ) -> list[tuple[Any, ...]]:
        assert host in table, f"{host} was looked up"
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
            for a in table[host]
        ]

    monkeypatch.setattr(asyncio.BaseEventLoop, "getaddrinfo", getaddrinfo)
    yield table


def resolve(policy: TargetPolicy, url: str) -> Any:
    return asyncio.run(policy.resolve(url))


@pytest.mark.parametrize(
    "address", ["127.0.0.1", "10.1.2.3", "169.254.169.254", "::ffff:10.0.0.1", "fd00::5"]
)
def test_a_name_resolving_to_a_refused_address_is_refused(
    resolving: dict[str, list[str]], address: str
) -> None:
    resolving["hooks.example"] = [address]
    with pytest.raises(TargetRefused, match=r"hooks\.example is"):
        resolve(TargetPolicy(allow_private=False), "https://hooks.example/in")


def test_one_refused_address_among_several_refuses_the_name(
    resolving: dict[str, list[str]],
) -> None:
    resolving["mixed.example"] = ["93.184.216.34", "127.0.0.1"]
    with pytest.raises(TargetRefused, match="loopback"):
        resolve(TargetPolicy(allow_private=False), "https://mixed.example/in")
    resolving["public.example"] = ["93.184.216.34"]
    target = resolve(TargetPolicy(allow_private=False), "https://public.example:8443/in")
    assert (str(target.address), target.host, target.port) == (
        "93.184.216.34",
        "public.example",
        8443,
    )


def test_forms_that_are_refused_without_any_lookup(resolving: dict[str, list[str]]) -> None:
    policy = TargetPolicy(allow_private=True)
    for url in (
        "ftp://a.example/",
        "file:///etc/passwd",
        "http://u:p@a.example/",
        "http:///x",
        "gopher://x",
    ):
        with pytest.raises(TargetRefused):
            resolve(policy, url)


def test_the_allow_list_names_hosts_and_networks(resolving: dict[str, list[str]]) -> None:
    policy = TargetPolicy(allow_private=True, allowed_targets=("hooks.internal", "10.0.0.0/8"))
    resolving["hooks.internal"] = ["192.168.5.5"]
    assert str(resolve(policy, "http://hooks.internal/").address) == "192.168.5.5"
    assert str(resolve(policy, "http://10.2.3.4/").address) == "10.2.3.4"
    with pytest.raises(TargetRefused, match="not in UPLOADS_WEBHOOK_ALLOWED_TARGETS"):
        resolve(policy, "http://192.168.1.1/")
    # Not listed: refused before any lookup (the fixture fails the test on one).
    with pytest.raises(TargetRefused, match="not in UPLOADS_WEBHOOK_ALLOWED_TARGETS"):
        resolve(policy, "http://elsewhere.example/")
    # Listing a name does not lift the private-address check.
    strict = TargetPolicy(allow_private=False, allowed_targets=("hooks.internal",))
    with pytest.raises(TargetRefused, match="private"):
        resolve(strict, "http://hooks.internal/")


@pytest.fixture
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every outgoing connection of the test: one to anything but loopback fails the test
    before it is made."""
    made: list[str] = []
    loop_class = asyncio.selector_events.BaseSelectorEventLoop
    sock_connect = loop_class.sock_connect

    async def guarded(self: asyncio.BaseEventLoop, sock: socket.socket, address: Any) -> None:
        host = address[0]
        assert ipaddress.ip_address(host).is_loopback, f"asked to connect to {host}"
        made.append(str(host))
        await sock_connect(self, sock, address)

    monkeypatch.setattr(loop_class, "sock_connect", guarded)
    return made


def test_the_sender_connects_to_the_checked_address_only(
    tmp_path: Path, resolving: dict[str, list[str]], loopback_only: list[str]
) -> None:
    resolving["receiver.example"] = ["127.0.0.1"]
    resolving["internal.example"] = ["10.9.9.9"]

    async def main(hook: Receiver) -> None:
        port = hook.url.split(":")[2].split("/")[0]
        async with open_repository(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}") as repo:
            writer = EventWriter(lambda record: {"id": record.id})
            endpoints = EndpointRepository(repo.engines)
            deliveries = DeliveryRepository(repo.engines, writer)
            good = await endpoints.create(None, f"http://receiver.example:{port}/hook", ["x"], "")
            bad = await endpoints.create(None, "https://internal.example/hook", ["x"], "")
            for endpoint in (good, bad):
                await deliveries.send_test(endpoint.id, None)
            settings = Settings(data_dir=tmp_path, webhook_allow_private=False)
            guarded = WebhookSender(
                settings, deliveries, endpoints, TargetPolicy(allow_private=False)
            )
            assert await guarded.deliver_due() == 2
            await guarded.close()
            (refused,) = await deliveries.list_deliveries(bad.id, state=None, limit=5, before=None)
            assert refused.state == "dead"
            assert refused.last_error is not None
            assert "10.9.9.9, which is private" in refused.last_error
            (also,) = await deliveries.list_deliveries(good.id, state=None, limit=5, before=None)
            assert also.state == "dead" and "loopback" in (also.last_error or "")
            assert loopback_only == [] and hook.received == []

            # Private targets allowed: the connection goes to the address that was checked,
            # with the name in Host.
            await deliveries.retry(good.id, also.id)
            sender = WebhookSender(
                settings, deliveries, endpoints, TargetPolicy(allow_private=True)
            )
            assert await sender.deliver_due() == 1
            await sender.close()
            assert loopback_only == ["127.0.0.1"]
            (request,) = hook.received
            assert request.headers["host"] == f"receiver.example:{port}"
            (sent,) = await deliveries.list_deliveries(good.id, state=None, limit=5, before=None)
            assert (sent.state, sent.last_status) == ("delivered", 200)
            assert sent.updated_at <= utcnow()

    with receiver() as hook:
        asyncio.run(main(hook))
