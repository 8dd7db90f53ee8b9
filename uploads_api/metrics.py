"""Prometheus metrics, defined once per process and rendered at ``/metrics``."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

UPLOADS = Counter("uploads_files_total", "Files received and stored", ["route"])
UPLOAD_BYTES = Counter("uploads_bytes_total", "Bytes of files received and stored")
# Direct uploads (S3): the bytes went straight to storage, never through this process.
DIRECT_UPLOADS = Counter("uploads_direct_total", "Direct uploads completed")
DIRECT_UPLOAD_BYTES = Counter("uploads_direct_bytes_total", "Bytes of direct uploads completed")
RESUMABLE_EXPIRED = Counter(
    "uploads_resumable_expired_total", "Unfinished resumable uploads removed at their expiry"
)
IDEMPOTENT_REPLAYS = Counter(
    "uploads_idempotent_replays_total",
    "Upload requests answered with an earlier request's answer (Idempotency-Key)",
)
UPLOAD_REJECTED = Counter("uploads_rejected_total", "Upload requests refused", ["code"])
UPLOAD_SIZE = Histogram(
    "uploads_file_size_bytes",
    "Size of stored files",
    buckets=(1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10),
)
UPLOAD_DURATION = Histogram(
    "uploads_request_duration_seconds",
    "Time to receive and store one upload request",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
TASK_RUNS = Counter("uploads_task_runs_total", "Task runs by name and outcome", ["task", "outcome"])
TASK_DURATION = Histogram(
    "uploads_task_duration_seconds",
    "Duration of one task run",
    ["task"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
QUEUE_DEPTH = Gauge("uploads_tasks_queued", "Tasks waiting to run")
UPLOADS_IN_PROGRESS = Gauge(
    "uploads_in_progress",
    "Upload requests taking their body in this process (multipart, raw PUT, tus PATCH)",
)
QUEUE_OLDEST = Gauge("uploads_tasks_oldest_queued_seconds", "Age of the oldest queued task")
WEBHOOK_ATTEMPTS = Counter(
    "uploads_webhook_attempts_total",
    "Webhook delivery attempts by outcome: delivered, retry, dead, refused",
    ["outcome"],
)
VARIANTS_MADE = Counter(
    "uploads_variants_made_total", "Image variants made in the media pool, by format", ["format"]
)
VARIANTS_SERVED = Counter(
    "uploads_variants_served_total",
    "Image variant requests answered: made, stored (already made) or not_modified (304)",
    ["outcome"],
)
VARIANTS_EVICTED = Counter(
    "uploads_variants_evicted_total",
    "Image variants the sweep removed to keep owners under the cap",
)
