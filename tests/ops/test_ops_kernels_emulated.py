"""The AVX-512 XnorConv kernel on CPUs without AVX-512: its source is compiled against scalar
stand-ins for the intrinsics it uses (custom_ops/xnor/testing/avx512_emulation/) and checked
against the reference kernel on random geometries. This checks the kernel's loops, offsets and
window handling, not the instructions; test_ops_xnor.py runs the real kernel where the CPU has
AVX-512 VPOPCNTDQ. The portable kernel goes through the same harness as a check of the harness.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
XNOR = ROOT / "custom_ops" / "xnor"
CXX = shutil.which("g++") or shutil.which("c++")

pytestmark = pytest.mark.skipif(CXX is None, reason="no C++ compiler to build the kernel check")


@pytest.mark.parametrize(
    "source,kernel,layout,split_x,include",
    [
        (
            "xnor_conv__avx512vpopcnt.cc",
            "xnor_conv2d_u64__avx512vpopcnt",
            "kWeightsBlocked",
            0,
            "avx512_emulation",
        ),
        (
            "xnor_conv__avx512vpopcnt_csa.cc",
            "xnor_conv2d_u64__avx512vpopcnt_csa",
            "kWeightsBlocked",
            0,
            "avx512_emulation",
        ),
        ("xnor_conv__portable.cc", "xnor_conv2d_u64__portable", "kWeightsBlocked", 0, None),
    ],
    ids=["avx512vpopcnt-emulated", "avx512vpopcnt_csa-emulated", "portable"],
)
def test_kernel_matches_reference(tmp_path: Path, source, kernel, layout, split_x, include):
    exe = tmp_path / "kernel_check"
    cmd = [CXX, "-std=c++17", "-O1", "-ffp-contract=off"]
    if include:
        cmd += ["-I", str(XNOR / "testing" / include)]
    cmd += [
        f"-DKERNEL={kernel}",
        f"-DLAYOUT={layout}",
        f"-DSPLIT_X={split_x}",
        str(XNOR / "testing" / "kernel_check.cc"),
        str(XNOR / source),
        str(XNOR / "xnor_conv__reference.cc"),
        "-o",
        str(exe),
    ]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    out = subprocess.run([str(exe)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.strip().endswith(", 0 mismatches")
