"""The composition root, and nothing else: builds every object once from the settings,
hands each only the collaborators it uses, and starts and stops them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from uploads_api.auth import Authenticator
from uploads_api.config import Settings
from uploads_api.db.audit import AuditRepository
from uploads_api.db.audit_buffer import AuditBuffer
from uploads_api.db.deliveries import DeliveryRepository
from uploads_api.db.direct_uploads import DirectUploadRepository
from uploads_api.db.engine import Engines, create_engines
from uploads_api.db.event_feed import EventFeed
from uploads_api.db.events import EventWriter
from uploads_api.db.files import FileRepository
from uploads_api.db.idempotency import IdempotencyRepository
from uploads_api.db.keys import KeyRepository
from uploads_api.db.queue import TaskQueue
from uploads_api.db.schema import ensure_schema
from uploads_api.db.tus_uploads import TusUploadRepository
from uploads_api.db.usage import UsageRepository
from uploads_api.db.variants import VariantRepository
from uploads_api.db.webhooks import EndpointRepository
from uploads_api.file_json import render_file
from uploads_api.ingest.limits import IngestLimits
from uploads_api.ingest.slots import UploadSlots
from uploads_api.outbound import TargetPolicy
from uploads_api.services.audit import Auditor
from uploads_api.services.direct_uploads import DirectUploadService
from uploads_api.services.event_fanout import EventPoller
from uploads_api.services.event_stream import EventStreamService
from uploads_api.services.files import FileService
from uploads_api.services.health import HealthService
from uploads_api.services.idempotency import IdempotencyKeys
from uploads_api.services.links import LinkService
from uploads_api.services.tasks import TaskService
from uploads_api.services.tus import TusService
from uploads_api.services.variants import VariantService
from uploads_api.services.webhooks import WebhookService
from uploads_api.signing import KeyRing
from uploads_api.storage import Storage
from uploads_api.storage.factory import build_partials, build_storage
from uploads_api.tasks.base import TaskDispatcher, TaskHandler
from uploads_api.tasks.cleanup import CleanupTask
from uploads_api.tasks.metadata import MetadataTask
from uploads_api.tasks.pool import ImagePool
from uploads_api.tasks.runner import TaskRunner
from uploads_api.tasks.single_flight import SingleFlight
from uploads_api.tasks.thumbnails import ThumbnailTask
from uploads_api.tasks.verify import VerifyTask
from uploads_api.tasks.webhooks import DeliveryLoop, WebhookSender
from uploads_api.tasks.workspace import Workspace


@dataclass
class Runtime:
    settings: Settings
    engines: Engines
    queue: TaskQueue
    storage: Storage
    pool: ImagePool
    runner: TaskRunner
    handlers: Mapping[str, TaskHandler]
    cleanup: CleanupTask
    authenticator: Authenticator
    audit_buffer: AuditBuffer
    auditor: Auditor
    file_service: FileService
    task_service: TaskService
    variant_service: VariantService
    health_service: HealthService
    webhook_service: WebhookService
    event_stream: EventStreamService
    deliveries: DeliveryLoop
    link_service: LinkService
    direct_upload_service: DirectUploadService
    tus_service: TusService

    @classmethod
    def build(cls, settings: Settings) -> Runtime:
        data_dir = settings.data_dir.resolve()
        temp_dir = data_dir / "tmp"
        engines = create_engines(
            settings.resolved_database_url, busy_timeout=settings.database_busy_timeout
        )
        events = EventWriter(render_file)
        files = FileRepository(engines, events, max_attempts=settings.task_max_attempts)
        queue = TaskQueue(engines, events, max_attempts=settings.task_max_attempts)
        storage = build_storage(settings, data_dir, temp_dir)
        pool = ImagePool(
            settings.image_workers,
            settings.max_image_pixels,
            settings.image_pool_idle_seconds,
            timeout=settings.media_timeout,
            memory_limit=settings.media_memory_limit,
        )
        policy = TargetPolicy(
            allow_private=settings.webhook_allow_private,
            allowed_targets=settings.webhook_allowed_targets,
        )
        endpoints = EndpointRepository(engines)
        deliveries = DeliveryRepository(engines, events)
        sender = WebhookSender(settings, deliveries, endpoints, policy)
        delivery_loop = DeliveryLoop(sender, settings.task_poll_interval)
        events.subscribe(deliveries=delivery_loop.wake)
        feed = EventFeed(engines)
        poller = EventPoller(feed)
        events.subscribe(events=poller.wake)
        authenticator = Authenticator(KeyRepository(engines))
        workspace = Workspace(temp_dir / "work")
        audit = AuditRepository(engines)
        audit_buffer = AuditBuffer(audit)
        auditor = Auditor(audit_buffer, audit)
        variants = VariantRepository(engines)
        direct_uploads = DirectUploadRepository(engines)
        tus_uploads = TusUploadRepository(engines)
        partials = build_partials(storage, data_dir)
        idempotency_keys = IdempotencyRepository(engines)
        cleanup = CleanupTask(
            settings,
            storage,
            files,
            audit,
            workspace,
            temp_dir,
            deliveries,
            variants,
            direct_uploads,
            tus_uploads,
            partials,
            idempotency_keys,
        )
        handlers: dict[str, TaskHandler] = {
            "verify": VerifyTask(storage, files),
            "metadata": MetadataTask(settings, storage, files, pool, workspace),
            "thumbnails": ThumbnailTask(settings, storage, files, pool, workspace),
            "cleanup": cleanup,
        }
        runner = TaskRunner(settings, queue, handlers)
        dispatcher: TaskDispatcher = runner
        if settings.task_backend == "celery":
            # Imported only in this mode: an embedded server never loads Celery.
            from uploads_api.tasks.celery_app import CeleryDispatcher, make_celery

            dispatcher = CeleryDispatcher(queue, make_celery(settings, cls.build))
        file_service = FileService(
            settings,
            files,
            UsageRepository(engines),
            storage,
            IngestLimits.from_settings(settings),
            UploadSlots(settings.max_concurrent_uploads),
            dispatcher,
            auditor,
            IdempotencyKeys(idempotency_keys, settings.idempotency_ttl),
            render_file,
        )
        # A process waiting for another's variant waits as long as a decode may take, and
        # some more for copying the source in and the variant out.
        flight = SingleFlight(
            data_dir / "locks" / "variants", wait_limit=settings.media_timeout + 30
        )
        variant_service = VariantService(
            settings, files, variants, storage, pool, workspace, flight
        )
        signing_keys = KeyRing.load(settings.signing_key, data_dir)
        direct_upload_service = DirectUploadService(settings, direct_uploads, storage, file_service)
        tus_service = TusService(settings, tus_uploads, partials, storage, file_service)
        return cls(
            settings=settings,
            engines=engines,
            queue=queue,
            storage=storage,
            pool=pool,
            runner=runner,
            handlers=handlers,
            cleanup=cleanup,
            authenticator=authenticator,
            audit_buffer=audit_buffer,
            auditor=auditor,
            file_service=file_service,
            task_service=TaskService(queue),
            variant_service=variant_service,
            health_service=HealthService(engines, storage, queue),
            webhook_service=WebhookService(endpoints, deliveries, policy, auditor),
            event_stream=EventStreamService(
                poller,
                feed,
                signing_keys,
                authenticator.still_valid,
                heartbeat=settings.event_stream_heartbeat,
            ),
            deliveries=delivery_loop,
            direct_upload_service=direct_upload_service,
            tus_service=tus_service,
            link_service=LinkService(
                signing_keys, file_service, variant_service, max_age=settings.link_max_age
            ),
        )

    async def start(self) -> None:
        """Start an API process; with in-process tasks it runs them (and sends webhooks) too."""
        await ensure_schema(self.engines)
        await self.webhook_service.configure_environment(
            self.settings.webhook_url, self.settings.webhook_secret
        )
        self.audit_buffer.start()
        if self.settings.task_backend == "inprocess":
            # The image pool starts on the first image, not here: see ImagePool.
            self.runner.start()
            self.deliveries.start()

    async def start_worker(self) -> None:
        """Start a Celery worker process: it runs tasks, never the in-process runner."""
        await ensure_schema(self.engines)
        # Scratch left by a killed run on this machine; no other process would find it.
        await self.cleanup.sweep_local()
        await self.pool.start()
        self.deliveries.start()

    async def stop(self) -> None:
        # Open streams first: they would otherwise hold the process until they time out.
        await self.event_stream.close()
        await self.deliveries.stop()
        await self.runner.stop(self.settings.shutdown_grace_seconds)
        self.pool.shutdown()
        await self.variant_service.stop()
        # The audit rows of the last half second; the engines must still be open.
        await self.audit_buffer.stop()
        await self.engines.dispose()
