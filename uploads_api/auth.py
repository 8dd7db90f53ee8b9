"""Who is calling: API keys checked against their stored hashes, with a short cache.

Until the first key is created the server is open (and only allowed on loopback); from
then on every API route needs ``Authorization: Bearer <key>``, even after every key has
been revoked.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from uploads_api.db.keys import ApiKey, KeyRepository
from uploads_api.errors import Unauthorized

KEY_PREFIX = "upk_"
# Revocations and the first key take effect within this many seconds in every process.
CACHE_SECONDS = 2.0


@dataclass(frozen=True)
class Principal:
    owner: str | None
    admin: bool
    key_id: int | None = None
    # Where the request came from (the client's IP address), for the audit log.
    address: str | None = None

    @property
    def scope(self) -> str | None:
        """The owner whose files this caller may see; ``None`` means every file."""
        return None if self.admin else self.owner


OPEN = Principal(owner=None, admin=True)


def hash_key(key: str) -> str:
    # Keys carry 256 random bits, so a fast hash is enough: no dictionary to guess from.
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


class Authenticator:
    """Checks keys. Each answer is cached for ``CACHE_SECONDS``, and callers that miss the
    cache together share one query: a burst of uploads is one database read, not one each."""

    def __init__(self, keys: KeyRepository) -> None:
        self.keys = keys
        self._open_until = 0.0
        # Once a key has existed the server never opens again, so that needs no re-check.
        self._closed = False
        self._open_check: asyncio.Task[bool] | None = None
        self._cache: dict[str, tuple[float, ApiKey | None]] = {}
        self._lookups: dict[str, asyncio.Task[ApiKey | None]] = {}
        self._active: dict[int, tuple[float, bool]] = {}

    async def create(self, owner: str, *, admin: bool = False) -> tuple[str, ApiKey]:
        key = new_key()
        record = await self.keys.add(owner, hash_key(key), key[: len(KEY_PREFIX) + 6], admin)
        self._closed = True
        return key, record

    async def is_open(self) -> bool:
        if self._closed:
            return False
        if time.monotonic() < self._open_until:
            return True
        check = self._open_check
        if check is None or check.done() or check.get_loop() is not asyncio.get_running_loop():
            check = self._open_check = asyncio.ensure_future(self._check_open())
        return await asyncio.shield(check)

    async def _check_open(self) -> bool:
        if await self.keys.ever_created():
            self._closed = True
            return False
        self._open_until = time.monotonic() + CACHE_SECONDS
        return True

    async def authenticate(self, authorization: str | None) -> Principal:
        if await self.is_open():
            return OPEN
        token = _bearer_token(authorization)
        if token is None:
            raise Unauthorized("this server needs an API key: send Authorization: Bearer <key>")
        record = await self._lookup(hash_key(token))
        if record is None or record.revoked_at is not None:
            raise Unauthorized("the API key is not valid")
        return Principal(owner=record.owner, admin=record.admin, key_id=record.id)

    async def still_valid(self, principal: Principal) -> bool:
        """Whether a caller authenticated a while ago may still be served: its key is not
        revoked, or, without a key, the server is still open. For what outlives a request
        (an event stream, the token that opens one)."""
        if principal.key_id is None:
            return await self.is_open()
        cached = self._active.get(principal.key_id)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        record = await self.keys.by_id(principal.key_id)
        active = record is not None and record.revoked_at is None
        if len(self._active) > 10_000:
            self._active.clear()
        self._active[principal.key_id] = (time.monotonic() + CACHE_SECONDS, active)
        return active

    async def _lookup(self, key_hash: str) -> ApiKey | None:
        cached = self._cache.get(key_hash)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        lookup = self._lookups.get(key_hash)
        if lookup is None or lookup.get_loop() is not asyncio.get_running_loop():
            lookup = self._lookups[key_hash] = asyncio.ensure_future(self._fetch(key_hash))
            lookup.add_done_callback(lambda _done: self._lookups.pop(key_hash, None))
        return await asyncio.shield(lookup)

    async def _fetch(self, key_hash: str) -> ApiKey | None:
        record = await self.keys.by_hash(key_hash)
        # The lookup is by hash; compare again in constant time so no branch depends on
        # how much of a guessed key was right.
        if record is not None and not hmac.compare_digest(record.key_hash, key_hash):
            record = None
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[key_hash] = (time.monotonic() + CACHE_SECONDS, record)
        return record


def _bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()
