"""tuspyserver, the tus router for FastAPI on PyPI, mounted as its README shows, as the
Python baseline of S9.

    TUSPY_UPLOAD_DIR=/tmp/x uvicorn bench.baselines.tuspyserver_app:app --port 8002

Uploads are created at ``/files`` and stored in ``$TUSPY_UPLOAD_DIR/<id>`` (with
``<id>.info`` beside it). Its own defaults otherwise: local files, no auth, no hook. It
writes each piece of a body with a plain ``write`` and ``flush`` on the event loop and
never fsyncs; the chunk size is the client's.
"""

from __future__ import annotations

import os

from fastapi import FastAPI
from tuspyserver import create_tus_router

app = FastAPI()
app.include_router(
    create_tus_router(
        prefix="files",
        files_dir=os.environ.get("TUSPY_UPLOAD_DIR", "tuspy-uploads"),
        max_size=8 * 1024**3,
    )
)


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}
