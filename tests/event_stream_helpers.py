"""Reading ``GET /v1/events`` from a real server: its frames (events and comments), a stream
opened with a timeout on every read, and the uploads and deletions that make events."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from tests.conftest import Server
from tests.helpers import bearer

# No read may wait longer than this: a missing event fails the test instead of hanging it.
READ_TIMEOUT = 10.0


@dataclass(frozen=True)
class Frame:
    """One block of lines up to a blank line: an event, or a comment."""

    lines: tuple[str, ...]

    @property
    def is_comment(self) -> bool:
        return all(line.startswith(":") for line in self.lines)

    def field(self, name: str) -> str:
        (value,) = [line[len(name) + 2 :] for line in self.lines if line.startswith(name + ": ")]
        return value

    @property
    def id(self) -> str:
        return self.field("id")

    @property
    def event(self) -> str:
        return self.field("event")

    @property
    def payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = json.loads(self.field("data"))
        return payload

    @property
    def file_id(self) -> str:
        file_id: str = self.payload["data"]["id"]
        return file_id


class EventStream:
    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = response.iter_lines()

    def frame(self) -> Frame | None:
        """The next block; None once the server has ended the stream."""
        lines: list[str] = []
        for line in self._lines:
            if line == "":
                if lines:
                    return Frame(tuple(lines))
                continue
            lines.append(line)
        assert not lines, f"the stream ended inside a block: {lines}"
        return None

    def events(self, count: int, *, files: set[str] | None = None) -> list[Frame]:
        """The next ``count`` events (of these files, when given), comments skipped."""
        found: list[Frame] = []
        while len(found) < count:
            frame = self.frame()
            assert frame is not None, f"the stream ended after {found}"
            if frame.is_comment or (files is not None and frame.file_id not in files):
                continue
            found.append(frame)
        return found

    def rest(self) -> list[Frame]:
        """Everything up to the end of a stream the server ends (``?wait=``)."""
        frames = []
        while (frame := self.frame()) is not None:
            frames.append(frame)
        return frames


@contextmanager
def open_stream(
    server: Server,
    key: str | None = None,
    *,
    params: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Iterator[EventStream]:
    sent = {**(bearer(key) if key else {}), **(headers or {})}
    timeout = httpx.Timeout(READ_TIMEOUT)
    with (
        httpx.Client(base_url=server.url, timeout=timeout) as http,
        http.stream("GET", "/v1/events", params=params, headers=sent) as response,
    ):
        assert response.status_code == 200, response.read()[:500]
        yield EventStream(response)


def upload(server: Server, key: str | None = None, name: str = "note.txt") -> str:
    """A text file: created and ready at once (there is nothing to process)."""
    response = httpx.post(
        f"{server.url}/v1/files",
        files={"file": (name, b"hello events " + name.encode(), "text/plain")},
        headers=bearer(key) if key else None,
        timeout=30,
    )
    assert response.status_code == 201, response.text
    file_id: str = response.json()["files"][0]["id"]
    return file_id


def delete(server: Server, file_id: str, key: str | None = None) -> None:
    response = httpx.delete(
        f"{server.url}/v1/files/{file_id}", headers=bearer(key) if key else None, timeout=30
    )
    assert response.status_code == 204, response.text


def kinds(frames: list[Frame]) -> list[tuple[str, str]]:
    return [(frame.file_id, frame.event) for frame in frames]
