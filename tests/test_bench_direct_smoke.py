"""The direct-upload benchmark in smoke mode: 12 MiB in 5 MiB parts, one run. It proves
``bench.direct_upload`` still runs against an S3 server and reports every figure; at this
size they mean nothing, so nothing here looks at a speed."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.service_fixtures import unavailable

FIGURES = [
    "wall s, to 201",
    "API CPU s, to 201",
    "**API CPU s per GiB, to 201**",
    "API CPU s per GiB, to 201, less at-rest",
    "wall s, to ready",
    "API CPU s, to ready (direct: with verify)",
    "API CPU s per GiB, to ready",
    "moto (S3 server) CPU s, to ready",
    "client (this script) CPU s, to ready",
]
NUMBER = r"-?\d+\.\d+ \(-?\d+\.\d+--?\d+\.\d+\)"


@pytest.mark.e2e
@pytest.mark.slow
def test_direct_upload_smoke_reports_every_figure(tmp_path: Path) -> None:
    try:
        import boto3  # noqa: F401
        import moto.server  # noqa: F401
    except ImportError:
        unavailable("moto[server] and boto3 are not installed")
    out = tmp_path / "direct_upload.md"
    command = [sys.executable, "-m", "bench.direct_upload", "--size-mib", "12", "--runs", "1"]
    done = subprocess.run(
        [*command, "--part-mib", "5", "--idle-seconds", "1", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = out.read_text()
    assert report.strip() in done.stdout  # printed as well as written
    assert "--size-mib 12 --runs 1" in report  # the command line it was run with
    rows = {}
    for line in report.splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if line.startswith("| ") and cells[0] in FIGURES:
            rows[cells[0]] = cells
    assert list(rows) == FIGURES
    for cells in rows.values():
        # direct, through the API, and their ratio: each measured.
        assert all(re.fullmatch(NUMBER, cell) for cell in cells[1:3]), cells
        assert re.fullmatch(NUMBER + "x", cells[3]), cells
    for phase in ("start", "parts", "complete", "ready"):
        assert re.search(rf"^\| {phase} \| {NUMBER} \| {NUMBER} \|$", report, re.M), phase
    # The goal, three ways: as measured, the requests alone, less the at-rest rate.
    verdicts = re.findall(r"^\| .+ \| -?\d+\.\d+(?: \(.+\))? \| (yes|no) \|$", report, re.M)
    assert len(verdicts) == 3, report
    assert "## Machine and versions" in report
