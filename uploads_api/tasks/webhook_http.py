"""The HTTP side of sending webhooks, over aiohttp: a session whose connections go only to
addresses the policy checked, looked up when connecting (``GuardedResolver``), and one
``POST`` with the start of its answer kept.

The sender imports this module when it sends its first delivery: aiohttp and what it
loads take about 9 MiB, which a server with no webhook endpoints never needs.
"""

from __future__ import annotations

import socket

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from uploads_api.outbound import SendFailed, TargetPolicy


class GuardedResolver(AbstractResolver):
    """aiohttp's name resolution for outgoing connections, through the policy: every
    connection goes to an address that passed the checks, looked up when connecting."""

    def __init__(self, policy: TargetPolicy) -> None:
        self.policy = policy

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        address = await self.policy.address_of(host, port)
        return [
            ResolveResult(
                hostname=host,
                host=str(address),
                port=port,
                family=socket.AF_INET6 if address.version == 6 else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
        ]

    async def close(self) -> None:
        pass


class WebhookHttp:
    """One event loop's connections to webhook receivers: kept alive, at most
    ``connections`` at once, no proxies from the environment, no decompression."""

    def __init__(self, policy: TargetPolicy, timeout: float, connections: int) -> None:
        connector = aiohttp.TCPConnector(
            limit=connections, resolver=GuardedResolver(policy), use_dns_cache=False
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=timeout),
            trust_env=False,
            auto_decompress=False,
        )

    async def post(
        self, url: str, body: bytes, headers: dict[str, str], keep: int
    ) -> tuple[int, bytes]:
        """The answer's status and at most ``keep`` bytes of its body. Redirects are not
        followed. ``TargetRefused`` if the host's addresses fail the policy."""
        try:
            async with self._session.post(
                url, data=body, headers=headers, allow_redirects=False
            ) as response:
                kept = bytearray()
                while len(kept) < keep and (chunk := await response.content.readany()):
                    kept += chunk
                return response.status, bytes(kept[:keep])
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            raise SendFailed(reason) from exc

    async def close(self) -> None:
        await self._session.close()
