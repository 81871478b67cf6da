"""The benchmark script runs and writes what the README says (no speed is asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run_tool(name: str, *args: str) -> subprocess.CompletedProcess:
    """`python -m tools.<name> ARGS` from the repository root, as the README runs it."""
    return subprocess.run(
        [sys.executable, "-m", f"tools.{name}", *args],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )


@pytest.mark.parametrize(
    "name", ["bench", "bench_ops", "bench_lut", "bench_models_ab", "profile_model", "demo"]
)
def test_tool_runs_as_module_with_help(name):
    proc = _run_tool(name, "--help")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("Usage: python -m tools." + name)


@pytest.mark.parametrize(
    "args, hint",
    [(["--variants", "nope"], "--variants"), (["--layers", "7"], "--layers"),
     (["--threads", "one"], "--threads"), (["--rounds", "0"], "--rounds")],
)
def test_bench_ops_bad_option_is_one_line_error(tmp_path, args, hint):
    proc = _run_tool("bench_ops", *args, "--out", str(tmp_path / "x.json"))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    last = proc.stderr.splitlines()[-1]
    assert "Traceback" not in proc.stderr and last.startswith("Error: Invalid value for") and hint in last
    assert not (tmp_path / "x.json").exists()


def test_bench_quick_writes_json(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "tools.bench", "--quick", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
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
            "-m",
            "tools.bench_ops",
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
        cwd=ROOT,
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
            "-m",
            "tools.bench_models_ab",
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
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(out.read_text())
    assert set(data["models"]["tiny"]) == {"before", "after"}
    assert all(len(v["compiled_over_float"]) == 1 for v in data["models"]["tiny"].values())


def test_bench_models_set_smoke(tmp_path):
    """One trainer ConvNet and Brevitas's TFC through the whole-model benchmark: JSON with ratios
    and spreads, a PNG; a model the compiler refuses (TFC today) is reported, not a crash."""
    proc = _run_tool("bench_models", "--out", str(tmp_path), "--only", "convnet W1A1", "--only", "tfc_2w2a",
                     "--threads", "1", "--rounds", "1", "--budget", "0.002", "--no-tune")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = {r["model"]: r for r in json.loads((tmp_path / "bench_models.json").read_text())["rows"]}
    convnet = rows["convnet W1A1"]
    t = convnet["times"]
    assert convnet["vs_float"] == t["float"]["median_ms"] / t["qcompile"]["median_ms"]
    assert t["qcompile"]["p25_ms"] <= t["qcompile"]["median_ms"] <= t["qcompile"]["p75_ms"]
    assert "vs_int8" in convnet and (tmp_path / "bench_models.png").exists()
    assert rows["tfc_2w2a"].get("error", "not compilable: ").startswith("not compilable: ")
    assert "Traceback" not in proc.stdout + proc.stderr


def test_bench_lut_smoke_writes_every_shape(tmp_path):
    out = tmp_path / "lut.json"
    proc = _run_tool("bench_lut", "--rounds", "1", "--out", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = json.loads(out.read_text())["rows"]
    # ResNet-18's 3x3 layer shapes at 224x224, then the same shapes as 1x1 convolutions
    resnet = [(64, 56), (128, 28), (256, 14), (512, 7)]
    expected = [(c, 3, hw) for c, hw in resnet] + [(c, 1, hw) for c, hw in resnet]
    assert [(r["C"], r["kernel"], r["H"]) for r in rows] == expected
    for r in rows:
        assert {"fp32", "int8_qdq"} <= set(r["median_ms"]) and any(k.startswith("xnor_") for k in r["median_ms"])
        for key, t in r["median_ms"].items():
            assert r["vs_fp32"][key] == r["median_ms"]["fp32"] / t
    assert proc.stdout.splitlines()[-1] == f"wrote {out}"
