"""The upload pattern of the FastAPI documentation and most tutorials, as a baseline.

    uvicorn bench.baselines.tutorial:app --port 8001

``file: UploadFile`` (Starlette parses the whole form first, spooling the file to a
temporary file), then either ``await file.read()`` of everything or a copy in 1 MiB chunks
with aiofiles, and a ``BackgroundTasks`` task that opens the image once per size and
calls ``thumbnail``. Files land in ``$TUTORIAL_UPLOAD_DIR``. Nothing is fsynced and
nothing is recorded: this is the bar, not a model.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import aiofiles
from fastapi import BackgroundTasks, FastAPI, UploadFile
from PIL import Image, UnidentifiedImageError

UPLOAD_DIR = Path(os.environ.get("TUTORIAL_UPLOAD_DIR", "tutorial-uploads"))
SIZES = (1024, 256)
COPY_CHUNK = 1024 * 1024

app = FastAPI()


def make_thumbnails(path: Path) -> None:
    for size in SIZES:
        try:
            with Image.open(path) as img:
                img.thumbnail((size, size))
                img.save(path.with_name(f"{path.name}.{size}.webp"), quality=80)
        except UnidentifiedImageError:
            return  # not an image: nothing to do


def _destination() -> Path:
    UPLOAD_DIR.mkdir(parents=True, exist_ok=True)
    return UPLOAD_DIR / uuid.uuid4().hex


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/files", status_code=201)
async def upload_read(file: UploadFile, background_tasks: BackgroundTasks) -> dict[str, object]:
    destination = _destination()
    contents = await file.read()
    with destination.open("wb") as out:
        out.write(contents)
    background_tasks.add_task(make_thumbnails, destination)
    return {"filename": file.filename, "size": len(contents), "path": str(destination)}


@app.post("/files-chunked", status_code=201)
async def upload_chunked(file: UploadFile, background_tasks: BackgroundTasks) -> dict[str, object]:
    destination = _destination()
    size = 0
    async with aiofiles.open(destination, "wb") as out:
        while chunk := await file.read(COPY_CHUNK):
            await out.write(chunk)
            size += len(chunk)
    background_tasks.add_task(make_thumbnails, destination)
    return {"filename": file.filename, "size": size, "path": str(destination)}
