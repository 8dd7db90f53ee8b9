"""The schema. Times are naive UTC; the API layer adds the zone when it renders them."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)


def utcnow() -> datetime:
    """Now, as the tables keep times: naive UTC."""
    return datetime.now(UTC).replace(tzinfo=None)


metadata = MetaData()
# Taken by every process that changes the schema: one migrates, the others wait and see.
SCHEMA_LOCK = 0x75706C64

files = Table(
    "files",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("owner", String(64), nullable=True, index=True),
    Column("filename", String(255), nullable=False),
    Column("content_type", String(127), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False, index=True),
    Column("storage_key", String(512), nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("status", String(16), nullable=False),
    # The client sent a checksum and the bytes matched it.
    Column("verified", Boolean, nullable=False, default=False),
    Column("metadata", JSON, nullable=True),
    Column("thumbnails", JSON, nullable=False),
    # What the client sent, where stripping metadata changed the stored bytes (NULL in
    # rows from before it existed: then it is ``sha256``).
    Column("received_sha256", String(64), nullable=True, index=True),
    Index("ix_files_created", "created_at", "id"),
)

# Task rows outlive the file they were for (the cleanup of a deleted file), so no foreign key.
tasks = Table(
    "tasks",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("file_id", String(32), nullable=True, index=True),
    Column("name", String(32), nullable=False),
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("max_attempts", Integer, nullable=False),
    Column("error", Text, nullable=True),
    Column("payload", JSON, nullable=True),
    Column("created_at", DateTime, nullable=False),
    Column("run_after", DateTime, nullable=False),
    Column("lease_owner", String(64), nullable=True),
    Column("lease_until", DateTime, nullable=True),
    Column("started_at", DateTime, nullable=True),
    Column("finished_at", DateTime, nullable=True),
    Index("ix_tasks_state_run_after", "state", "run_after"),
)

# Only a hash of each key is kept: a stolen database does not hand out working keys.
api_keys = Table(
    "api_keys",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("owner", String(64), nullable=False, index=True),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("prefix", String(16), nullable=False),
    Column("admin", Boolean, nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("revoked_at", DateTime, nullable=True),
)

# The outbox: every event, written in the transaction of the change that caused it. ``seq``
# orders them for the live stream; ``id`` is the public one (``webhook-id``, SSE ``id:``).
events = Table(
    "events",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("id", String(40), nullable=False, unique=True),
    Column("type", String(32), nullable=False),
    Column("owner", String(64), nullable=True),
    Column("file_id", String(32), nullable=True),
    # What receivers get: {"type", "timestamp", "data"}, rendered when the event happened.
    Column("payload", JSON, nullable=False),
    Column("created_at", DateTime, nullable=False, index=True),
    Index("ix_events_owner_seq", "owner", "seq"),
)

# Where events go. An endpoint with no owner takes every owner's events
# (UPLOADS_WEBHOOK_URL); ``events`` lists the types it takes.
webhook_endpoints = Table(
    "webhook_endpoints",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("owner", String(64), nullable=True, index=True),
    Column("url", Text, nullable=False),
    Column("secret", String(128), nullable=False),
    Column("events", JSON, nullable=False),
    Column("description", Text, nullable=False),
    Column("enabled", Boolean, nullable=False),
    Column("disabled_reason", Text, nullable=True),
    Column("created_at", DateTime, nullable=False),
)

# One event on its way to one endpoint: created with the event, claimed with a lease by a
# sender, retried on the schedule until delivered or dead.
webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("endpoint_id", String(40), nullable=False),
    Column("event_id", String(40), nullable=False, index=True),
    Column("type", String(32), nullable=False),
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", DateTime, nullable=True),
    Column("lease_until", DateTime, nullable=True),
    Column("last_status", Integer, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("last_response", Text, nullable=True),
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
    Index("ix_webhook_deliveries_endpoint", "endpoint_id", "id"),
    Index("ix_webhook_deliveries_due", "state", "next_attempt_at"),
)

# Image variants made on request and kept in storage (``key``), for the sweep's cap on
# their bytes per owner: ``used_at`` is when one was last served, to a few minutes.
variants = Table(
    "variants",
    metadata,
    Column("key", String(512), primary_key=True),
    Column("file_id", String(32), nullable=False, index=True),
    Column("owner", String(64), nullable=True),
    Column("size", BigInteger, nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("used_at", DateTime, nullable=False),
    Index("ix_variants_owner_used_at", "owner", "used_at"),
)

# Direct uploads (S3) a client is sending parts of; gone when completed or aborted. ``state``
# is ``open``, or ``completing`` while one request assembles it (no second may).
direct_uploads = Table(
    "direct_uploads",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("owner", String(64), nullable=True),
    Column("filename", String(255), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=True),
    Column("storage_key", String(512), nullable=False),
    Column("upload_id", String(1024), nullable=False),
    Column("part_size", BigInteger, nullable=False),
    Column("state", String(16), nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("expires_at", DateTime, nullable=False, index=True),
)

# Resumable (tus) uploads: the bytes so far live in the partial store; the row says how
# many are durable (``offset``), who may write next (a short lease: one writer at a time
# across processes), and, once complete, which file they became. ``state``: ``open`` or
# ``done``.
tus_uploads = Table(
    "tus_uploads",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("owner", String(64), nullable=True),
    Column("key_id", Integer, nullable=True),
    Column("length", BigInteger, nullable=True),
    Column("offset", BigInteger, nullable=False),
    Column("metadata_header", String(4096), nullable=True),
    # Upload-Concat as sent: ``partial`` (a piece a final upload joins; never a file
    # itself), or ``final;<the partial uploads' URLs>``.
    Column("concat", String(4096), nullable=True),
    Column("metadata", JSON, nullable=True),
    Column("state", String(16), nullable=False),
    Column("file_id", String(32), nullable=True),
    Column("lease_owner", String(64), nullable=True),
    Column("lease_until", DateTime, nullable=True),
    Column("created_at", DateTime, nullable=False),
    Column("expires_at", DateTime, nullable=False, index=True),
    Index("ix_tus_uploads_owner_state", "owner", "state"),
)

# Idempotency-Key of uploads, per owner ("" for an open server's callers). A request claims
# its key (``running``, held by ``holder`` until ``locked_until``, renewed while it runs)
# before it reads the body; its answer (zlib-compressed JSON) is written in the transaction
# that records its files (``done``). Kept until ``expires_at``, UPLOADS_IDEMPOTENCY_TTL on.
idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("owner", String(64), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("state", String(16), nullable=False),
    Column("holder", String(80), nullable=False),
    Column("fingerprint", String(64), nullable=True),
    Column("status", Integer, nullable=True),
    Column("response", LargeBinary, nullable=True),
    Column("created_at", DateTime, nullable=False),
    Column("expires_at", DateTime, nullable=False, index=True),
    Column("locked_until", DateTime, nullable=True),
)

# Who did what. Failed authentications are counted into one row per address per minute.
audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", DateTime, nullable=False, index=True),
    Column("action", String(32), nullable=False),
    Column("owner", String(64), nullable=True),
    Column("file_id", String(32), nullable=True),
    Column("address", String(64), nullable=True),
    Column("detail", JSON, nullable=True),
    Column("count", Integer, nullable=False),
    Index("ix_audit_log_owner_at", "owner", "at"),
    Index("ix_audit_log_action_address_at", "action", "address", "at"),
)
