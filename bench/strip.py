"""The cost of ``UPLOADS_STRIP_METADATA=location`` on the receive path: one large upload,
by ``curl -T``, to a server stripping and to one not, taking turns run by run.

    python -m bench.strip [--runs N] [--size-mib N]

Two files: S1's random bytes (no stripper applies: the cost is deciding that) and a large
real JPEG with EXIF and GPS (the stripper walks its segments, then passes the image data
through as views). Goal: >= 0.95x the MiB/s without stripping. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import httpx
from PIL import Image

from bench.scenario_tools import curl
from bench.systems import BENCH_ENV
from tests import imagegen
from tests.conftest import Server

MiB = 1024 * 1024


def _server(root: Path, name: str, mode: str) -> Server:
    root.mkdir(parents=True, exist_ok=True)
    env = {**BENCH_ENV, "UPLOADS_STRIP_METADATA": mode}
    server = Server(root / f"{name}-data", env, root / f"{name}.log")
    server.start(timeout=60)
    return server


def _big_jpeg(path: Path, megapixels: int) -> Path:
    """Noise at quality 95 (large, like a detailed photo), with camera EXIF and GPS."""
    side = int((megapixels * 1_000_000) ** 0.5)
    with Image.open(imagegen.jpeg_photo(path.parent / "exif", size=(64, 48))) as small:
        exif = small.getexif()
    Image.effect_noise((side, side), 64).convert("RGB").save(path, quality=95, exif=exif)
    return path


def _upload(server: Server, path: Path, body: Path) -> float:
    seconds = curl(["-T", str(path)], f"{server.url}/v1/files/", body)
    record = json.loads(body.read_text())
    httpx.delete(f"{server.url}/v1/files/{record['id']}")
    return path.stat().st_size / MiB / seconds


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):.0f} ({min(values):.0f}-{max(values):.0f})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--size-mib", type=int, default=1024, help="the random file")
    parser.add_argument("--megapixels", type=int, default=64, help="the JPEG")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-strip-") as tmp:
        root = Path(tmp)
        random_file = root / "random.bin"
        with random_file.open("wb") as out:
            for _ in range(args.size_mib):
                out.write(os.urandom(MiB))
        jpeg = _big_jpeg(root / "photo.jpg", args.megapixels)
        servers = {mode: _server(root, mode, mode) for mode in ("none", "location")}
        speeds: dict[tuple[str, str], list[float]] = {}
        try:
            for run in range(args.runs):
                # Each goes first in turn: the first upload of a pair meets a colder cache.
                order = list(servers.items())[:: 1 if run % 2 == 0 else -1]
                for name, path in (("random", random_file), ("jpeg", jpeg)):
                    for mode, server in order:
                        speed = _upload(server, path, root / "body")
                        speeds.setdefault((name, mode), []).append(speed)
        finally:
            for server in servers.values():
                server.stop()
        print(f"`python -m bench.strip --runs {args.runs}`, {time.strftime('%Y-%m-%d')}\n")
        print("| File | Size | none MiB/s | location MiB/s | Ratio (run by run) | Goal | Met |")
        print("|---|---|---|---|---|---|---|")
        for name, path in (("random", random_file), ("jpeg", jpeg)):
            off, on = speeds[(name, "none")], speeds[(name, "location")]
            ratio = statistics.median(b / a for a, b in zip(off, on, strict=True))
            cells = [
                name,
                f"{path.stat().st_size / MiB:.0f} MiB",
                _spread(off),
                _spread(on),
                f"{ratio:.2f}x",
                ">= 0.95x",
                "yes" if ratio >= 0.95 else "no",
            ]
            print("| " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
