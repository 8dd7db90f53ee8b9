"""The benchmark suite in smoke mode: tiny inputs, one run. It proves the suite still runs
and writes its table; the figures mean nothing, so nothing here looks at a speed."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

SCENARIOS = [
    "S1",
    "S2",
    "S3",
    "S4",
    "S5",
    "S6",
    "S7",
    "S8",
    "S9",
    "S10",
    "S11",
    "S12",
    "S13",
    "S14",
]


@pytest.mark.e2e
@pytest.mark.slow
def test_smoke_run_writes_every_scenario_row(tmp_path: Path) -> None:
    out = tmp_path / "results"
    done = subprocess.run(
        [sys.executable, "-m", "bench.run", "--smoke", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = (out / "latest.md").read_text()
    rows = [line for line in report.splitlines() if re.match(r"\| S\d+ \|", line)]
    assert {row.split("|")[1].strip() for row in rows} == set(SCENARIOS)
    # Every goal row has a verdict or says what it lacks; none is left empty.
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert cells[2] and cells[2] != "n/a", row  # uploads-api was measured
    assert "## Machine and versions" in report
    assert list((out / "raw").glob("*.json"))
