"""``/v1/events``: the caller's events, live, as Server-Sent Events; and the short-lived
tokens that open the stream where no ``Authorization`` header can be sent."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field
from starlette.types import Receive, Scope, Send

from uploads_api.api.contract import header, problem_responses
from uploads_api.api.deps import EventStreamDep, PrincipalDep, StreamCallerDep
from uploads_api.services.event_stream import Comment, StreamItem

router = APIRouter(prefix="/v1/events", tags=["events"])

EVENT_STREAM = "text/event-stream"
# Any text up to this: an id the server does not know, however it looks, is answered the
# same way (a comment, then events from now).
EVENT_ID_MAX = 64
# No cache may keep the stream, and nginx must pass each event on as it comes.
STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
STREAM_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Server-Sent Events, one per event: `id: <event id>`, `event: <type>`,"
        " `data: <the payload as compact JSON>` and a blank line; a `: keep-alive` comment"
        " after a quiet while. Endless unless `wait` is given.",
        "content": {EVENT_STREAM: {"schema": {"type": "string"}}},
        "headers": {
            "Cache-Control": header("`no-cache`"),
            "X-Accel-Buffering": header("`no`: a proxy must not buffer the stream"),
        },
    },
    **problem_responses(),
}
TOKEN_LINKS = {
    "streamEvents": {
        "operationId": "streamEvents",
        "parameters": {"token": "$response.body#/token"},
    }
}


class EventToken(BaseModel):
    token: str = Field(description="Pass as `?token=` to `GET /v1/events`")
    expires_at: datetime = Field(description="A stream must be opened before this time")


def frame(item: StreamItem) -> bytes:
    if isinstance(item, Comment):
        return f": {item.text}\n\n".encode()
    return f"id: {item.id}\nevent: {item.type}\ndata: {item.data}\n\n".encode()


class EventStreamResponse(StreamingResponse):
    """Closes the stream's items however the response ends, so its subscription goes at
    once, not whenever the garbage collector finds it."""

    media_type = EVENT_STREAM

    def __init__(self, items: AsyncGenerator[StreamItem, None]) -> None:
        self.items = items
        super().__init__(self._frames(), headers=STREAM_HEADERS)

    async def _frames(self) -> AsyncGenerator[bytes, None]:
        async with aclosing(self.items) as items:
            async for item in items:
                yield frame(item)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.items.aclose()


@router.get(
    "",
    status_code=200,
    response_class=EventStreamResponse,
    operation_id="streamEvents",
    responses=STREAM_RESPONSES,
    summary="The caller's events, live, as Server-Sent Events",
)
async def stream_events(
    events: EventStreamDep,
    caller: StreamCallerDep,
    last_event_id_header: Annotated[
        str | None,
        Header(
            alias="Last-Event-ID",
            max_length=EVENT_ID_MAX,
            description="Resume after this event (`msg_...`; browsers send it when they reconnect)",
        ),
    ] = None,
    last_event_id: Annotated[
        str | None,
        Query(
            max_length=EVENT_ID_MAX,
            description="Resume after this event, for clients that cannot set the header;"
            " the header wins",
        ),
    ] = None,
    wait: Annotated[
        float | None,
        Query(
            ge=0,
            le=86400,
            description="End the stream after this many seconds; `0`: send what is stored"
            " after the last event id and end",
        ),
    ] = None,
) -> EventStreamResponse:
    items = await events.open(caller, last_event_id_header or last_event_id, wait=wait)
    return EventStreamResponse(items)


@router.post(
    "/tokens",
    status_code=201,
    response_model=EventToken,
    operation_id="createEventToken",
    responses={201: {"links": TOKEN_LINKS}, **problem_responses()},
    summary="A token that opens your event stream for 60 s, for a browser's EventSource",
)
async def create_event_token(events: EventStreamDep, caller: PrincipalDep) -> EventToken:
    token, expires_at = events.issue_token(caller)
    return EventToken(token=token, expires_at=expires_at)
