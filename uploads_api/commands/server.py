"""``uploads-api serve`` and ``uploads-api sweep``."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import Any

from uploads_api.commands.keys import active_key_count

# Settings are imported inside the commands, as in ``keys``: client commands build this
# parser too.


def register(commands: Any) -> None:
    serve = commands.add_parser("serve", help="run the HTTP server")
    serve.add_argument("--host", help="interface to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default 8000)")
    serve.add_argument("--data-dir", help="data directory (default ./storage)")
    serve.add_argument("--workers", type=int, help="server processes sharing the data dir")
    serve.set_defaults(handler=serve_command)
    sweep = commands.add_parser("sweep", help="remove abandoned temp files and unreferenced blobs")
    sweep.add_argument("--data-dir", help="data directory (default ./storage)")
    sweep.set_defaults(handler=sweep_command)


def serve_command(args: argparse.Namespace) -> int:
    import uvicorn

    from uploads_api.config import Settings

    # Worker processes build their own app from the environment, so settings travel there.
    overrides = {
        "HOST": args.host,
        "PORT": args.port,
        "DATA_DIR": args.data_dir,
        "WORKERS": args.workers,
    }
    for name, value in overrides.items():
        if value is not None:
            os.environ[f"UPLOADS_{name}"] = str(value)
    settings = Settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if not settings.is_loopback and active_key_count(settings) == 0:
        print(
            f"refusing to serve on {settings.host} without API keys: anyone could read and"
            " delete every file. Create one first:\n"
            f"  uploads-api keys create OWNER --data-dir {settings.data_dir}\n"
            "or bind a loopback address (--host 127.0.0.1).",
            file=sys.stderr,
        )
        return 2
    uvicorn.run(
        "uploads_api.app:create_app_from_env",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_config=None,
        timeout_graceful_shutdown=int(settings.shutdown_grace_seconds) + 5,
        h11_max_incomplete_event_size=64 * 1024,
    )
    return 0


def sweep_command(args: argparse.Namespace) -> int:
    from uploads_api.config import Settings
    from uploads_api.db.schema import ensure_schema
    from uploads_api.runtime import Runtime

    if args.data_dir:
        os.environ["UPLOADS_DATA_DIR"] = args.data_dir
    runtime = Runtime.build(Settings())

    async def run() -> dict[str, int]:
        await ensure_schema(runtime.engines)
        try:
            return await runtime.cleanup.sweep()
        finally:
            await runtime.engines.dispose()

    removed = asyncio.run(run())
    print(
        f"removed {removed['temp']} temp entries and {removed['blobs']} unreferenced blobs;"
        f" {removed['audit']} audit rows past their retention; {removed['variants']} image"
        f" variants over the cache cap; {removed['idempotency_keys']} expired idempotency keys"
    )
    return 0
