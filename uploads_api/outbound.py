"""Where the server may send requests of its own (webhooks): the guard against server-side
request forgery.

Only ``http`` and ``https``. The host is resolved when sending, every address it resolves
to is checked, and the connection goes to the checked address (never resolved again), so
a name cannot point somewhere else between the check and the connection. Addresses that
are not public are refused (loopback, private, shared, link-local with the cloud metadata
service, multicast, unspecified, reserved), in their IPv4-mapped IPv6 forms too, unless
``UPLOADS_WEBHOOK_ALLOW_PRIVATE`` is set. ``UPLOADS_WEBHOOK_ALLOWED_TARGETS`` narrows the
targets further: a host name must be listed by name (a name outside the list is never
looked up), an address literal must fall in a listed network.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Public addresses that answer as a cloud's metadata or host agent.
_METADATA = {ipaddress.ip_address("168.63.129.16")}


class TargetRefused(Exception):
    """A URL the server will not send to; the message says why."""


class SendFailed(Exception):
    """A request of the server's own got no answer (refused, reset, timed out, malformed);
    the message says what."""


@dataclass(frozen=True)
class Target:
    """A URL that passed the checks, and the address to connect to."""

    url: SplitResult
    host: str
    port: int
    address: IPAddress


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def _unmapped(address: IPAddress) -> IPAddress:
    if isinstance(address, ipaddress.IPv6Address):
        mapped = address.ipv4_mapped or address.sixtofour
        if mapped is not None:
            return mapped
        # ::a.b.c.d, the deprecated IPv4-compatible form.
        if int(address) >> 32 == 0 and int(address) > 1:
            return ipaddress.IPv4Address(int(address))
    return address


def _ascii_name(host: str) -> str:
    """The host name as DNS knows it (IDNA for a non-ASCII one), if it is a valid one."""
    try:
        name = host.encode("idna").decode("ascii")
    except UnicodeError:
        raise TargetRefused(f"{host!r} is not a valid host name") from None
    if re.fullmatch(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*", name) is None:
        raise TargetRefused(f"{host!r} is not a valid host name")
    return name


def not_public(address: IPAddress) -> str | None:
    """Why ``address`` is not a public unicast address, or ``None`` if it is one."""
    address = _unmapped(address)
    for kind, test in (
        ("loopback", address.is_loopback),
        ("unspecified", address.is_unspecified),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("private", address.is_private),
        ("a cloud metadata address", address in _METADATA),
        ("not globally reachable", not address.is_global),
    ):
        if test:
            return kind
    return None


class TargetPolicy:
    def __init__(self, *, allow_private: bool, allowed_targets: tuple[str, ...] = ()) -> None:
        self.allow_private = allow_private
        self.hosts: set[str] = set()
        self.networks: list[IPNetwork] = []
        for entry in allowed_targets:
            try:
                self.networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            except ValueError:
                self.hosts.add(entry.lower().rstrip("."))

    def check_url(self, url: str) -> tuple[SplitResult, str, int]:
        """The URL's parts, its host and port, if its form is acceptable; a literal
        address in it is checked here too."""
        try:
            parts = urlsplit(url)
        except ValueError as exc:
            raise TargetRefused(f"not a URL: {exc}") from None
        if parts.scheme not in ("http", "https"):
            raise TargetRefused("only http and https URLs are allowed")
        if parts.username is not None or parts.password is not None:
            raise TargetRefused("credentials in the URL are not allowed")
        try:
            host, port = parts.hostname, parts.port
        except ValueError as exc:
            raise TargetRefused(f"bad port: {exc}") from None
        if not host:
            raise TargetRefused("the URL has no host")
        host = host.lower().rstrip(".")
        literal = _literal(host)
        if literal is None:
            host = _ascii_name(host)
        if literal is not None:
            self.check_address(host, literal)
        return parts, host, port or (443 if parts.scheme == "https" else 80)

    def check_address(self, host: str, address: IPAddress) -> None:
        if not self.allow_private:
            reason = not_public(address)
            if reason is not None:
                raise TargetRefused(f"{host} is {address}, which is {reason}")
        if (self.hosts or self.networks) and host not in self.hosts:
            plain = _unmapped(address)
            if not any(plain in network or address in network for network in self.networks):
                raise TargetRefused(f"{address} is not in UPLOADS_WEBHOOK_ALLOWED_TARGETS")

    async def resolve(self, url: str) -> Target:
        """Check the URL, resolve its host and check every address it has."""
        parts, host, port = self.check_url(url)
        return Target(parts, host, port, await self.address_of(host, port))

    async def address_of(self, host: str, port: int) -> IPAddress:
        """The address to connect to for ``host``: a checked literal, or the first of the
        name's addresses once every one of them passed the checks."""
        host = host.lower().rstrip(".")
        literal = _literal(host)
        if literal is not None:
            self.check_address(host, literal)
            return literal
        if (self.hosts or self.networks) and host not in self.hosts:
            # Listed names only: a name outside the list is never even looked up.
            raise TargetRefused(f"{host} is not in UPLOADS_WEBHOOK_ALLOWED_TARGETS")
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM
            )
        except (OSError, UnicodeError) as exc:
            raise TargetRefused(f"{host} does not resolve: {exc}") from None
        addresses = list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))
        if not addresses:
            raise TargetRefused(f"{host} has no address")
        for address in addresses:
            self.check_address(host, address)
        return addresses[0]
