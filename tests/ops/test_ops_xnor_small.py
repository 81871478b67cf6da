"""XnorConv / XnorConvThreshold with few channels per group: the tap-concatenated path.

When a word is mostly pad bits, the fast kernels concatenate the KW taps of a kernel row into one
bit vector and add a per-edge-column correction for taps outside the image
(custom_ops/packed_conv/tap_concat.h). These cases run with QCOMPILE_XNOR_TAP_CONCAT=force (the
path whenever it saves a word) on every kernel variant, compare bit for bit with the numpy
reference, and read the test-hooks library's counter (kernel_variants.tap_concat_runs) to prove the
path ran, so a test cannot pass by falling back to the direct kernels.
"""

from __future__ import annotations

import os
from contextlib import contextmanager

import numpy as np
import onnx
import pytest
from kernel_variants import (
    VARIANT_PARAMS,
    hooks_session,
    lut_always,
    lut_runs,
    tap_concat_runs,
    with_kernel,
)
from onnx import TensorProto, helper
from test_ops_xnor import CONV_INPUTS, THRESHOLD_INPUTS, _model, bits_equal

from qcompile.ops import packing, xnor

U64, F32, I32 = TensorProto.UINT64, TensorProto.FLOAT, TensorProto.INT32
ENV = "QCOMPILE_XNOR_TAP_CONCAT"


def session(model: bytes, variant: str | None = None, threads: int = 1):
    """A test-hooks session whose qcompile nodes run kernel variant `variant`."""
    return hooks_session(with_kernel(model, variant), threads)


@contextmanager
def concat_mode(value: str | None):
    """QCOMPILE_XNOR_TAP_CONCAT while sessions are created (read when a kernel is constructed)."""
    old = os.environ.get(ENV)
    if value is None:
        os.environ.pop(ENV, None)
    else:
        os.environ[ENV] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = old


# C, M, (H, W), (KH, KW), (sh, sw), (dh, dw), pads, group, batch
GEOMS = [
    (16, 16, (9, 10), (3, 3), (1, 1), (1, 1), (1, 1, 1, 1), 1, 1),  # the Fashion-MNIST layer
    (16, 24, (7, 5), (3, 3), (1, 1), (1, 1), (0, 0, 0, 0), 1, 3),  # no padding, batch 3
    (32, 12, (6, 7), (3, 3), (1, 1), (1, 1), (1, 1, 1, 1), 1, 1),  # 2 words per kernel row
    (21, 9, (5, 6), (3, 3), (1, 1), (1, 1), (0, 2, 1, 0), 1, 3),  # asymmetric pads, 63 bits
    (3, 8, (6, 8), (5, 5), (1, 1), (1, 1), (2, 2, 2, 2), 1, 1),
    (1, 5, (4, 9), (3, 5), (1, 1), (1, 1), (1, 0, 2, 3), 1, 1),  # asymmetric, non-square kernel
    (6, 6, (7, 6), (3, 3), (1, 1), (1, 1), (1, 1, 1, 1), 6, 3),  # depthwise, Cg = 1
    (48, 15, (5, 7), (3, 3), (1, 1), (1, 1), (1, 1, 1, 1), 3, 1),  # 3 groups of 16
    (42, 14, (6, 6), (5, 5), (1, 1), (1, 1), (2, 2, 2, 2), 2, 1),  # Cg 21, 105 bits per row
    (16, 8, (9, 11), (3, 3), (2, 2), (1, 1), (1, 1, 1, 1), 1, 3),  # stride 2
    (16, 8, (8, 9), (3, 3), (1, 2), (2, 2), (2, 2, 2, 2), 1, 1),  # dilation 2, stride (1, 2)
    (32, 9, (5, 4), (1, 3), (1, 1), (1, 1), (0, 4, 0, 5), 1, 1),  # pads wider than the image
    (3, 4, (3, 2), (3, 5), (1, 1), (1, 1), (1, 2, 1, 2), 1, 1),  # every column is an edge
]


def _id(g) -> str:
    c, m, (h, w), (kh, kw), st, di, pads, grp, n = g
    return f"C{c}-M{m}-{h}x{w}-k{kh}x{kw}-s{st[0]}{st[1]}-d{di[0]}{di[1]}-p{''.join(map(str, pads))}-g{grp}-n{n}"


