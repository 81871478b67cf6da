"""tools/brevitas_report.py: the closing table of issue 11 runs and writes its JSON rows (one small
model here; the whole set is the tool's own run). No speed is asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tools.brevitas_report", *args], capture_output=True, text=True,
                          timeout=300, cwd=ROOT)


def test_unknown_model_is_a_one_line_usage_error():
    proc = _run("--models", "tfc_2w2a,nope")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "expected model names from" in proc.stderr.splitlines()[-1] and "nope" in proc.stderr


def test_one_model_row_has_every_column(tmp_path):
    pytest.importorskip("brevitas_examples")
    pytest.importorskip("qonnx")
    out = tmp_path / "r.json"
    proc = _run("--models", "tfc_2w2a", "--rounds", "1", "--budget", "0.02", "--json", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "tfc_2w2a" in proc.stdout
    (row,) = json.loads(out.read_text())["rows"]
    # all four layers lowered (bit-serial or int8: the cost model chooses), none left float
    assert sum(row["lowered"].values()) == 4 and row["float_layers"] == {}
    assert row["compared_with"] == "qonnx" and row["top1_agreement"] == 1.0 and row["parity_passed"]
    assert row["max_abs_error"] <= 1e-5 * row["max_abs_reference"]  # float rounding of the folded scales
    assert 0 < row["size_ratio"] < 1 and row["compiled_ms"] > 0 and row["float_twin_ms"] > 0


def test_help_runs_as_module():
    proc = _run("--help")
    assert proc.returncode == 0 and proc.stdout.startswith("Usage: python -m tools.brevitas_report")
