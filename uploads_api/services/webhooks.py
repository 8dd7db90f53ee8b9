"""Webhook endpoints and their deliveries, as their owner (or an admin) manages them.

An endpoint belongs to the owner of the key that created it and takes that owner's events;
an admin sees every endpoint. Another owner's endpoint is reported as missing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from uploads_api.auth import Principal
from uploads_api.db.deliveries import Delivery, DeliveryRepository
from uploads_api.db.models import AuditAction
from uploads_api.db.webhooks import Endpoint, EndpointRepository, valid_endpoint_id
from uploads_api.errors import NotFound, WebhookTargetRefused
from uploads_api.outbound import TargetPolicy, TargetRefused
from uploads_api.services.audit import Auditor


def _unique(events: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(events))


class WebhookService:
    def __init__(
        self,
        endpoints: EndpointRepository,
        deliveries: DeliveryRepository,
        policy: TargetPolicy,
        auditor: Auditor,
    ) -> None:
        self.endpoints = endpoints
        self.deliveries = deliveries
        self.policy = policy
        self.auditor = auditor

    def _audit(
        self, action: AuditAction, caller: Principal, endpoint: Endpoint, **more: Any
    ) -> None:
        detail = {"endpoint_id": endpoint.id, "url": endpoint.url, **more}
        self.auditor.record(action, caller, owner=endpoint.owner, detail=detail)

    async def configure_environment(self, url: str | None, secret: str | None) -> None:
        """The endpoint UPLOADS_WEBHOOK_URL and _SECRET describe (every owner's events)."""
        await self.endpoints.configure_environment(url, secret)

    def _check_url(self, url: str) -> None:
        try:
            self.policy.check_url(url)
        except TargetRefused as exc:
            raise WebhookTargetRefused(str(exc), url=url) from None

    async def create(
        self, caller: Principal, url: str, events: Sequence[str], description: str
    ) -> Endpoint:
        self._check_url(url)
        endpoint = await self.endpoints.create(caller.owner, url, _unique(events), description)
        self._audit("webhook.created", caller, endpoint, events=endpoint.events)
        return endpoint

    async def get(self, caller: Principal, endpoint_id: str) -> Endpoint:
        endpoint = None
        if valid_endpoint_id(endpoint_id):
            endpoint = await self.endpoints.get(endpoint_id, caller.scope)
        if endpoint is None:
            raise NotFound(f"no webhook endpoint {endpoint_id}")
        return endpoint

    async def list_endpoints(
        self, caller: Principal, limit: int, cursor: str | None
    ) -> tuple[list[Endpoint], str | None]:
        found = await self.endpoints.list_endpoints(caller.scope, limit + 1, cursor)
        page = found[:limit]
        return page, page[-1].id if len(found) > limit else None

    async def update(
        self, caller: Principal, endpoint_id: str, changes: dict[str, Any]
    ) -> Endpoint:
        await self.get(caller, endpoint_id)
        if "url" in changes:
            self._check_url(changes["url"])
        if "events" in changes:
            changes = {**changes, "events": _unique(changes["events"])}
        updated = await self.endpoints.update(endpoint_id, changes)
        if updated is None:
            raise NotFound(f"no webhook endpoint {endpoint_id}")
        self._audit("webhook.updated", caller, updated, changed=sorted(changes))
        return updated

    async def delete(self, caller: Principal, endpoint_id: str) -> None:
        endpoint = await self.get(caller, endpoint_id)
        if not await self.endpoints.delete(endpoint_id):
            raise NotFound(f"no webhook endpoint {endpoint_id}")
        self._audit("webhook.deleted", caller, endpoint)

    async def send_test(self, caller: Principal, endpoint_id: str) -> Delivery:
        endpoint = await self.get(caller, endpoint_id)
        return await self.deliveries.send_test(endpoint.id, endpoint.owner)

    async def deliveries_of(
        self,
        caller: Principal,
        endpoint_id: str,
        *,
        state: str | None,
        limit: int,
        cursor: int | None,
    ) -> tuple[list[Delivery], int | None]:
        await self.get(caller, endpoint_id)
        found = await self.deliveries.list_deliveries(
            endpoint_id, state=state, limit=limit + 1, before=cursor
        )
        page = found[:limit]
        return page, page[-1].id if len(found) > limit else None

    async def retry(self, caller: Principal, endpoint_id: str, delivery_id: int) -> Delivery:
        await self.get(caller, endpoint_id)
        delivery = await self.deliveries.retry(endpoint_id, delivery_id)
        if delivery is None:
            raise NotFound(f"no delivery {delivery_id} of webhook endpoint {endpoint_id}")
        self.deliveries.events.committed(1)
        return delivery
