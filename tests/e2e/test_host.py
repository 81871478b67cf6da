"""custom_ops/examples/host.cc: built with CMake against the onnxruntime wheel, it prints the
same outputs as Python's onnxruntime for the same compiled model and input."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
from graphs import binary_conv_model
from host_output import parse_outputs

import qcompile


def test_host_prints_what_python_onnxruntime_computes(host: Path, tmp_path: Path):
    result = qcompile.compile(binary_conv_model(cin=70, cout=16, seed=3), tmp_path / "m.q.onnx", wbits=1)
    assert result.parity.passed
    x = np.random.default_rng(5).standard_normal((2, 70, 8, 8)).astype(np.float32)
    x.astype("<f4").tofile(tmp_path / "x.f32")
    run = subprocess.run(
        [str(host), str(tmp_path / "m.q.onnx"), qcompile.get_library_path(), str(tmp_path / "x.f32"), "2x70x8x8"],
        capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    printed = parse_outputs(run.stdout)
    sess = qcompile.InferenceSession(str(tmp_path / "m.q.onnx"), threads=1)
    expected = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {sess.get_inputs()[0].name: x}), strict=False))
    assert printed.keys() == expected.keys()
    for name, want in expected.items():
        # Same library, same onnxruntime, one thread: identical float32 (printed with 9 digits).
        np.testing.assert_array_equal(printed[name], want)


def test_host_rejects_an_input_of_the_wrong_size(host: Path, tmp_path: Path):
    np.zeros(10, np.float32).tofile(tmp_path / "x.f32")
    run = subprocess.run([str(host), "m.onnx", "lib.so", str(tmp_path / "x.f32"), "1x3x8x8"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    assert "expected" in run.stderr and "192" in run.stderr
