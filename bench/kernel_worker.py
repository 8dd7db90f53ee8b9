"""S5's measure of one image in one system: its CPU time and output bytes. Each Python
system is a long-lived ``python -m bench.kernel serve`` process, so that imports and
warm-up stay out of the figure; ``vipsthumbnail`` is one command per size, timed by the
CPU of its child processes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from bench import kernel
from bench.measure import children_cpu
from tests.conftest import ROOT


class KernelWorker:
    def __init__(self, system: str) -> None:
        command = [sys.executable, "-m", "bench.kernel", "serve", system]
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT
        )

    def run(self, image: Path, out: Path) -> tuple[float, int]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(f"{image} {out}\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"kernel worker exited with {self.process.wait()}")
        answer = json.loads(line)
        return float(answer["cpu"]), int(answer["bytes"])

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(30)


def thumbnail_once(
    name: str, workers: dict[str, KernelWorker], image: Path, out: Path
) -> tuple[float, int]:
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    if name != "vipsthumbnail":
        return workers[name].run(image, out)
    before = children_cpu()
    for size in kernel.SIZES:
        target = f"{out}/{size}.webp[Q={kernel.WEBP_QUALITY},strip]"
        subprocess.run(["vipsthumbnail", str(image), "-s", str(size), "-o", target], check=True)
    return children_cpu() - before, kernel.output_bytes(str(out))