def _setup(geom, seed: int):
    c, m, (h, w), (kh, kw), st, di, pads, g, n = geom
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    wt = rng.standard_normal((m, c // g, kh, kw)).astype(np.float32)
    attrs = {
        "in_channels": c,
        "kernel_shape": [kh, kw],
        "strides": list(st),
        "pads": list(pads),
        "dilations": list(di),
        "group": g,
    }
    return packing.pack_activations(x, group=g), packing.pack_conv_weights(wt), attrs, rng


def _ref_attrs(attrs: dict) -> dict:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in attrs.items()}


def _conv_sessions(attrs: dict, wp: np.ndarray, variant: str):
    """XnorConv with W as an input and as a constant initializer (laid out at creation)."""
    node = helper.make_node("XnorConv", CONV_INPUTS, ["Y"], domain="qcompile", **attrs)
    inputs = [("X", U64), ("W", U64), ("scale", F32), ("bias", F32)]
    plain = session(_model([node], inputs, ["Y"]), variant)
    const = session(
        _model(
            [node],
            [i for i in inputs if i[0] != "W"],
            ["Y"],
            [onnx.numpy_helper.from_array(wp, "W")],
        ),
        variant,
    )
    return plain, const


def _expect_path(variant: str, before: int, runs: int) -> None:
    # The reference variant reads W as given and never concatenates; every other one must.
    want = before if variant == "reference" else before + runs
    assert tap_concat_runs() == want, "the tap-concatenated path did not run"


@pytest.mark.parametrize("variant", VARIANT_PARAMS)
@pytest.mark.parametrize("geom", GEOMS, ids=[_id(g) for g in GEOMS])
def test_xnor_conv_tap_concat(geom, variant: str):
    xp, wp, attrs, rng = _setup(geom, seed=len(_id(geom)) * 7 + geom[0])
    m = wp.shape[0]
    scale = rng.uniform(-2, 2, m).astype(np.float32)
    bias = rng.standard_normal(m).astype(np.float32)
    want = xnor.xnor_conv(xp, wp, scale, bias, **_ref_attrs(attrs))
    with concat_mode("force"):
        plain, const = _conv_sessions(attrs, wp, variant)
    before = tap_concat_runs()
    (y,) = plain.run(None, {"X": xp, "W": wp, "scale": scale, "bias": bias})
    assert bits_equal(y, want)
    (y,) = const.run(None, {"X": xp, "scale": scale, "bias": bias})
    assert bits_equal(y, want)
    _expect_path(variant, before, 2)
    # Integer part exactly: scale 1, bias 0 gives float(D).
    (y,) = plain.run(
        None, {"X": xp, "W": wp, "scale": np.ones(m, np.float32), "bias": np.zeros(m, np.float32)}
    )
    d = xnor.xnor_conv_int(xp, wp, **_ref_attrs(attrs))
    assert np.array_equal(y, d.astype(np.float32))


@pytest.mark.parametrize("variant", VARIANT_PARAMS)
@pytest.mark.parametrize("geom", GEOMS, ids=[_id(g) for g in GEOMS])
def test_xnor_conv_threshold_tap_concat(geom, variant: str):
    xp, wp, attrs, rng = _setup(geom, seed=len(_id(geom)) * 11 + geom[1])
    m = wp.shape[0]
    d = xnor.xnor_conv_int(xp, wp, **_ref_attrs(attrs))
    threshold = rng.choice(d.reshape(-1), m).astype(np.int32)  # ties occur
    threshold[:2] = [np.iinfo(np.int32).min, np.iinfo(np.int32).max][: min(2, m)]
    direction = rng.choice(np.array([-1, 1], np.int32), m)
    out_group = next(og for og in (3, 2, 1) if m % og == 0)
    node = helper.make_node(
        "XnorConvThreshold",
        ["X", "W", "threshold", "direction"],
        ["P"],
        domain="qcompile",
        out_group=out_group,
        **attrs,
    )
    inits = [onnx.numpy_helper.from_array(wp, "W")]
    with concat_mode("force"):
        plain = session(_model([node], THRESHOLD_INPUTS, ["P"]), variant)
        const = session(
            _model([node], [i for i in THRESHOLD_INPUTS if i[0] != "W"], ["P"], inits),
            variant,
            threads=2,
        )
    want = xnor.xnor_conv_threshold(
        xp, wp, threshold, direction, out_group=out_group, **_ref_attrs(attrs)
    )
    before = tap_concat_runs()
    (p,) = plain.run(None, {"X": xp, "W": wp, "threshold": threshold, "direction": direction})
    assert p.dtype == np.uint64 and np.array_equal(p, want)
    (p,) = const.run(None, {"X": xp, "threshold": threshold, "direction": direction})
    assert np.array_equal(p, want)
    _expect_path(variant, before, 2)


@pytest.mark.parametrize("variant", VARIANT_PARAMS)
def test_tap_concat_auto_mode(variant: str):
    """By default the path runs where it at least halves the words of a kernel row (16 channels,
    3x3) and not where it saves less (32 channels) or nothing (1x1, 64 channels); the results are
    the reference's either way."""
    cases = [
        ((16, 16, (9, 10), (3, 3), (1, 1), (1, 1), (1, 1, 1, 1), 1, 1), True),
        ((3, 8, (6, 8), (5, 5), (1, 1), (1, 1), (2, 2, 2, 2), 1, 1), True),
        ((32, 12, (6, 7), (3, 3), (1, 1), (1, 1), (1, 1, 1, 1), 1, 1), False),
        ((16, 8, (6, 7), (1, 1), (1, 1), (1, 1), (0, 0, 0, 0), 1, 1), False),
        ((64, 8, (5, 5), (3, 3), (1, 1), (1, 1), (1, 1, 1, 1), 1, 1), False),
    ]
    for geom, taken in cases:
        xp, wp, attrs, _rng = _setup(geom, seed=3)
        m = wp.shape[0]
        scale, bias = np.ones(m, np.float32), np.zeros(m, np.float32)
        with concat_mode(None):
            plain, _ = _conv_sessions(attrs, wp, variant)
        before, lut_before = tap_concat_runs(), lut_runs()
        (y,) = plain.run(None, {"X": xp, "W": wp, "scale": scale, "bias": bias})
        assert np.array_equal(y, xnor.xnor_conv_int(xp, wp, **_ref_attrs(attrs)).astype(np.float32))
        if lut_always(variant):  # the table-lookup kernel instead, on every geometry
            assert tap_concat_runs() == before and lut_runs() == lut_before + 1
        else:
            _expect_path(variant, before, 1 if taken else 0)
        with concat_mode("0"):
            off, _ = _conv_sessions(attrs, wp, variant)
        before = tap_concat_runs()
        (y2,) = off.run(None, {"X": xp, "W": wp, "scale": scale, "bias": bias})
        assert bits_equal(y2, y) and tap_concat_runs() == before


@pytest.mark.parametrize("variant", VARIANT_PARAMS)
def test_tap_concat_pad_bits(variant: str):
    """Pad bits set in X or W (outside SPEC): the direct kernels count them, so the concatenated
    path must not run; the result equals the same variant's with the path switched off."""
    geom = (16, 8, (6, 7), (3, 3), (1, 1), (1, 1), (1, 1, 1, 1), 1, 1)
    xp, wp, attrs, rng = _setup(geom, seed=5)
    m = wp.shape[0]
    scale = rng.uniform(-1, 1, m).astype(np.float32)
    bias = rng.standard_normal(m).astype(np.float32)
    junk = np.uint64(0xFFFF_0000_0000_0000)
    with concat_mode("0"):
        off, _ = _conv_sessions(attrs, wp, variant)
    for xj, wj in [(xp | junk, wp), (xp, wp | junk), (xp | junk, wp | junk)]:
        feeds = {"X": xj, "W": wj, "scale": scale, "bias": bias}
        (want,) = off.run(None, feeds)
        with concat_mode("force"):
            plain, const = _conv_sessions(attrs, wj, variant)
        before = tap_concat_runs()
        (y,) = plain.run(None, feeds)
        assert bits_equal(y, want)
        (y,) = const.run(None, {k: v for k, v in feeds.items() if k != "W"})
        assert bits_equal(y, want)
        assert tap_concat_runs() == before
