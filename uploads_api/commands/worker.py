"""``uploads-api worker`` and ``uploads-api scheduler``: Celery processes for scale-out."""

from __future__ import annotations

import argparse
import os
from typing import Any

# Settings are imported inside the commands, as in ``keys``: client commands build this
# parser too.


def register(commands: Any) -> None:
    worker = commands.add_parser("worker", help="run a Celery worker (UPLOADS_TASK_BACKEND=celery)")
    worker.add_argument("--concurrency", type=int, default=None, help="tasks at once (threads)")
    worker.add_argument("--beat", action="store_true", help="also run the periodic scheduler")
    worker.add_argument("--data-dir", help="data directory (default ./storage)")
    worker.set_defaults(handler=_worker)
    scheduler = commands.add_parser("scheduler", help="run Celery beat: the sweep, the reconciler")
    scheduler.add_argument("--data-dir", help="data directory (default ./storage)")
    scheduler.set_defaults(handler=_scheduler)


def _app(args: argparse.Namespace) -> Any:
    from uploads_api.config import Settings
    from uploads_api.logs import configure_logging
    from uploads_api.runtime import Runtime
    from uploads_api.tasks.celery_app import make_celery

    if args.data_dir:
        os.environ["UPLOADS_DATA_DIR"] = args.data_dir
    settings = Settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)  # beat keeps its schedule there
    configure_logging(settings.log_format, settings.log_level)
    return make_celery(settings, Runtime.build), settings


def _worker(args: argparse.Namespace) -> int:
    app, settings = _app(args)
    # Threads, not forked children: the runtime's event loop and its image process pool
    # live in this process; decoding still happens in separate processes.
    argv = [
        "worker",
        "--pool=threads",
        f"--concurrency={args.concurrency or settings.task_concurrency}",
    ]
    argv += ["--loglevel", settings.log_level, "--without-gossip", "--without-mingle"]
    if args.beat:
        argv.append("--beat")
    app.worker_main(argv)
    return 0


def _scheduler(args: argparse.Namespace) -> int:
    app, settings = _app(args)
    app.start(["beat", "--loglevel", settings.log_level])
    return 0
