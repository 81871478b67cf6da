"""qcompile::BitSerialConvThreshold / BitSerialGemmThreshold / PlaneMaxPool in onnxruntime against
the numpy twin (qcompile.ops.multibit_threshold): packed output codes equal bit for bit, under every
kernel variant of the bit-serial table, W as a graph input and as a constant, 1 and 2 threads.

Thresholds are drawn around the range D actually takes (sorted per channel, random direction), so
every level boundary is crossed; the twin counts in int64 and is itself checked against a plain
per-element loop on one case."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto
from test_ops_bitserial import (  # tests/ops is on the path of its own tests
    CONV_GEOMS,
    PRECISIONS,
    VARIANT_PARAMS,
    _act_coeffs,
    _operands,
    _session,
    _weights,
)

from qcompile.ops import bitserial, multibit_threshold

U64, I32 = TensorProto.UINT64, TensorProto.INT32
TYPES_T = [("X", U64), ("W", U64), ("thresholds", I32), ("direction", I32)]

# output codes: (out_base, levels L, out_planes): unsigned 2-bit, signed 2-bit, unsigned 4-bit
# (zero point 0), 3-bit with zero point 2 (v in [-2, 5]), more planes than needed
OUT_CODES = [(0, 3, 2), (-2, 3, 2), (0, 15, 4), (-2, 7, 4), (1, 2, 3)]


def _thresholds(rng, d: np.ndarray, levels: int) -> tuple[np.ndarray, np.ndarray]:
    """[M, L] int32 thresholds spread over D's range (ties with real D values included)."""
    m = d.shape[1]
    per = np.moveaxis(d, 1, 0).reshape(m, -1)
    lo, hi = per.min(axis=1) - 2, per.max(axis=1) + 2
    t = np.stack([rng.integers(lo[i], hi[i] + 1, size=levels) for i in range(m)])
    t[:, 0] = per[:, 0]  # a threshold equal to a D value: the >= / <= tie
    direction = np.where(rng.random(m) < 0.5, 1, -1).astype(np.int32)
    t = np.sort(t, axis=1)
    t = np.where(direction[:, None] > 0, t, t[:, ::-1])
    if m > 1:  # a channel that is always at the top level, one always at the bottom
        t[0] = np.iinfo(np.int32).min if direction[0] > 0 else np.iinfo(np.int32).max
        t[-1] = np.iinfo(np.int32).max if direction[-1] > 0 else np.iinfo(np.int32).min
    return t.astype(np.int32), direction


def test_threshold_codes_against_a_loop():
    rng = np.random.default_rng(0)
    d = rng.integers(-20, 21, size=(2, 5, 3, 4))
    t, direction = _thresholds(rng, d, 3)
    got = multibit_threshold.threshold_codes(d, t, direction, -1)
    for idx in np.ndindex(d.shape):
        m = idx[1]
        passed = [(d[idx] >= tk) if direction[m] > 0 else (d[idx] <= tk) for tk in t[m]]
        assert got[idx] == -1 + sum(passed)


