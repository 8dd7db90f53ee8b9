"""Key checks under a burst: callers that miss the cache together share one query."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any, cast

import pytest

from uploads_api.auth import Authenticator, hash_key
from uploads_api.db.keys import ApiKey, KeyRepository
from uploads_api.errors import Unauthorized


class CountingKeys:
    """A key store that answers slowly and counts the questions."""

    def __init__(self, keys: dict[str, ApiKey]) -> None:
        self.keys = keys
        self.queries = 0

    async def ever_created(self) -> bool:
        self.queries += 1
        await asyncio.sleep(0.05)
        return bool(self.keys)

    async def by_hash(self, key_hash: str) -> ApiKey | None:
        self.queries += 1
        await asyncio.sleep(0.05)
        return self.keys.get(key_hash)


def _authenticator(store: CountingKeys) -> Authenticator:
    return Authenticator(cast(KeyRepository, cast(Any, store)))


def test_an_open_server_asks_once_for_a_burst() -> None:
    store = CountingKeys({})

    async def main() -> None:
        auth = _authenticator(store)
        principals = await asyncio.gather(*(auth.authenticate(None) for _ in range(200)))
        assert all(p.owner is None and p.admin for p in principals)
        assert store.queries == 1

    asyncio.run(main())


def test_a_closed_server_never_asks_again_whether_it_is_open() -> None:
    key = "upk_" + "k" * 43
    record = ApiKey(1, "alice", hash_key(key), key[:10], False, datetime(2026, 1, 1), None)
    store = CountingKeys({hash_key(key): record})

    async def main() -> None:
        auth = _authenticator(store)
        principals = await asyncio.gather(*(auth.authenticate(f"Bearer {key}") for _ in range(100)))
        assert {p.owner for p in principals} == {"alice"}
        # One "is any key made?" and one lookup of the key, for the whole burst.
        assert store.queries == 2
        with pytest.raises(Unauthorized):
            await auth.authenticate(None)
        with pytest.raises(Unauthorized):
            await auth.authenticate("Bearer upk_wrong")
        assert store.queries == 3  # the wrong key was looked up; openness was not

    asyncio.run(main())
