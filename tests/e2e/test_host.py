"""custom_ops/examples/host.cc: built with CMake against the onnxruntime wheel, it prints the
same outputs as Python's onnxruntime for the same compiled model and input."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from graphs import binary_conv_model

import qcompile

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def host(tmp_path_factory) -> Path:
    if shutil.which("cmake") is None:
        pytest.skip("cmake is not on PATH")
    build = tmp_path_factory.mktemp("host-build")
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    configure = subprocess.run(
        ["cmake", "-S", str(ROOT), "-B", str(build), *generator, "-DQCOMPILE_BUILD_EXAMPLES=ON",
         f"-DPython3_EXECUTABLE={sys.executable}"], capture_output=True, text=True)
    assert configure.returncode == 0, configure.stdout[-2000:] + configure.stderr[-2000:]
    make = subprocess.run(["cmake", "--build", str(build), "--target", "qcompile_host"],
                          capture_output=True, text=True)
    assert make.returncode == 0, make.stdout[-3000:] + make.stderr[-2000:]
    return build / "qcompile_host"


def parse_outputs(text: str) -> dict[str, np.ndarray]:
    """The host's printout -> {name: float32 array of the printed shape}."""
    outputs: dict[str, np.ndarray] = {}
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        _, name, _, dims = lines[i].split()
        shape = [int(d) for d in dims.split("x")] if dims else []
        n = int(np.prod(shape))
        outputs[name] = np.array([float(v) for v in lines[i + 1:i + 1 + n]], np.float32).reshape(shape)
        i += 1 + n
    return outputs


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
