"""Builds every service from the settings and owns their start and stop."""

from __future__ import annotations

from dataclasses import dataclass

from uploads_api.auth import Authenticator
from uploads_api.config import Settings
from uploads_api.db.engine import Engines, create_engines
from uploads_api.db.keys import KeyRepository
from uploads_api.db.repository import Repository
from uploads_api.db.schema import ensure_schema
from uploads_api.ingest.limits import IngestLimits
from uploads_api.ingest.slots import UploadSlots
from uploads_api.storage import Storage
from uploads_api.storage.factory import build_storage
from uploads_api.tasks.base import TaskDispatcher, TaskHandler
from uploads_api.tasks.cleanup import CleanupTask
from uploads_api.tasks.metadata import MetadataTask
from uploads_api.tasks.pool import ImagePool
from uploads_api.tasks.runner import TaskRunner
from uploads_api.tasks.thumbnails import ThumbnailTask
from uploads_api.tasks.workspace import Workspace


@dataclass
class Services:
    settings: Settings
    engines: Engines
    repository: Repository
    storage: Storage
    pool: ImagePool
    workspace: Workspace
    runner: TaskRunner
    handlers: dict[str, TaskHandler]
    dispatcher: TaskDispatcher
    limits: IngestLimits
    cleanup: CleanupTask
    authenticator: Authenticator
    upload_slots: UploadSlots

    @classmethod
    def build(cls, settings: Settings) -> Services:
        data_dir = settings.data_dir.resolve()
        temp_dir = data_dir / "tmp"
        engines = create_engines(
            settings.resolved_database_url, busy_timeout=settings.database_busy_timeout
        )
        repository = Repository(engines, max_attempts=settings.task_max_attempts)
        storage = build_storage(settings, data_dir, temp_dir)
        pool = ImagePool(
            settings.image_workers, settings.max_image_pixels, settings.image_pool_idle_seconds
        )
        workspace = Workspace(temp_dir / "work")
        cleanup = CleanupTask(settings, storage, repository, workspace, temp_dir)
        handlers: dict[str, TaskHandler] = {
            "metadata": MetadataTask(settings, storage, repository, pool, workspace),
            "thumbnails": ThumbnailTask(settings, storage, repository, pool, workspace),
            "cleanup": cleanup,
        }
        runner = TaskRunner(settings, repository, handlers)
        dispatcher: TaskDispatcher = runner
        if settings.task_backend == "celery":
            from uploads_api.tasks.celery_app import CeleryDispatcher, make_celery

            dispatcher = CeleryDispatcher(repository, make_celery(settings))
        return cls(
            settings=settings,
            engines=engines,
            repository=repository,
            storage=storage,
            pool=pool,
            workspace=workspace,
            runner=runner,
            handlers=handlers,
            dispatcher=dispatcher,
            limits=IngestLimits.from_settings(settings),
            cleanup=cleanup,
            authenticator=Authenticator(KeyRepository(engines)),
            upload_slots=UploadSlots(settings.max_concurrent_uploads),
        )

    async def start(self) -> None:
        """Start an API process; with in-process tasks it runs them too."""
        await ensure_schema(self.engines)
        if self.settings.task_backend == "inprocess":
            # The image pool starts on the first image, not here: see ImagePool.
            self.runner.start()

    async def start_worker(self) -> None:
        """Start a Celery worker process: it runs tasks, never the in-process runner."""
        await ensure_schema(self.engines)
        # Scratch left by a killed run on this machine; no other process would find it.
        await self.cleanup.sweep_local()
        await self.pool.start()

    async def stop(self) -> None:
        await self.runner.stop(self.settings.shutdown_grace_seconds)
        self.pool.shutdown()
        await self.engines.dispose()
