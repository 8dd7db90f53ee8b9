"""Capacity figures for docs/capacity.md, on this machine, in cluster mode
(PostgreSQL, Redis, an S3 server, Celery):

    python -m bench.capacity [--uploads 2000] [--images 100]

U_api: one API process, no worker running (tasks only queue), 10 KiB uploads from 16
concurrent clients. I_worker: then one worker drains the queued thumbnails of N 12 MP
photos. Needs PostgreSQL on 127.0.0.1:5432 (trust auth) and Redis on 127.0.0.1:6379.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import asyncpg
import httpx

from tests import imagegen
from tests.cluster import AWS_ENV, ClusterConfig, Worker
from tests.conftest import Server, free_port
from tests.service_fixtures import s3_client


async def _admin(sql: str) -> None:
    connection = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/postgres")
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


async def _upload_all(url: str, bodies: list[tuple[str, bytes]], clients: int) -> float:
    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        queue = list(enumerate(bodies))

        async def one_client() -> None:
            while queue:
                _index, (name, body) = queue.pop()
                response = await client.put(f"/v1/files/{name}", content=body)
                response.raise_for_status()

        started = time.perf_counter()
        await asyncio.gather(*(one_client() for _ in range(clients)))
        return time.perf_counter() - started


def _wait_ready(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=url, timeout=60) as client:
        while client.get("/v1/files", params={"status": "processing", "limit": 1}).json()["files"]:
            if time.monotonic() > deadline:
                raise TimeoutError("processing did not finish")
            time.sleep(0.2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--uploads", type=int, default=2000)
    parser.add_argument("--images", type=int, default=100)
    args = parser.parse_args()
    database = f"uploads_capacity_{secrets.token_hex(4)}"
    asyncio.run(_admin(f'CREATE DATABASE "{database}"'))
    port = free_port()
    moto = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(2)
        endpoint = f"http://127.0.0.1:{port}"
        s3_client(endpoint).create_bucket(Bucket="capacity")
        config = ClusterConfig(
            database_url=f"postgresql+asyncpg://postgres@127.0.0.1:5432/{database}",
            storage_url="s3://capacity/bench",
            s3_endpoint=endpoint,
            broker_url="redis://127.0.0.1:6379/0",
        )
        with tempfile.TemporaryDirectory(prefix="uploads-capacity-") as scratch:
            root = Path(scratch)
            api = Server(root / "api", config.env(), root / "api.log")
            api.start()
            try:
                small = [(f"f{i}.bin", os.urandom(10 * 1024)) for i in range(args.uploads)]
                seconds = asyncio.run(_upload_all(api.url, small, 16))
                u_api = args.uploads / seconds
                worker = Worker(config, root / "worker", root / "worker.log", beat=True)
                started = time.perf_counter()
                worker.start()
                try:
                    _wait_ready(api.url, timeout=1800)
                    small_drain = time.perf_counter() - started
                    photo = imagegen.jpeg_photo(root / "photo", size=(4000, 3000)).read_bytes()
                    photos = [(f"p{i}.jpg", photo + os.urandom(16)) for i in range(args.images)]
                    started = time.perf_counter()
                    asyncio.run(_upload_all(api.url, photos, 8))
                    _wait_ready(api.url, timeout=1800)
                    photo_drain = time.perf_counter() - started
                finally:
                    worker.stop()
            finally:
                api.stop()
        print(f"U_api    {u_api:.0f} uploads/s (10 KiB, 16 clients, {args.uploads} uploads)")
        print(f"files    {args.uploads / small_drain:.0f} small files/s through one worker")
        print(
            f"I_worker {args.images / photo_drain:.2f} images/s, 12 MP JPEG to 256+1024 WebP "
            f"(upload to ready, one worker, one API, {os.cpu_count()} cores)"
        )
    finally:
        moto.terminate()
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
    return 0


if __name__ == "__main__":
    os.environ.update(AWS_ENV)
    sys.exit(main())