def _conv_case(aprec, wprec, geom, seed=0):
    c, m, (h, w), (kh, kw), s, dil, pads, g, n = geom
    rng = np.random.default_rng(c + m + kh + seed)
    abits, asigned = aprec
    acts = _operands(rng, (n, c, h, w), abits, asigned)
    _, wp, wcoeffs, woff = _weights(rng, (m, c // g, kh, kw), wprec)
    xp = bitserial.quantize_pack(acts.astype(np.float32), scale=1.0, bitwidth=abits, signed=int(asigned), group=g)
    geo = dict(in_channels=c, kernel_shape=[kh, kw], strides=[s, s], pads=list(pads), dilations=[dil, dil], group=g)
    planes = dict(act_coeffs=_act_coeffs(abits, asigned), weight_coeffs=wcoeffs, weight_offset=woff)
    ref = {**{k: tuple(v) if isinstance(v, list) else v for k, v in geo.items()}, **planes}
    return rng, xp, wp, geo, planes, ref


@pytest.mark.parametrize("out_code", OUT_CODES, ids=lambda o: f"base{o[0]}-L{o[1]}-P{o[2]}")
@pytest.mark.parametrize("aprec,wprec", PRECISIONS, ids=lambda p: f"{p[0]}{p[1]}")
@pytest.mark.parametrize("geom", CONV_GEOMS, ids=lambda g: f"C{g[0]}-M{g[1]}-k{g[3][0]}x{g[3][1]}-g{g[7]}")
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("variant", VARIANT_PARAMS)
def test_bitserial_conv_threshold(out_code, aprec, wprec, geom, threads, variant):
    rng, xp, wp, geo, planes, ref = _conv_case(aprec, wprec, geom)
    out_base, levels, out_planes = out_code
    d = bitserial.bitserial_conv_int(xp, wp, **ref)
    t, direction = _thresholds(rng, d, levels)
    m = wp.shape[0]
    for out_group in sorted({1, geo["group"]} | ({2} if m % 2 == 0 else set())):
        attrs = dict(out_base=out_base, out_planes=out_planes, out_group=out_group)
        want = multibit_threshold.bitserial_conv_threshold(xp, wp, t, direction, **attrs, **ref)
        sess = _session("BitSerialConvThreshold", TYPES_T, U64, threads, variant, **geo, **planes, **attrs)
        (y,) = sess.run(None, {"X": xp, "W": wp, "thresholds": t, "direction": direction})
        assert y.dtype == np.uint64 and np.array_equal(y, want), f"out_group {out_group}"
    w_init = [onnx.numpy_helper.from_array(wp, "W")]
    sess = _session("BitSerialConvThreshold", TYPES_T, U64, threads, variant, w_init, **geo, **planes, **attrs)
    (y,) = sess.run(None, {"X": xp, "thresholds": t, "direction": direction})
    assert np.array_equal(y, want)


@pytest.mark.parametrize("channels", [1, 63, 64, 65, 130])
@pytest.mark.parametrize("variant", VARIANT_PARAMS)
def test_bitserial_conv_threshold_output_widths(channels, variant):
    """Output channel counts at, below and above the 64-bit word (the packed output's width)."""
    geom = (20, channels, (5, 4), (3, 3), 1, 1, (1, 1, 1, 1), 1, 2)
    rng, xp, wp, geo, planes, ref = _conv_case((2, False), (2, True), geom, seed=channels)
    d = bitserial.bitserial_conv_int(xp, wp, **ref)
    t, direction = _thresholds(rng, d, 3)
    attrs = dict(out_base=0, out_planes=2, out_group=1)
    sess = _session("BitSerialConvThreshold", TYPES_T, U64, 2, variant, **geo, **planes, **attrs)
    (y,) = sess.run(None, {"X": xp, "W": wp, "thresholds": t, "direction": direction})
    assert np.array_equal(y, multibit_threshold.bitserial_conv_threshold(xp, wp, t, direction, **attrs, **ref))


@pytest.mark.parametrize("k,m", [(1, 3), (63, 64), (64, 65), (130, 11)])
@pytest.mark.parametrize("aprec,wprec", PRECISIONS[:2], ids=lambda p: f"{p[0]}{p[1]}")
@pytest.mark.parametrize("variant", VARIANT_PARAMS)
def test_bitserial_gemm_threshold(k, m, aprec, wprec, variant):
    n = 3
    rng = np.random.default_rng(k + m)
    abits, asigned = aprec
    acts = _operands(rng, (n, k), abits, asigned)
    _, wp, wcoeffs, woff = _weights(rng, (m, k), wprec)
    xp = bitserial.quantize_pack(acts.astype(np.float32), scale=1.0, bitwidth=abits, signed=int(asigned))
    dense = dict(in_features=k, act_coeffs=_act_coeffs(abits, asigned), weight_coeffs=wcoeffs, weight_offset=woff)
    d = bitserial.bitserial_gemm_int(xp, wp, **dense)
    for out_base, levels, out_planes in OUT_CODES:
        t, direction = _thresholds(rng, d, levels)
        attrs = dict(out_base=out_base, out_planes=out_planes)
        want = multibit_threshold.bitserial_gemm_threshold(xp, wp, t, direction, **attrs, **dense)
        sess = _session("BitSerialGemmThreshold", TYPES_T, U64, 2, variant, **dense, **attrs)
        (y,) = sess.run(None, {"X": xp, "W": wp, "thresholds": t, "direction": direction})
        assert np.array_equal(y, want)
        w_init = [onnx.numpy_helper.from_array(wp, "W")]
        sess = _session("BitSerialGemmThreshold", TYPES_T, U64, 1, variant, w_init, **dense, **attrs)
        (y,) = sess.run(None, {"X": xp, "thresholds": t, "direction": direction})
        assert np.array_equal(y, want)


def test_threshold_codes_feed_the_next_layer():
    """The output is the consumer's QuantizePack layout: thresholds at the half steps of an
    identity quantizer of D (scale 1) give exactly QuantizePack(clip(D)) of the same planes."""
    geom = CONV_GEOMS[0]
    _, xp, wp, geo, planes, ref = _conv_case((2, False), (2, True), geom)
    d = bitserial.bitserial_conv_int(xp, wp, **ref)
    m = wp.shape[0]
    # unsigned 2-bit code of x = D: round(D) clamped to [0, 3]; level k+1 reached iff D >= k + 1
    t = np.tile(np.array([1, 2, 3], np.int32), (m, 1))
    sess = _session("BitSerialConvThreshold", TYPES_T, U64, 1, None, **geo, **planes, out_base=0, out_planes=2)
    (y,) = sess.run(None, {"X": xp, "W": wp, "thresholds": t, "direction": np.ones(m, np.int32)})
    want = bitserial.quantize_pack(d.astype(np.float32), scale=1.0, bitwidth=2, signed=0)
    assert np.array_equal(y, want)


def test_threshold_errors():
    geo = dict(in_channels=64, kernel_shape=[3, 3], act_coeffs=[1, 2], weight_coeffs=[1, -2])
    feeds = {
        "X": np.zeros((1, 5, 5, 2), np.uint64),
        "W": np.zeros((4, 3, 3, 2), np.uint64),
        "thresholds": np.zeros((4, 3), np.int32),
        "direction": np.ones(4, np.int32),
    }
    sess = _session("BitSerialConvThreshold", TYPES_T, U64, **geo, out_planes=2)
    assert sess.run(None, feeds)[0].shape == (1, 3, 3, 2)
    with pytest.raises(Exception, match=r"BitSerialConvThreshold.*attribute 'out_planes'.*required"):
        _session("BitSerialConvThreshold", TYPES_T, U64, **geo).run(None, feeds)
    with pytest.raises(Exception, match=r"codes out_base \+ \[0, L\] = \[-1, 2\] do not fit 2 two's complement"):
        _session("BitSerialConvThreshold", TYPES_T, U64, **geo, out_planes=2, out_base=-1).run(None, feeds)
    bad_dir = {**feeds, "direction": np.array([1, 0, 1, 1], np.int32)}
    with pytest.raises(Exception, match=r"input direction: expected \+1 or -1 per channel, got 0 at index 1"):
        sess.run(None, bad_dir)
    unsorted = {**feeds, "thresholds": np.array([[0, 1, 2], [0, 2, 1], [0, 0, 0], [1, 1, 1]], np.int32)}
    with pytest.raises(Exception, match=r"channel 1 must be non-decreasing \(direction \+1\), got 2 then 1"):
        sess.run(None, unsorted)
    with pytest.raises(Exception, match=r"input thresholds: expected shape \[M, L\] with M = 4"):
        sess.run(None, {**feeds, "thresholds": np.zeros((3, 3), np.int32)})
    with pytest.raises(Exception, match=r"out_group' \(3\) must divide the 4 output channels"):
        _session("BitSerialConvThreshold", TYPES_T, U64, **geo, out_planes=2, out_group=3).run(None, feeds)
    big = {**geo, "in_channels": 16384, "act_coeffs": [1, 2, 4, 8], "weight_coeffs": [1, 2, 4, -8]}
    with pytest.raises(Exception, match=r"more than the 16777216 its float32 output holds exactly"):
        _session("BitSerialConvThreshold", TYPES_T, U64, **big, out_planes=2).run(None, feeds)
    # the sweeps' `kernel` attribute reaches the op (an unknown name is refused, naming the table)
    with pytest.raises(Exception, match=r"BitSerialConvThreshold.*kernel.*bogus.*avx2"):
        _session("BitSerialConvThreshold", TYPES_T, U64, 1, "bogus", **geo, out_planes=2).run(None, feeds)
    dense = dict(in_features=64, act_coeffs=[1, 2], weight_coeffs=[1, -2], out_planes=2)
    with pytest.raises(Exception, match=r"BitSerialGemmThreshold.*a dense output has one group, got 2"):
        _session("BitSerialGemmThreshold", TYPES_T, U64, **dense, out_group=2).run(
            None, {**feeds, "X": np.zeros((1, 2), np.uint64), "W": np.zeros((4, 2), np.uint64)})


# ------------------------------------------------------------------------------ PlaneMaxPool

POOL_CASES = [
    # planes, signed, group, channels per group, (H, W), kernel, stride, pads, dilation
    (2, 0, 1, 64, (6, 6), (2, 2), 2, (0, 0, 0, 0), 1),
    (2, 1, 1, 70, (5, 7), (3, 3), 2, (1, 1, 1, 1), 1),
    (4, 0, 2, 30, (4, 5), (2, 3), 1, (0, 1, 1, 0), 1),
    (3, 1, 1, 130, (7, 7), (3, 3), 1, (0, 0, 0, 0), 2),
    (1, 0, 1, 5, (3, 3), (2, 2), 1, (1, 1, 1, 1), 1),
]


@pytest.mark.parametrize("planes,signed,group,cg,hw,kernel,stride,pads,dil", POOL_CASES)
@pytest.mark.parametrize("threads", [1, 2])
def test_plane_maxpool(planes, signed, group, cg, hw, kernel, stride, pads, dil, threads):
    rng = np.random.default_rng(planes * 7 + cg)
    n = 2
    lo, hi = (-(1 << (planes - 1)), (1 << (planes - 1)) - 1) if signed else (0, (1 << planes) - 1)
    v = rng.integers(lo, hi + 1, size=(n, group * cg, *hw))
    xp = multibit_threshold.pack_code_planes(v, planes, bool(signed), group)
    flip = (rng.random(group * cg) < 0.3).astype(np.uint8)
    from qcompile.ops.packing import pack_last_axis

    or_mask = pack_last_axis(flip.reshape(group, cg)).reshape(-1)
    attrs = dict(kernel_shape=list(kernel), strides=[stride, stride], pads=list(pads), dilations=[dil, dil],
                 planes=planes, group=group, signed=signed)
    sess = _session("PlaneMaxPool", [("X", U64), ("or_mask", U64)], U64, threads, None, **attrs)
    (y,) = sess.run(None, {"X": xp, "or_mask": or_mask})
    want = multibit_threshold.plane_maxpool(xp, or_mask, **{k: tuple(a) if isinstance(a, list) else a
                                                           for k, a in attrs.items()})
    assert np.array_equal(y, want)
    # the twin itself against float max/min pooling of the codes (no padding, where both agree)
    if pads == (0, 0, 0, 0) and dil == 1:
        import torch

        t = torch.tensor(v, dtype=torch.float64)
        mx = torch.nn.functional.max_pool2d(t, kernel, stride).numpy()
        mn = -torch.nn.functional.max_pool2d(-t, kernel, stride).numpy()
        pooled = np.where(flip.astype(bool)[None, :, None, None], mn, mx).astype(np.int64)
        assert np.array_equal(want, multibit_threshold.pack_code_planes(pooled, planes, bool(signed), group))


def test_plane_maxpool_errors():
    feeds = {"X": np.zeros((1, 4, 4, 4), np.uint64), "or_mask": np.zeros(2, np.uint64)}
    types = [("X", U64), ("or_mask", U64)]
    sess = _session("PlaneMaxPool", types, U64, kernel_shape=[2, 2], planes=2)
    assert sess.run(None, feeds)[0].shape == (1, 3, 3, 4)
    with pytest.raises(Exception, match=r"PlaneMaxPool.*attribute 'planes'.*required"):
        _session("PlaneMaxPool", types, U64, kernel_shape=[2, 2]).run(None, feeds)
    with pytest.raises(Exception, match=r"input X: expected last dim group\*planes\*Wg = 1\*3\*Wg"):
        _session("PlaneMaxPool", types, U64, kernel_shape=[2, 2], planes=3).run(None, feeds)
    with pytest.raises(Exception, match=r"input or_mask: expected shape \[2\]"):
        sess.run(None, {**feeds, "or_mask": np.zeros(4, np.uint64)})
    with pytest.raises(Exception, match=r"attribute 'signed': expected 0 or 1, got 2"):
        _session("PlaneMaxPool", types, U64, kernel_shape=[2, 2], planes=2, signed=2).run(None, feeds)


# ------------------------------------------------------------ dense kernels: constants, tasks

@pytest.mark.parametrize("n,k,m", [(1, 784, 256), (8, 1024, 256), (3, 200, 70)])
@pytest.mark.parametrize("aprec,wprec", [PRECISIONS[0], PRECISIONS[3]], ids=lambda p: f"{p[0]}{p[1]}")
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("variant", VARIANT_PARAMS)
def test_bitserial_gemm_threshold_constants(n, k, m, aprec, wprec, threads, variant):
    """W, thresholds and direction as constants (laid out and checked once, when the session is
    created), on MLP-sized layers; (8, 1024, 256) is big enough to run as parallel tasks. The
    thresholds of a second session fed as inputs must give the same codes."""
    rng = np.random.default_rng(k + m + n)
    abits, asigned = aprec
    acts = _operands(rng, (n, k), abits, asigned)
    _, wp, wcoeffs, woff = _weights(rng, (m, k), wprec)
    xp = bitserial.quantize_pack(acts.astype(np.float32), scale=1.0, bitwidth=abits, signed=int(asigned))
    dense = dict(in_features=k, act_coeffs=_act_coeffs(abits, asigned), weight_coeffs=wcoeffs, weight_offset=woff)
    d = bitserial.bitserial_gemm_int(xp, wp, **dense)
    t, direction = _thresholds(rng, d, 3)
    attrs = dict(out_base=-2, out_planes=2)
    want = multibit_threshold.bitserial_gemm_threshold(xp, wp, t, direction, **attrs, **dense)
    inits = [onnx.numpy_helper.from_array(a, name) for a, name in ((wp, "W"), (t, "thresholds"), (direction, "direction"))]
    sess = _session("BitSerialGemmThreshold", TYPES_T, U64, threads, variant, inits, **dense, **attrs)
    (y,) = sess.run(None, {"X": xp})
    assert np.array_equal(y, want)
    (y2,) = sess.run(None, {"X": xp})  # a second run on the prepared constants
    assert np.array_equal(y2, want)
    sess_in = _session("BitSerialGemmThreshold", TYPES_T, U64, threads, variant, inits[:1], **dense, **attrs)
    (y3,) = sess_in.run(None, {"X": xp, "thresholds": t, "direction": direction})
    assert np.array_equal(y3, want)


def test_bad_constant_thresholds_are_reported_by_the_run():
    """A constant threshold table that is not monotone is refused with the message a fed one gets."""
    rng = np.random.default_rng(1)
    acts = _operands(rng, (1, 64), 2, False)
    _, wp, wcoeffs, woff = _weights(rng, (4, 64), PRECISIONS[0][1])
    xp = bitserial.quantize_pack(acts.astype(np.float32), scale=1.0, bitwidth=2, signed=0)
    dense = dict(in_features=64, act_coeffs=_act_coeffs(2, False), weight_coeffs=wcoeffs, weight_offset=woff)
    t = np.array([[3, 1], [0, 1], [0, 1], [0, 1]], np.int32)
    direction = np.ones(4, np.int32)
    inits = [onnx.numpy_helper.from_array(a, name) for a, name in ((wp, "W"), (t, "thresholds"), (direction, "direction"))]
    sess = _session("BitSerialGemmThreshold", TYPES_T, U64, 1, None, inits, **dense, out_base=0, out_planes=2)
    with pytest.raises(Exception, match=r"thresholds: channel 0 must be non-decreasing"):
        sess.run(None, {"X": xp})
