"""Fixtures shared by the end-to-end tests."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

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
