"""Helpers for the tests of direct transfer with S3: a server's settings for a bucket, a new
bucket, the three steps of a direct upload (start, PUT the parts, complete), a metric's value,
and what the bucket holds."""

from __future__ import annotations

import re
import secrets
from typing import Any

import httpx

from tests.service_fixtures import s3_client

MiB = 1024 * 1024
PART = 5 * MiB  # the smallest part S3 takes, so that a few MiB make several parts


def s3_settings(endpoint: str, bucket: str, **more: object) -> dict[str, object]:
    return {
        "storage_url": f"s3://{bucket}/uploads",
        "s3_endpoint_url": endpoint,
        "direct_upload_part_size": PART,
        **more,
    }


def new_bucket(endpoint: str) -> str:
    name = f"direct-{secrets.token_hex(6)}"
    s3_client(endpoint).create_bucket(Bucket=name)
    return name


def start(client: httpx.Client, data: bytes, name: str = "data.bin", **more: Any) -> dict[str, Any]:
    answer = client.post("/v1/direct-uploads", json={"filename": name, "size": len(data), **more})
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


def put_parts(offer: dict[str, Any], data: bytes) -> list[dict[str, Any]]:
    """PUT each part to its presigned URL, with no API credentials; the parts to complete."""
    size = offer["part_size"]
    sent = []
    with httpx.Client(timeout=60) as storage:
        for part in offer["parts"]:
            start_at = (part["number"] - 1) * size
            answer = storage.put(part["url"], content=data[start_at : start_at + size])
            assert answer.status_code == 200, answer.text
            sent.append({"number": part["number"], "etag": answer.headers["ETag"]})
    return sent


def complete(
    client: httpx.Client, offer: dict[str, Any], parts: list[dict[str, Any]]
) -> httpx.Response:
    return client.post(f"/v1/direct-uploads/{offer['id']}/complete", json={"parts": parts})


def counter(client: httpx.Client, name: str) -> float:
    found = re.search(rf"^{name} (\S+)$", client.get("/metrics").text, re.M)
    return float(found.group(1)) if found else 0.0


def bucket_keys(endpoint: str, bucket: str) -> list[str]:
    listed = s3_client(endpoint).list_objects_v2(Bucket=bucket)
    return [item["Key"] for item in listed.get("Contents", [])]


def pending_uploads(endpoint: str, bucket: str) -> list[str]:
    listed = s3_client(endpoint).list_multipart_uploads(Bucket=bucket)
    return [upload["UploadId"] for upload in listed.get("Uploads", [])]
