"""Sending webhooks: due deliveries claimed from the outbox, signed per the Standard
Webhooks spec, sent to the checked address, each outcome recorded; and the loop that runs
the sender in whichever process runs tasks (the server, or each Celery worker).

One event keeps one ``webhook-id`` on every attempt, so a receiver can drop repeats.
Retries follow ``UPLOADS_WEBHOOK_RETRY_SCHEDULE``; a 410 Gone disables the endpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from standardwebhooks.webhooks import Webhook

from uploads_api import metrics
from uploads_api.config import Settings
from uploads_api.db.deliveries import Attempt, DeliveryRepository, Outcome, Outgoing
from uploads_api.db.webhooks import EndpointRepository
from uploads_api.outbound import SendFailed, TargetPolicy, TargetRefused

if TYPE_CHECKING:
    from uploads_api.tasks.webhook_http import WebhookHttp

log = logging.getLogger(__name__)

# Of a receiver's answer, this much is kept for the deliveries listing.
RESPONSE_KEPT = 1024
# Deliveries claimed at once, and sent at once by one process.
BATCH = 64
CONNECTIONS = 16
GATHER_SECONDS = 0.05
USER_AGENT = "uploads-api-webhooks/1"


REFUSED = "refused: "


def _outcome_name(outcome: Outcome) -> str:
    status = outcome.attempt.status
    if status is not None and 200 <= status < 300:
        return "delivered"
    if status is None and (outcome.attempt.error or "").startswith(REFUSED):
        return "refused"
    return "retry" if outcome.retry_in is not None else "dead"


def sign(secret: str, message_id: str, timestamp: int, body: str) -> str:
    return Webhook(secret).sign(message_id, datetime.fromtimestamp(timestamp, UTC), body)


class WebhookSender:
    def __init__(
        self,
        settings: Settings,
        deliveries: DeliveryRepository,
        endpoints: EndpointRepository,
        policy: TargetPolicy,
    ) -> None:
        self.settings = settings
        self.deliveries = deliveries
        self.endpoints = endpoints
        self.policy = policy
        self.schedule = settings.webhook_retry_schedule
        self._client: WebhookHttp | None = None
        self._client_loop: asyncio.AbstractEventLoop | None = None

    def _http(self) -> WebhookHttp:
        loop = asyncio.get_running_loop()
        if self._client is None or self._client_loop is not loop:
            # Loaded with the first delivery, not at start-up: webhook_http.py says why.
            from uploads_api.tasks.webhook_http import WebhookHttp

            self._client = WebhookHttp(self.policy, self.settings.webhook_timeout, CONNECTIONS)
            self._client_loop = loop
        return self._client

    async def close(self) -> None:
        if self._client is not None and self._client_loop is asyncio.get_running_loop():
            await self._client.close()
        self._client = None

    async def deliver_due(self) -> int:
        """Send every delivery that is due, a batch at a time, the outcomes of a batch
        recorded in one transaction; how many were attempted."""
        sent = 0
        # Past the request's own timeout: a lease that lapses means its sender died.
        lease = self.settings.webhook_timeout + 10
        while True:
            batch = await self.deliveries.claim_due(BATCH, lease)
            outcomes = await asyncio.gather(*(self._attempt(out) for out in batch))
            await self.deliveries.record(outcomes)
            for outcome in outcomes:
                metrics.WEBHOOK_ATTEMPTS.labels(_outcome_name(outcome)).inc()
                if outcome.attempt.status == 410:
                    await self.endpoints.disable(
                        outcome.delivery.endpoint_id, "the receiver answered 410 Gone"
                    )
            sent += len(batch)
            if len(batch) < BATCH:
                return sent

    async def _attempt(self, out: Outgoing) -> Outcome:
        delivery = out.delivery
        try:
            # The URL's form here; its host's addresses when connecting (webhook_http.py),
            # so a kept-alive connection costs no lookup.
            self.policy.check_url(out.url)
            attempt = await self._post(out)
        except TargetRefused as exc:
            attempt = Attempt(None, f"{REFUSED}{exc}", None)
        if attempt.error is not None and attempt.error.startswith(REFUSED):
            # A configuration matter, not a passing one: retrying would not help.
            log.warning(
                "webhook %s to endpoint %s %s",
                delivery.event_id,
                delivery.endpoint_id,
                attempt.error,
            )
            return Outcome(delivery, attempt, None)
        retry_in: float | None = None
        delivered = attempt.status is not None and 200 <= attempt.status < 300
        if not delivered and attempt.status != 410 and delivery.attempts < len(self.schedule):
            retry_in = self.schedule[delivery.attempts]
        return Outcome(delivery, attempt, retry_in)

    async def _post(self, out: Outgoing) -> Attempt:
        body = json.dumps(out.payload, separators=(",", ":"), ensure_ascii=False)
        timestamp = int(time.time())
        message_id = out.delivery.event_id
        headers = {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            "webhook-id": message_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(out.secret, message_id, timestamp, body),
        }
        try:
            status, kept = await self._http().post(out.url, body.encode(), headers, RESPONSE_KEPT)
        except TargetRefused as exc:
            return Attempt(None, f"{REFUSED}{exc}", None)
        except SendFailed as exc:
            return Attempt(None, str(exc), None)
        text = kept.decode("utf-8", errors="replace")
        error = None if 200 <= status < 300 else f"the receiver answered {status}"
        return Attempt(status, error, text)


class DeliveryLoop:
    """Runs the sender: at once when new deliveries are committed here (``wake``), and at
    least every ``interval`` seconds for retries that fall due and other processes' work."""

    def __init__(self, sender: WebhookSender, interval: float) -> None:
        self.sender = sender
        self.interval = interval
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._stopping = False
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="webhook-deliveries")

    async def stop(self) -> None:
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.sender.close()

    async def _run(self) -> None:
        while not self._stopping:
            # Under a burst of uploads every commit wakes the loop: gathering the wakes of
            # a moment makes one claim and one record per batch instead of per event.
            await asyncio.sleep(GATHER_SECONDS)
            self._wake.clear()
            try:
                await self.sender.deliver_due()
            except Exception:
                log.exception("webhook sender could not reach the database; retrying")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.interval)
