"""The benchmark script runs and writes what the README says (no speed is asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_quick_writes_json(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "bench.py"), "--quick", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads((tmp_path / "bench.json").read_text())
    (row,) = data["layers"]
    assert {"fp32", "int8"} <= set(row["median_ms"])
    supported = [v["name"] for v in data["variants"] if v["supported"] and v["name"] != "reference"]
    assert set(row["speedup_vs_fp32"]) == set(supported)
    for v, ratio in row["speedup_vs_fp32"].items():
        assert ratio == row["median_ms"]["fp32"] / row["median_ms"][v]
    assert data["machine"]["cores"] >= 1 and "popcount_ceiling_macs_per_s" in data


def test_bench_ops_smoke_covers_every_op(tmp_path):
    out = tmp_path / "ops.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "tools" / "bench_ops.py"),
            "--threads",
            "1",
            "--layers",
            "3",
            "--rounds",
            "1",
            "--min-ms",
            "1",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(out.read_text())
    rows = data["results"]
    assert [r["op"] for r in rows] == ["XnorConv", "BitSerialConv", "ShiftConv"]
    # every XnorConv variant's microkernel ceiling, and the fraction of it the layer reached
    ceilings = data["ceiling_binary_macs_per_s"]
    assert set(ceilings) == set(rows[0]["speedup_vs_float_conv"])
    assert all(c > 0 for c in ceilings.values())
    assert set(rows[0]["fraction_of_ceiling"]) == set(ceilings)
    assert all(f > 0 for f in rows[0]["fraction_of_ceiling"].values())
    for r in rows:
        for v, ratio in r["speedup_vs_float_conv"].items():
            assert ratio == r["median_ms"]["float_conv"] / r["median_ms"][v]


def test_bench_models_ab_smoke(tmp_path):
    import onnx
    from graphs import binary_conv_model

    from qcompile.compiler import compile as compile_model
    from qcompile.runtime import get_library_path

    ref = tmp_path / "ref.onnx"
    onnx.save(binary_conv_model(16, 16, hw=(8, 8)), ref)
    comp = tmp_path / "ref.q.onnx"
    compile_model(ref, comp, wbits=1, check_parity=False)
    out = tmp_path / "ab.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "tools" / "bench_models_ab.py"),
            "--old-lib",
            get_library_path(),
            "--float",
            str(ref),
            "--model",
            f"tiny={comp}",
            "--rounds",
            "1",
            "--repeats",
            "2",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(out.read_text())
    assert set(data["models"]["tiny"]) == {"before", "after"}
    assert all(len(v["compiled_over_float"]) == 1 for v in data["models"]["tiny"].values())
