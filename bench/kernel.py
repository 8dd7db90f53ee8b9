"""Thumbnail kernels, run in their own processes so their CPU time can be measured alone.

    python -m bench.kernel cpu SYSTEM IMAGE OUT_DIR --reps N   # S5: CPU seconds per image
    python -m bench.kernel serve SYSTEM                         # S5: the same, one per line
    python -m bench.kernel pool IMAGES_FILE OUT_DIR --workers N # S6: the bare kernel on N cores

``cpu`` times every repetition with ``time.process_time`` (all threads of the process, so
libvips' worker threads count too) after one untimed warm-up, so imports and first-use
set-up are left out, and prints one JSON object. ``serve`` reads ``IMAGE OUT_DIR`` lines
and answers each with one JSON line, so that a caller can interleave systems image by
image. ``pool`` starts and warms a process pool like the server's, then times
``make_thumbnails`` over every image.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

SIZES = (1024, 256)
FORMAT = "webp"
WEBP_QUALITY = 80  # the server's setting, used by every system


def ours(src: str, out_dir: str) -> None:
    from uploads_api.config import DEFAULT_IMAGE_FORMATS
    from uploads_api.media import images

    images.make_thumbnails(src, out_dir, SIZES, FORMAT, DEFAULT_IMAGE_FORMATS)


def tutorial(src: str, out_dir: str) -> None:
    """The FastAPI tutorial's background task: open and thumbnail once per size."""
    from PIL import Image

    for size in SIZES:
        with Image.open(src) as img:
            img.thumbnail((size, size))
            img.save(os.path.join(out_dir, f"{size}.webp"), quality=WEBP_QUALITY)


def pyvips_once(src: str, out_dir: str) -> None:
    """libvips through pyvips, decoding once: shrink-on-load to the largest size, kept in
    memory, and every smaller size made from it."""
    import pyvips

    current = pyvips.Image.thumbnail(src, max(SIZES)).copy_memory()
    for size in sorted(SIZES, reverse=True):
        if max(current.width, current.height) > size:
            current = current.thumbnail_image(size).copy_memory()
        current.webpsave(os.path.join(out_dir, f"{size}.webp"), Q=WEBP_QUALITY, strip=True)


KERNELS: dict[str, Callable[[str, str], None]] = {
    "ours": ours,
    "tutorial": tutorial,
    "pyvips": pyvips_once,
}


def _prepare(system: str) -> None:
    if system == "ours":
        from uploads_api.media.worker import configure_worker

        configure_worker(100_000_000)


def output_bytes(out_dir: str) -> int:
    return sum(entry.stat().st_size for entry in os.scandir(out_dir) if entry.is_file())


def cpu_command(args: argparse.Namespace) -> dict[str, object]:
    kernel = KERNELS[args.system]
    _prepare(args.system)
    Path(args.out_dir).mkdir(parents=True, exist_ok=True)
    kernel(args.image, args.out_dir)  # warm-up: libraries loaded, caches filled
    samples = []
    for _ in range(args.reps):
        started = time.process_time()
        kernel(args.image, args.out_dir)
        samples.append(time.process_time() - started)
    return {"cpu": samples, "bytes": output_bytes(args.out_dir)}


def serve_command(args: argparse.Namespace) -> None:
    kernel = KERNELS[args.system]
    _prepare(args.system)
    for line in sys.stdin:
        image, out_dir = line.split()
        started = time.process_time()
        kernel(image, out_dir)
        cpu = time.process_time() - started
        print(json.dumps({"cpu": cpu, "bytes": output_bytes(out_dir)}), flush=True)


def _pool_job(src: str, out_root: str) -> None:
    out_dir = os.path.join(out_root, f"{os.getpid()}-{time.monotonic_ns()}")
    os.mkdir(out_dir)
    ours(src, out_dir)


def pool_command(args: argparse.Namespace) -> dict[str, object]:
    from uploads_api.media.worker import configure_worker

    images = Path(args.images_file).read_text().split()
    with ProcessPoolExecutor(
        max_workers=args.workers,
        mp_context=multiprocessing.get_context("forkserver"),
        initializer=configure_worker,
        initargs=(100_000_000,),
    ) as pool:
        # Warm every worker, as the server's pool is warmed at start-up.
        list(pool.map(configure_worker, [100_000_000] * args.workers))
        started = time.perf_counter()
        list(pool.map(_pool_job, images, [args.out_dir] * len(images)))
        elapsed = time.perf_counter() - started
    return {"images": len(images), "seconds": elapsed}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    cpu = commands.add_parser("cpu")
    cpu.add_argument("system", choices=sorted(KERNELS))
    cpu.add_argument("image")
    cpu.add_argument("out_dir")
    cpu.add_argument("--reps", type=int, default=3)
    serve = commands.add_parser("serve")
    serve.add_argument("system", choices=sorted(KERNELS))
    pool = commands.add_parser("pool")
    pool.add_argument("images_file")
    pool.add_argument("out_dir")
    pool.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    if args.command == "serve":
        serve_command(args)
        return 0
    result = cpu_command(args) if args.command == "cpu" else pool_command(args)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
