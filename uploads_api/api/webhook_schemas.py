"""Schemas of ``/v1/webhooks``: endpoints and their deliveries."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

from uploads_api.db.deliveries import Delivery
from uploads_api.db.events import EVENT_TYPES
from uploads_api.db.webhooks import Endpoint
from uploads_api.file_json import utc

EventType = Literal["file.created", "file.ready", "file.failed", "file.deleted", "upload.expired"]
assert set(get_args(EventType)) == set(EVENT_TYPES)


def _every_event() -> list[EventType]:
    return list(get_args(EventType))


WebhookUrl = Annotated[
    str,
    Field(
        min_length=8,
        max_length=2048,
        pattern="^[hH][tT][tT][pP][sS]?://",
        json_schema_extra={"format": "uri"},
        description="http or https; a literal address is checked here, a name when sending",
        examples=["https://hooks.example.com/uploads"],
    ),
]
EventList = Annotated[list[EventType], Field(min_length=1, max_length=len(EVENT_TYPES))]
Description = Annotated[str, Field(max_length=500)]


class EndpointIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    url: WebhookUrl
    events: EventList = Field(default_factory=_every_event)
    description: Description = ""


class EndpointPatch(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    url: WebhookUrl | None = None
    events: EventList | None = None
    description: Description | None = None
    enabled: bool | None = None


class EndpointOut(BaseModel):
    id: str
    url: str
    events: list[str]
    description: str
    enabled: bool
    disabled_reason: str | None = Field(description="why it was disabled (a 410 Gone...)")
    created_at: datetime

    @classmethod
    def of(cls, endpoint: Endpoint) -> EndpointOut:
        return cls(
            id=endpoint.id,
            url=endpoint.url,
            events=endpoint.events,
            description=endpoint.description,
            enabled=endpoint.enabled,
            disabled_reason=endpoint.disabled_reason,
            created_at=endpoint.created_at.replace(tzinfo=UTC),
        )


class EndpointCreated(EndpointOut):
    secret: str = Field(description="whsec_...: verifies signatures; shown only here")

    @classmethod
    def with_secret(cls, endpoint: Endpoint) -> EndpointCreated:
        return cls(**EndpointOut.of(endpoint).model_dump(), secret=endpoint.secret)


class EndpointList(BaseModel):
    endpoints: list[EndpointOut]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page")


class DeliveryOut(BaseModel):
    id: int
    event_id: str = Field(description="the webhook-id header of every attempt")
    type: str
    state: str = Field(description="pending, delivered or dead")
    attempts: int
    next_attempt_at: datetime | None
    last_status: int | None = Field(description="the receiver's last HTTP status")
    last_error: str | None
    last_response: str | None = Field(description="the first 1 KiB of the last answer")
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, delivery: Delivery) -> DeliveryOut:
        return cls(
            id=delivery.id,
            event_id=delivery.event_id,
            type=delivery.type,
            state=delivery.state,
            attempts=delivery.attempts,
            next_attempt_at=utc(delivery.next_attempt_at),
            last_status=delivery.last_status,
            last_error=delivery.last_error,
            last_response=delivery.last_response,
            created_at=delivery.created_at.replace(tzinfo=UTC),
            updated_at=delivery.updated_at.replace(tzinfo=UTC),
        )


class DeliveryList(BaseModel):
    deliveries: list[DeliveryOut]
    next_cursor: int | None = Field(description="pass as ?cursor= for the next page")
