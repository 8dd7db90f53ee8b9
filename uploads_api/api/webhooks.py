"""``/v1/webhooks``: where events are sent, and how each delivery went."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response

from uploads_api.api.contract import problem_responses
from uploads_api.api.deps import PrincipalDep, WebhooksDep, get_principal
from uploads_api.api.webhook_schemas import (
    DeliveryList,
    DeliveryOut,
    EndpointCreated,
    EndpointIn,
    EndpointList,
    EndpointOut,
    EndpointPatch,
)
from uploads_api.db.events import DELIVERY_STATES
from uploads_api.db.webhooks import ENDPOINT_ID_PATTERN

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"], dependencies=[Depends(get_principal)])

_BY_ID = {"endpoint_id": "$response.body#/id"}
ENDPOINT_LINKS = {
    name: {"operationId": name, "parameters": _BY_ID}
    for name in (
        "getWebhook",
        "updateWebhook",
        "deleteWebhook",
        "testWebhook",
        "listWebhookDeliveries",
    )
}
DELIVERY_LINKS = {
    "retryWebhookDelivery": {
        "operationId": "retryWebhookDelivery",
        "parameters": {
            "endpoint_id": "$request.path.endpoint_id",
            "delivery_id": "$response.body#/id",
        },
    }
}

ENDPOINT_ID = Annotated[str, Path(pattern=ENDPOINT_ID_PATTERN, description="whe_...")]
DELIVERY_ID = Annotated[int, Path(ge=1, le=2**53)]


@router.post(
    "",
    status_code=201,
    response_model=EndpointCreated,
    operation_id="createWebhook",
    responses={
        201: {"links": ENDPOINT_LINKS},
        **problem_responses("bad-request", "webhook-target-refused"),
    },
    summary="Add an endpoint; its secret is shown only in this answer",
)
async def create_webhook(
    body: EndpointIn, webhooks: WebhooksDep, caller: PrincipalDep
) -> EndpointCreated:
    endpoint = await webhooks.create(caller, body.url, body.events, body.description)
    return EndpointCreated.with_secret(endpoint)


@router.get(
    "",
    response_model=EndpointList,
    operation_id="listWebhooks",
    responses=problem_responses(),
    summary="Endpoints (an admin sees every owner's)",
)
async def list_webhooks(
    webhooks: WebhooksDep,
    caller: PrincipalDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[
        str | None, Query(pattern=ENDPOINT_ID_PATTERN, description="next_cursor of the last page")
    ] = None,
) -> EndpointList:
    page, next_cursor = await webhooks.list_endpoints(caller, limit, cursor)
    return EndpointList(endpoints=[EndpointOut.of(e) for e in page], next_cursor=next_cursor)


@router.get(
    "/{endpoint_id}",
    response_model=EndpointOut,
    operation_id="getWebhook",
    responses=problem_responses("not-found"),
    summary="One endpoint",
)
async def get_webhook(
    endpoint_id: ENDPOINT_ID, webhooks: WebhooksDep, caller: PrincipalDep
) -> EndpointOut:
    return EndpointOut.of(await webhooks.get(caller, endpoint_id))


@router.patch(
    "/{endpoint_id}",
    response_model=EndpointOut,
    operation_id="updateWebhook",
    responses=problem_responses("bad-request", "not-found", "webhook-target-refused"),
    summary="Change an endpoint's URL, events, description, or enable it again",
)
async def update_webhook(
    endpoint_id: ENDPOINT_ID, body: EndpointPatch, webhooks: WebhooksDep, caller: PrincipalDep
) -> EndpointOut:
    changes = body.model_dump(exclude_unset=True, exclude_none=True)
    return EndpointOut.of(await webhooks.update(caller, endpoint_id, changes))


@router.delete(
    "/{endpoint_id}",
    status_code=204,
    operation_id="deleteWebhook",
    responses=problem_responses("not-found"),
    summary="Remove an endpoint and its deliveries",
)
async def delete_webhook(
    endpoint_id: ENDPOINT_ID, webhooks: WebhooksDep, caller: PrincipalDep
) -> Response:
    await webhooks.delete(caller, endpoint_id)
    return Response(status_code=204)


@router.post(
    "/{endpoint_id}/test",
    status_code=202,
    response_model=DeliveryOut,
    operation_id="testWebhook",
    responses={202: {"links": DELIVERY_LINKS}, **problem_responses("not-found")},
    summary="Send a webhook.test event to this endpoint",
)
async def test_webhook(
    endpoint_id: ENDPOINT_ID, webhooks: WebhooksDep, caller: PrincipalDep
) -> DeliveryOut:
    return DeliveryOut.of(await webhooks.send_test(caller, endpoint_id))


@router.get(
    "/{endpoint_id}/deliveries",
    response_model=DeliveryList,
    operation_id="listWebhookDeliveries",
    responses=problem_responses("not-found"),
    summary="An endpoint's deliveries, newest first, optionally by state",
)
async def list_deliveries(
    endpoint_id: ENDPOINT_ID,
    webhooks: WebhooksDep,
    caller: PrincipalDep,
    state: Annotated[str | None, Query(pattern="^(" + "|".join(DELIVERY_STATES) + ")$")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[
        int | None, Query(ge=1, le=2**53, description="next_cursor of the previous page")
    ] = None,
) -> DeliveryList:
    page, next_cursor = await webhooks.deliveries_of(
        caller, endpoint_id, state=state, limit=limit, cursor=cursor
    )
    return DeliveryList(deliveries=[DeliveryOut.of(d) for d in page], next_cursor=next_cursor)


@router.post(
    "/{endpoint_id}/deliveries/{delivery_id}/retry",
    status_code=202,
    response_model=DeliveryOut,
    operation_id="retryWebhookDelivery",
    responses=problem_responses("not-found"),
    summary="Send a delivery again now, with the whole retry schedule ahead of it",
)
async def retry_delivery(
    endpoint_id: ENDPOINT_ID, delivery_id: DELIVERY_ID, webhooks: WebhooksDep, caller: PrincipalDep
) -> DeliveryOut:
    return DeliveryOut.of(await webhooks.retry(caller, endpoint_id, delivery_id))
