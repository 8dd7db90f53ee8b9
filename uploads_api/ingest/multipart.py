"""Streaming ``multipart/form-data`` intake.

python-multipart's parser does no I/O: it is fed the body chunk by chunk and calls back with
small events, which are queued and then acted on here, where awaiting is allowed. Every part
with a filename is a file, streamed straight to storage; other parts are small form fields.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from enum import Enum, auto

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from uploads_api.db.models import NewFile
from uploads_api.errors import (
    BadRequest,
    ChecksumMismatch,
    FieldTooLarge,
    MalformedMultipart,
    NoFiles,
    PayloadTooLarge,
    TooManyParts,
    UnsupportedMediaType,
    UploadsError,
)
from uploads_api.ingest.checksums import parse_sha256_hex
from uploads_api.ingest.group import SinkGroup
from uploads_api.ingest.limits import IngestLimits
from uploads_api.ingest.policy import UploadPolicy
from uploads_api.ingest.sink import FileSink
from uploads_api.storage import BlobTarget

# Refusals caused by one file part alone: the problem names it (``part``, ``filename``), so
# a client sending many files at once can drop that one and send the rest again. A quota
# refusal is not one of them: the part where the quota ran out is not at fault.
PART_REFUSALS = (PayloadTooLarge, UnsupportedMediaType, ChecksumMismatch)


class Event(Enum):
    PART_BEGIN = auto()
    HEADER_FIELD = auto()
    HEADER_VALUE = auto()
    HEADER_END = auto()
    HEADERS_FINISHED = auto()
    PART_DATA = auto()
    PART_END = auto()
    END = auto()


@dataclass
class _Part:
    headers: dict[bytes, bytes] = field(default_factory=dict)
    header_field: bytes = b""
    header_value: bytes = b""
    sink: FileSink | None = None
    index: int = 0  # among the file parts, from 0
    field_name: str | None = None
    field_value: bytearray = field(default_factory=bytearray)


def boundary_of(content_type: str | None) -> bytes:
    mime, params = parse_options_header(content_type or "")
    if mime != b"multipart/form-data":
        raise UnsupportedMediaType(
            "POST a multipart/form-data body, or PUT the raw file to /v1/files/{filename}"
        )
    boundary = params.get(b"boundary")
    if not boundary:
        raise MalformedMultipart("the Content-Type header has no multipart boundary")
    if len(boundary) > 200:
        raise MalformedMultipart("the multipart boundary is longer than 200 characters")
    return boundary


class MultipartIntake:
    def __init__(self, storage: BlobTarget, limits: IngestLimits, policy: UploadPolicy) -> None:
        self._storage = storage
        self._limits = limits
        self._policy = policy
        self._expected_sha256: str | None = None
        self._events: list[tuple[Event, bytes | memoryview]] = []
        self._part = _Part()
        self._field_count = 0
        self._ended = False

    async def receive(
        self, content_type: str | None, stream: AsyncIterator[bytes]
    ) -> list[NewFile]:
        """The request's files, each committed to storage; form fields other than
        ``sha256`` (which checks the next file part) are read within limits and dropped."""
        parser = self._parser(boundary_of(content_type))
        async with SinkGroup(self._storage, self._policy) as group:
            async for chunk in stream:
                try:
                    parser.write(chunk)
                except MultipartParseError as exc:
                    raise MalformedMultipart(f"malformed multipart body: {exc}") from exc
                await self._handle_events(group)
                if self._ended:
                    break
            if not self._ended:
                raise MalformedMultipart("the body ended before the closing multipart boundary")
            if self._expected_sha256 is not None:
                raise BadRequest("a sha256 field must come before the file part it describes")
            if len(group) == 0:
                raise NoFiles("the request has no file part (a part with a filename)")
            files = await group.commit_all()
        return files

    def _parser(self, boundary: bytes) -> MultipartParser:
        def on(event: Event) -> object:
            return lambda: self._events.append((event, b""))

        def on_data(event: Event) -> object:
            return lambda data, start, end: self._events.append((event, data[start:end]))

        def on_part_data(data: bytes, start: int, end: int) -> None:
            # A view, not a copy: the parser hands over the request's own chunks (or its
            # boundary constant), and bytes never change under a view.
            piece = memoryview(data)[start:end] if type(data) is bytes else data[start:end]
            self._events.append((Event.PART_DATA, piece))

        callbacks = {
            "on_part_begin": on(Event.PART_BEGIN),
            "on_header_field": on_data(Event.HEADER_FIELD),
            "on_header_value": on_data(Event.HEADER_VALUE),
            "on_header_end": on(Event.HEADER_END),
            "on_headers_finished": on(Event.HEADERS_FINISHED),
            "on_part_data": on_part_data,
            "on_part_end": on(Event.PART_END),
            "on_end": on(Event.END),
        }
        return MultipartParser(
            boundary,
            callbacks,  # type: ignore[arg-type]
            max_header_count=self._limits.max_header_count,
            max_header_size=self._limits.max_header_size,
        )

    async def _handle_events(self, group: SinkGroup) -> None:
        try:
            await self._handle(group)
        except PART_REFUSALS as exc:
            _name_part(exc, self._part)
            raise

    async def _handle(self, group: SinkGroup) -> None:
        events, self._events = self._events, []
        part = self._part
        for event, data in events:
            if event is Event.PART_DATA:
                await self._on_data(part, data)
            elif event is Event.PART_BEGIN:
                part = self._part = _Part()
            elif event is Event.HEADER_FIELD:
                part.header_field += bytes(data)
            elif event is Event.HEADER_VALUE:
                part.header_value += bytes(data)
            elif event is Event.HEADER_END:
                part.headers[part.header_field.lower()] = part.header_value
                part.header_field, part.header_value = b"", b""
            elif event is Event.HEADERS_FINISHED:
                await self._start_part(part, group)
            elif event is Event.PART_END:
                await self._end_part(part, group)
            elif event is Event.END:
                self._ended = True

    async def _start_part(self, part: _Part, group: SinkGroup) -> None:
        disposition = part.headers.get(b"content-disposition")
        if disposition is None:
            raise MalformedMultipart("a part has no Content-Disposition header")
        kind, options = parse_options_header(disposition)
        if kind != b"form-data":
            raise MalformedMultipart("a part's Content-Disposition is not form-data")
        name = options.get(b"name", b"").decode("utf-8", "replace")
        if b"filename" in options:
            if len(group) >= self._limits.max_files:
                raise TooManyParts(
                    f"more than {self._limits.max_files} files in one request",
                    limit=self._limits.max_files,
                )
            filename = options[b"filename"].decode("utf-8", "replace")
            # A `sha256` field applies to the file part that follows it.
            expected, self._expected_sha256 = self._expected_sha256, None
            part.index = len(group)
            part.sink = await group.open(filename, expected)
        else:
            self._field_count += 1
            if self._field_count > self._limits.max_fields:
                raise TooManyParts(
                    f"more than {self._limits.max_fields} form fields in one request",
                    limit=self._limits.max_fields,
                )
            part.field_name = name

    async def _on_data(self, part: _Part, data: bytes | memoryview) -> None:
        if part.sink is not None:
            await part.sink.feed(data)
            return
        part.field_value += bytes(data)
        if len(part.field_value) > self._limits.max_field_size:
            raise FieldTooLarge(
                f"form field {part.field_name!r} is larger than "
                f"{self._limits.max_field_size} bytes",
                limit=self._limits.max_field_size,
            )

    async def _end_part(self, part: _Part, group: SinkGroup) -> None:
        if part.sink is not None:
            await group.finish(part.sink)
        elif part.field_name == "sha256":
            value = part.field_value.decode("utf-8", "replace")
            self._expected_sha256 = parse_sha256_hex(value)


def _name_part(error: UploadsError, part: _Part) -> None:
    """Add the file part at fault to its problem (a subclass, such as a quota, is not)."""
    if part.sink is not None and type(error) in PART_REFUSALS:
        error.extra.setdefault("part", part.index)
        error.extra.setdefault("filename", part.sink.filename)
