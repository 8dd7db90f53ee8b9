"""``Idempotency-Key`` on uploads: a retried request gets the first one's answer instead of
storing its files again.

A request with a key claims it before reading its body. Another request with the same key
(and owner) meanwhile is refused with 409; once the first has recorded its files, its
answer is stored in the same transaction, and a later request with the key is read (its
files hashed, not stored) and, if it is the same request, answered with that answer
(``Idempotent-Replayed``), or else refused with 422. A request that fails lets go of its
key, so that its retry is processed anew.

"The same request" is the same ``fingerprint``: the method and path, and for each file in
order its cleaned name, size, SHA-256 of the bytes received and whether a checksum came with
it. Other form fields and headers are not part of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from uploads_api.db.idempotency import RUNNING, Completion, IdempotencyRepository, StoredKey
from uploads_api.db.models import FileRecord, NewFile
from uploads_api.errors import IdempotencyKeyInProgress, IdempotencyKeyReused
from uploads_api.storage.tempnames import temp_name, writer_is_gone

log = logging.getLogger(__name__)

# A claim lapses this many seconds after its last renewal, so a key held by a process that
# died elsewhere frees itself; one that died on this host is taken over at once.
LEASE = 60.0
CREATED = 201


def fingerprint(operation: str, files: Sequence[NewFile]) -> str:
    """What makes two requests the same: ``operation`` (method and path) and the files."""
    digest = hashlib.sha256(operation.encode())
    for item in files:
        facts = [item.filename, item.size, item.received_sha256 or item.sha256, item.verified]
        digest.update(b"\n" + json.dumps(facts).encode())
    return digest.hexdigest()


@dataclass(frozen=True)
class Answer:
    """An earlier request's answer, to send again."""

    status: int
    body: Any


@dataclass(frozen=True)
class Hold:
    """One request's hold on its key (``key`` is ``None`` for a request without one).
    ``earlier`` is a finished request's key: this request is read, not stored, and
    ``replay`` answers it."""

    owner: str
    key: str | None
    holder: str
    operation: str
    earlier: StoredKey | None = None

    def completion(
        self, files: Sequence[NewFile], render: Callable[[Sequence[FileRecord]], Any]
    ) -> Completion | None:
        """What to record with the files, under the key; ``None`` without a key."""
        if self.key is None:
            return None
        digest = fingerprint(self.operation, files)
        return Completion(self.owner, self.key, self.holder, digest, CREATED, render)

    def replay(self, files: Sequence[NewFile]) -> Answer:
        """The earlier answer, if this request is the one that got it."""
        assert self.earlier is not None and self.earlier.status is not None
        if fingerprint(self.operation, files) != self.earlier.fingerprint:
            raise IdempotencyKeyReused(
                "this Idempotency-Key was used for another request (other files, names or"
                " path); use a new key for a new request"
            )
        return Answer(self.earlier.status, self.earlier.body)


class IdempotencyKeys:
    def __init__(self, repository: IdempotencyRepository, ttl: float, lease: float = LEASE):
        self.repository = repository
        self.ttl = ttl
        self.lease = lease

    @contextlib.asynccontextmanager
    async def hold(self, owner: str | None, key: str | None, operation: str) -> AsyncIterator[Hold]:
        """Claim ``key`` for the request for the block; it is let go if the block raises
        before the answer is recorded. Raises ``IdempotencyKeyInProgress`` while another
        request holds it. Without a key, costs nothing."""
        # The process's name is in the holder, so a restarted server takes over at once
        # the keys a killed one held.
        hold = Hold(owner or "", key, temp_name(""), operation)
        if key is None:
            yield hold
            return
        found = await self._claim(hold)
        if found is not None:
            yield Hold(hold.owner, key, hold.holder, operation, earlier=found)
            return
        renewing = asyncio.create_task(self._renew(hold, key))
        try:
            yield hold
        except BaseException:
            await asyncio.shield(self._release(hold, key))
            raise
        finally:
            renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewing

    async def _claim(self, hold: Hold) -> StoredKey | None:
        assert hold.key is not None
        claim = self.repository.claim
        found = await claim(hold.owner, hold.key, hold.holder, ttl=self.ttl, lease=self.lease)
        if found is not None and found.state == RUNNING and writer_is_gone(found.holder):
            found = await claim(
                hold.owner,
                hold.key,
                hold.holder,
                ttl=self.ttl,
                lease=self.lease,
                replace=found.holder,
            )
        if found is not None and found.state == RUNNING:
            raise IdempotencyKeyInProgress(
                "another request with this Idempotency-Key is in progress; send this one"
                " again once it has ended"
            )
        return found

    async def _renew(self, hold: Hold, key: str) -> None:
        """Keep a long upload's hold from lapsing."""
        while True:
            await asyncio.sleep(self.lease / 3)
            try:
                if not await self.repository.renew(hold.owner, key, hold.holder, self.lease):
                    return
            except Exception:
                log.warning("could not renew the hold on an idempotency key", exc_info=True)

    async def _release(self, hold: Hold, key: str) -> None:
        try:
            await self.repository.release(hold.owner, key, hold.holder)
        except Exception:
            # Left to lapse: a retry gets 409 until then.
            log.warning("could not let go of an idempotency key", exc_info=True)
