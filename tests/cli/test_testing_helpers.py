"""qcompile.testing.assert_parity, and the GitHub Actions example (docs/ci/): its `run:` steps,
executed here as the job would, pass on a good model and fail on a tampered one."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from graphs import binary_conv_model

from qcompile.cli import main
from qcompile.testing import assert_parity

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / "docs" / "ci" / "github-actions-parity.yml"


def _tamper(path: Path) -> None:
    comp = onnx.load(path)
    xnor = next(n for n in comp.graph.node if n.op_type == "XnorConv")
    scale = next(i for i in comp.graph.initializer if i.name == xnor.input[2])
    values = onnx.numpy_helper.to_array(scale).copy()
    values[0] *= 2.0
    scale.CopyFrom(onnx.numpy_helper.from_array(values, scale.name))
    onnx.save(comp, path)


@pytest.fixture
def pair(tmp_path):
    ref, comp = tmp_path / "m.onnx", tmp_path / "m.q.onnx"
    onnx.save(binary_conv_model(cin=8, cout=8), ref)
    assert CliRunner().invoke(main, ["compile", str(ref), "-o", str(comp)]).exit_code == 0
    return ref, comp


def test_assert_parity_passes_and_returns_the_report(pair):
    ref, comp = pair
    x = {"x": np.random.default_rng(0).standard_normal((2, 8, 8, 8)).astype(np.float32)}
    report = assert_parity(ref, comp, x)
    assert report.passed and report.layers and report.input_source == "given"


def test_assert_parity_raises_with_the_per_layer_report(pair):
    ref, comp = pair
    _tamper(comp)
    with pytest.raises(AssertionError) as info:
        assert_parity(ref, comp)
    text = str(info.value)
    assert "MISMATCH output" in text and "MISMATCH layer 'conv'" in text and "first divergence" in text


def _run_steps() -> list[str]:
    """The `run:` commands of the workflow, in order (the file is plain enough to read by line)."""
    return [line.split("run:", 1)[1].strip() for line in WORKFLOW.read_text().splitlines()
            if line.strip().startswith("run:")]


@pytest.mark.parametrize("tampered", [False, True])
def test_github_actions_example_steps(tmp_path, tampered):
    steps = _run_steps()
    assert steps[0] == "pip install qcompile"  # the install step; here qcompile is installed already
    (tmp_path / "models").mkdir()
    onnx.save(binary_conv_model(cin=8, cout=8), tmp_path / "models" / "model.onnx")
    np.savez(tmp_path / "models" / "inputs.npz", x=np.random.default_rng(1).standard_normal((4, 8, 8, 8)).astype(np.float32))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    codes = []
    for step in steps[1:]:
        if tampered and "verify" in step:
            _tamper(tmp_path / "build" / "model.q.onnx")
        proc = subprocess.run(shlex.split(step), cwd=tmp_path, env=env, capture_output=True, text=True)
        codes.append(proc.returncode)
    report = json.loads((tmp_path / "build" / "parity.json").read_text())
    assert report["schema"] == "qcompile.verify/1"
    if tampered:
        assert codes == [0, 1] and not report["passed"]  # the verify step fails the job
    else:
        assert codes == [0, 0] and report["passed"]
