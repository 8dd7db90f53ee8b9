"""Runs the client openapi-python-client generates from /openapi.json against a server.

``python round_trip.py BASE_URL API_KEY``, with the generated package ``uploads_api_client`` on
``PYTHONPATH``: uploads a file each way (multipart and raw body), reads one back by id, finds
both in the listing, deletes them and prints what it saw as JSON, for
tests/test_generated_clients.py to check. Only the generated code talks to the server.
"""

from __future__ import annotations

import io
import json
import sys
from typing import Any, TypeVar

from uploads_api_client import AuthenticatedClient
from uploads_api_client.api.files import (
    delete_file,
    get_file,
    list_files,
    upload_file,
    upload_files,
)
from uploads_api_client.models import FileOut, UploadFilesBody
from uploads_api_client.types import File

T = TypeVar("T")
DATA = b"hello from a generated Python client\n"


def parsed(value: T | None) -> T:
    """A ``sync`` call's answer: ``None`` would mean a status the description does not list."""
    if value is None:
        raise AssertionError("the generated client could not parse the answer")
    return value


def seen(file: FileOut) -> dict[str, Any]:
    return {"id": file.id, "size": file.size, "sha256": file.sha256, "filename": file.filename}


def round_trip(client: AuthenticatedClient) -> dict[str, Any]:
    body = UploadFilesBody(file=[File(payload=io.BytesIO(DATA), file_name="multipart.txt")])
    created = parsed(upload_files.sync(client=client, body=body))
    first = created.files[0]
    raw = parsed(upload_file.sync("raw body.txt", client=client, body=File(io.BytesIO(DATA))))
    fetched = parsed(get_file.sync(first.id, client=client, wait=30))

    listed: list[str] = []
    cursor: str | None = None
    while True:
        page = parsed(list_files.sync(client=client, limit=1, cursor=cursor))
        listed += [file.id for file in page.files]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor

    for file in (first, raw):
        response = delete_file.sync_detailed(file.id, client=client)
        assert response.status_code == 204, response
    gone = get_file.sync_detailed(first.id, client=client)
    return {
        "uploaded": seen(first),
        "raw": seen(raw),
        "fetched": {**seen(fetched), "status": fetched.status},
        "listed": listed,
        "after_delete": int(gone.status_code),
    }


def main(base_url: str, api_key: str) -> None:
    with AuthenticatedClient(base_url=base_url, token=api_key, timeout=60) as client:
        print(json.dumps(round_trip(client)))


if __name__ == "__main__":
    main(*sys.argv[1:3])
