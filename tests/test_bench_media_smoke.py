"""The media benchmark in smoke mode: tiny inputs, one rep. It proves ``bench.media`` still
runs and prints its table; the figures mean nothing, so nothing here looks at a speed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

ROWS = ["video", "pdf", "pdf, png both", "audio"]
BASELINE_TOOL = {
    "video": "ffmpeg",
    "pdf": "pdftoppm",
    "pdf, png both": "pdftoppm",
    "audio": "ffmpeg",
}


def goal_rows(report: str) -> dict[str, list[str]]:
    """The first table's rows (the goals), by kind; the tables after it are details."""
    lines = report.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| Kind | What |"))
    rows = {}
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows[cells[0]] = cells
    return rows


@pytest.mark.slow
def test_media_smoke_prints_every_row(tmp_path: Path) -> None:
    if shutil.which("ffmpeg") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("ffmpeg is missing: CI must install it (make bench-deps)")
        pytest.skip("ffmpeg is not installed (make bench-deps installs it)")
    out = tmp_path / "media.md"
    done = subprocess.run(
        [sys.executable, "-m", "bench.media", "--smoke", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = out.read_text()
    assert report.strip() in done.stdout  # printed as well as written
    rows = goal_rows(report)
    assert list(rows) == ROWS
    for kind, cells in rows.items():
        assert cells[2] != "n/a", cells  # ours was measured
        if shutil.which(BASELINE_TOOL[kind]) is not None:
            assert cells[4] != "n/a" and cells[5] != "n/a", cells
    assert "## Machine and versions" in report
