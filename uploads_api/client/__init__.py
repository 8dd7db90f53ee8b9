"""A Python client for uploads-api, sync and async, on httpx.

```python
from uploads_api.client import Client

with Client("http://127.0.0.1:8000", api_key="upk_...") as client:
    record = client.upload("photo.jpg")
    record = client.wait(record.id, timeout=60)
    print(record.status, [client.full_url(t.url) for t in record.thumbnails])
```

It imports nothing from the server package, so it stays light. See ``docs/client.md``.
"""

from uploads_api.client.async_client import AsyncClient
from uploads_api.client.batch import BatchUploader
from uploads_api.client.errors import (
    ApiError,
    BadRequest,
    Forbidden,
    IntegrityError,
    NotFound,
    PayloadTooLarge,
    ProcessingTimeout,
    ServerError,
    TooManyRequests,
    TransportError,
    Unauthorized,
    UploadsClientError,
    ValidationError,
)
from uploads_api.client.models import FileRecord, HashCheck, Links, Task, TaskRecord, Thumbnail
from uploads_api.client.results import UploadResult
from uploads_api.client.retry import NO_RETRY, Retrying, RetryPolicy
from uploads_api.client.selection import collect_files
from uploads_api.client.sources import sha256_file
from uploads_api.client.sync_client import Client

__all__ = [
    "NO_RETRY",
    "ApiError",
    "AsyncClient",
    "BadRequest",
    "BatchUploader",
    "Client",
    "FileRecord",
    "Forbidden",
    "HashCheck",
    "IntegrityError",
    "Links",
    "NotFound",
    "PayloadTooLarge",
    "ProcessingTimeout",
    "RetryPolicy",
    "Retrying",
    "ServerError",
    "Task",
    "TaskRecord",
    "Thumbnail",
    "TooManyRequests",
    "TransportError",
    "Unauthorized",
    "UploadResult",
    "UploadsClientError",
    "ValidationError",
    "collect_files",
    "sha256_file",
]
