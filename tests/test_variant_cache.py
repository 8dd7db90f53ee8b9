"""The cap on stored variants, without a server: rows per variant (owner, size, last use),
last uses written in batches, and the sweep holding each owner's variants under
UPLOADS_VARIANT_CACHE_BYTES, least recently used first; on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

from tests.db_helpers import new_file, open_repository
from uploads_api.config import Settings
from uploads_api.db.audit import AuditRepository
from uploads_api.db.deliveries import DeliveryRepository
from uploads_api.db.direct_uploads import DirectUploadRepository
from uploads_api.db.events import EventWriter
from uploads_api.db.idempotency import IdempotencyRepository
from uploads_api.db.tables import utcnow
from uploads_api.db.tus_uploads import TusUploadRepository
from uploads_api.db.variant_uses import VariantUses
from uploads_api.db.variants import VariantRepository
from uploads_api.file_json import render_file
from uploads_api.storage import variant_key
from uploads_api.storage.local import LocalStorage
from uploads_api.storage.partials import LocalPartials
from uploads_api.tasks.cleanup import CleanupTask
from uploads_api.tasks.workspace import Workspace


def test_the_sweep_holds_each_owner_under_the_cap_least_recently_used_first(
    database_url: str, tmp_path: Path
) -> None:
    async def main() -> None:
        async with open_repository(database_url) as repo:
            variants = VariantRepository(repo.engines)
            storage = LocalStorage(tmp_path / "blobs", tmp_path / "tmp")
            cleanup = CleanupTask(
                Settings(data_dir=tmp_path, variant_cache_bytes=250),
                storage,
                repo.files,
                AuditRepository(repo.engines),
                Workspace(tmp_path / "tmp" / "work"),
                tmp_path / "tmp",
                DeliveryRepository(repo.engines, EventWriter(render_file)),
                variants,
                DirectUploadRepository(repo.engines),
                TusUploadRepository(repo.engines),
                LocalPartials(tmp_path / "tus"),
                IdempotencyRepository(repo.engines),
            )
            files = {owner: new_file(owner=owner) for owner in ("alice", "bob", None)}
            await repo.files.create_files(list(files.values()), ())
            keys: dict[str | None, list[str]] = {}
            for owner, record in files.items():
                for n in range(5 if owner == "alice" else 2):
                    key = variant_key(record.id, f"w{n + 1}", "webp")
                    path = tmp_path / "made"
                    path.write_bytes(b"v" * 100)
                    await storage.put_file(key, path)
                    assert await variants.record(key, record.id, 100)
                    keys.setdefault(owner, []).append(key)
            # alice's were served in this order, the first last of all.
            start = utcnow() - timedelta(hours=1)
            order = [*keys["alice"][1:], keys["alice"][0]]
            await variants.touch({key: start + timedelta(minutes=i) for i, key in enumerate(order)})

            assert await cleanup.cap_variants() == 3
            kept = {key for key, _ in [item async for item in storage.list("thumbnails")]}
            assert kept == {keys["alice"][0], keys["alice"][4], *keys["bob"], *keys[None]}
            assert await variants.owners_over(200) == []
            assert await cleanup.cap_variants() == 0

            # A deleted file's rows go with it; the sweep drops any a crash left.
            assert await repo.files.delete_file(files["bob"].id, {})
            assert {o for o, _ in await variants.owners_over(0)} == {"alice", None}
            assert await variants.forget_orphans() == 0

    asyncio.run(main())


def test_uses_are_written_in_a_batch_and_at_most_once_a_while(
    database_url: str, tmp_path: Path
) -> None:
    async def main() -> None:
        async with open_repository(database_url) as repo:
            variants = VariantRepository(repo.engines)
            record = new_file(owner="alice")
            await repo.files.create_files([record], ())
            keys = [variant_key(record.id, f"w{n}", "webp") for n in (1, 2)]
            for key in keys:
                assert await variants.record(key, record.id, 10)
            uses = VariantUses(variants, resolution=3600, delay=0.05)
            uses.made(keys[0])
            await variants.touch({key: utcnow() - timedelta(days=1) for key in keys})
            for _ in range(3):
                uses.note(keys[0])  # just made: nothing to write
                uses.note(keys[1])  # written once
            await asyncio.sleep(0.3)
            oldest = await variants.least_recent("alice", 1)
            assert [v.key for v in oldest] == [keys[0]]
            await uses.stop()

    asyncio.run(main())
