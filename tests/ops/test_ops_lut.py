"""The table-lookup (LUT) convolution kernels (custom_ops/lut/).

The op sweeps (test_ops_xnor.py, test_ops_xnor_small.py, test_ops_bitserial.py) already run
every variant of the table, avx2_lut included, bit for bit against the numpy twins. Here: the
library's debug counter (qcompile_lut_runs) proves the LUT kernel is what ran, the default
"when faster" rule picks it only where it measured faster, inputs it cannot take (pad bits set,
table entries past int8) fall back to the variant's own kernel with the same result, and the
standalone harness (tools/lut_check.sh) checks the scalar and AVX2 kernels on random geometries.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import onnx
import pytest
from kernel_variants import XNOR_TABLE, hooks_session, lut_runs, with_kernel
from onnx import helper
from test_ops_bitserial import TYPES4, _act_coeffs, _operands, _weights, bits_equal
from test_ops_bitserial import _model as bs_model
from test_ops_xnor import conv_model, session

from qcompile import runtime
from qcompile.ops import bitserial, packing, xnor

ROOT = Path(__file__).resolve().parents[2]
F32 = onnx.TensorProto.FLOAT
BITSERIAL_TABLE = runtime.kernel_table("BitSerialConv")
HAVE_AVX2 = any(v.name == "avx2_lut" and v.supported for v in XNOR_TABLE)
needs_avx2 = pytest.mark.skipif(not HAVE_AVX2, reason="CPU lacks avx2 for the LUT kernel")


def _xnor_case(c, m, hw, k, pads, seed=0, stride=1):
    rng = np.random.default_rng(seed)
    xp = packing.pack_activations(rng.standard_normal((1, c, hw, hw)).astype(np.float32))
    wp = packing.pack_conv_weights(rng.standard_normal((m, c, k, k)).astype(np.float32))
    attrs = dict(in_channels=c, kernel_shape=[k, k], pads=list(pads), strides=[stride, stride])
    feeds = {
        "X": xp,
        "W": wp,
        "scale": rng.uniform(-2, 2, m).astype(np.float32),
        "bias": rng.standard_normal(m).astype(np.float32),
    }
    ref_attrs = {k_: tuple(v) if isinstance(v, list) else v for k_, v in attrs.items()}
    want = xnor.xnor_conv(xp, wp, feeds["scale"], feeds["bias"], **ref_attrs)
    return attrs, feeds, want


def _runs_lut(attrs, feeds, want, variant, env=None) -> bool:
    """Runs XnorConv under `variant`; checks it against the twin; whether the LUT kernel ran."""
    with pytest.MonkeyPatch.context() as mp:
        for k, v in (env or {}).items():
            mp.setenv(k, v)
        sess = hooks_session(with_kernel(conv_model(attrs), variant))
    before = lut_runs()
    (y,) = sess.run(None, feeds)
    assert bits_equal(y, want)
    return lut_runs() == before + 1


@needs_avx2
def test_lut_variant_runs_the_lut_kernel():
    attrs, feeds, want = _xnor_case(70, 13, 9, 3, (1, 1, 1, 1), stride=2)
    assert _runs_lut(attrs, feeds, want, "avx2_lut")


@needs_avx2
@pytest.mark.parametrize(
    "c,m,hw,k,pads,chosen",
    [
        (64, 16, 28, 1, (0, 0, 0, 0), True),  # 1x1, 784 positions
        (64, 16, 34, 3, (1, 1, 1, 1), True),  # 3x3, 34 x 36 >= 1024 positions
        (64, 16, 14, 3, (1, 1, 1, 1), False),  # 3x3 at 14x14: the XOR kernel measured faster
        (64, 16, 7, 1, (0, 0, 0, 0), False),
    ],
)
def test_lut_default_rule_avx2(c, m, hw, k, pads, chosen):
    attrs, feeds, want = _xnor_case(c, m, hw, k, pads, seed=hw)
    assert _runs_lut(attrs, feeds, want, "avx2") == chosen
    # QCOMPILE_LUT=0: the variant's own kernel, same result.
    assert not _runs_lut(attrs, feeds, want, "avx2", {"QCOMPILE_LUT": "0"})


@pytest.mark.skipif(
    not any(v.name == "avx512vpopcnt" and v.supported for v in XNOR_TABLE),
    reason="CPU lacks avx512f+avx512vpopcntdq",
)
@pytest.mark.parametrize(
    "c,m,hw,k,pads,chosen",
    [(64, 16, 28, 1, (0, 0, 0, 0), True), (64, 16, 34, 3, (1, 1, 1, 1), False)],
)
def test_lut_default_rule_avx512(c, m, hw, k, pads, chosen):
    """Against vpopcntq the LUT kernel measured faster only on 1x1 layers with many outputs."""
    attrs, feeds, want = _xnor_case(c, m, hw, k, pads, seed=hw)
    assert _runs_lut(attrs, feeds, want, "avx512vpopcnt") == chosen


@needs_avx2
def test_lut_pad_bits_fall_back():
    """A set pad bit (outside SPEC) is counted by the popcount kernels and not by the tables:
    the LUT path must not run, so every variant gives the same result."""
    attrs, feeds, _ = _xnor_case(40, 8, 6, 3, (1, 1, 1, 1))
    feeds = dict(feeds, X=feeds["X"] | np.uint64(1 << 63))
    (want,) = session(conv_model(attrs), "portable").run(None, feeds)
    assert not _runs_lut(attrs, feeds, want, "avx2_lut")


def _bitserial_case(c, m, hw, aprec, wprec, n=2):
    rng = np.random.default_rng(3)
    acts = _operands(rng, (n, c, hw, hw), *aprec)
    _, wp, wcoeffs, woff = _weights(rng, (m, c, 3, 3), wprec)
    xp = bitserial.quantize_pack(
        acts.astype(np.float32), scale=1.0, bitwidth=aprec[0], signed=int(aprec[1])
    )
    geo = dict(in_channels=c, kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    planes = dict(act_coeffs=_act_coeffs(*aprec), weight_coeffs=wcoeffs, weight_offset=woff)
    scale = rng.uniform(-1, 1, m).astype(np.float32)
    bias = rng.standard_normal(m).astype(np.float32)
    ref_geo = {**geo, "kernel_shape": (3, 3), "pads": (1, 1, 1, 1)}
    want = bitserial.bitserial_conv(xp, wp, scale, bias, **ref_geo, **planes)
    return geo, planes, {"X": xp, "W": wp, "scale": scale, "bias": bias}, want


def _bitserial_runs_lut(geo, planes, feeds, want, variant, inits=(), env=None) -> bool:
    with pytest.MonkeyPatch.context() as mp:
        for k, v in (env or {}).items():
            mp.setenv(k, v)
        node = helper.make_node(
            "BitSerialConv", [n for n, _ in TYPES4], ["Y"], domain="qcompile", **geo, **planes
        )
        sess = hooks_session(with_kernel(bs_model(node, TYPES4, F32, inits), variant), threads=2)
    before = lut_runs()
    (y,) = sess.run(None, {k: v for k, v in feeds.items() if not (inits and k == "W")})
    assert bits_equal(y, want)
    return lut_runs() == before + 1


@needs_avx2
@pytest.mark.parametrize(
    "aprec,wprec,lut",
    [
        ((2, False), (2, True), True),  # W2A2
        ((1, False), (2, True), True),  # 1-bit activations x 2-bit weights
        ((2, False), (1, "binary"), True),  # 2-bit activations x binary weights
        ((4, False), (4, False), False),  # entries up to 15 * 15: past int8, own kernel
    ],
    ids=["w2a2", "a1w2", "a2w1", "a4w4-fallback"],
)
def test_lut_bitserial(aprec, wprec, lut):
    geo, planes, feeds, want = _bitserial_case(37, 11, 7, aprec, wprec)
    for inits in [(), (onnx.numpy_helper.from_array(feeds["W"], "W"),)]:
        assert _bitserial_runs_lut(geo, planes, feeds, want, "avx2_lut", inits) == lut


@needs_avx2
@pytest.mark.parametrize("variant,hw,chosen", [("avx2", 28, True), ("avx2", 14, False)])
def test_lut_bitserial_default_rule(variant, hw, chosen):
    """avx2 takes the LUT kernel where it beat the split kernel (3x3 with >= 784 positions)."""
    assert any(v.name == variant and v.supported for v in BITSERIAL_TABLE)
    geo, planes, feeds, want = _bitserial_case(32, 8, hw, (2, False), (2, True), n=1)
    assert _bitserial_runs_lut(geo, planes, feeds, want, variant) == chosen
    assert not _bitserial_runs_lut(geo, planes, feeds, want, variant, env={"QCOMPILE_LUT": "0"})


@needs_avx2
@pytest.mark.skipif(shutil.which(os.environ.get("CXX", "g++")) is None, reason="no C++ compiler")
def test_lut_standalone_harness(tmp_path: Path):
    """Scalar and AVX2 LUT kernels vs the reference kernels on ~2300 random geometries each."""
    out = subprocess.run(
        ["bash", str(ROOT / "tools" / "lut_check.sh")],
        capture_output=True,
        text=True,
        env={**os.environ, "LUT_CHECK_DIR": str(tmp_path)},
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.strip().endswith(", 0 mismatches")
