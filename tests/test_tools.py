"""The benchmark script runs and writes what the README says (no speed is asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_quick_writes_json(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "bench.py"), "--quick", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads((tmp_path / "bench.json").read_text())
    (row,) = data["layers"]
    assert {"fp32", "int8"} <= set(row["median_ms"])
    supported = [v["name"] for v in data["variants"] if v["supported"] and v["name"] != "reference"]
    assert set(row["speedup_vs_fp32"]) == set(supported)
    for v, ratio in row["speedup_vs_fp32"].items():
        assert ratio == row["median_ms"]["fp32"] / row["median_ms"][v]
    assert data["machine"]["cores"] >= 1 and "popcount_ceiling_macs_per_s" in data
