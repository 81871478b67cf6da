"""qcompile::Pow2Quant / ShiftConv / ShiftGemm in onnxruntime against the numpy reference
(qcompile.ops.shift): the integer part D exactly (scale 1, bias 0) and the float output bit for bit,
over a covering selection of geometries x activation quantizers x weight kinds (not the full
cartesian product: every geometry meets every activation mode, weight kinds rotate), on each shift
kernel (the node attribute kernel=portable|avx2), plus one test per refusal checking that the message
names the op and the problem."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from kernel_variants import (
    have_hooks,
    hooks_session,
    shift_kernel_runs,
    variant_params,
    with_kernel,
)
from onnx import TensorProto, helper

from qcompile import runtime
from qcompile.ops import shift

F32, U8 = TensorProto.FLOAT, TensorProto.UINT8
TYPES4 = [("X", F32), ("W", U8), ("scale", F32), ("bias", F32)]


def _model(node, inputs: list[tuple[str, int]], inits=()) -> bytes:
    names = {i.name for i in inits}
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info(n, t, None) for n, t in inputs if n not in names],
        [helper.make_tensor_value_info("Y", F32, None)],
        initializer=list(inits),
    )
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("qcompile", 1)]
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 8
    return model.SerializeToString()


def _session(op: str, inputs=TYPES4, threads: int = 1, inits=(), kernel: str | None = None, **attrs):
    """A one-node session (node 'n0') running kernel variant `kernel` (None: the default), on the
    test-hooks library so the tests can see which shift kernel ran."""
    node = helper.make_node(op, [n for n, _ in inputs], ["Y"], domain="qcompile", name="n0", **attrs)
    return hooks_session(with_kernel(_model(node, inputs, inits), kernel), threads)


# ------------------------------------------------------------------------------ shift kernels

HAVE_AVX2 = "avx2" in runtime.kernel_variants("ShiftConv")
KERNELS = variant_params("ShiftConv")


@pytest.fixture(params=KERNELS)
def kernel(request, monkeypatch):
    """The shift kernel the test's sessions name in their `kernel` attribute."""
    monkeypatch.delenv("QCOMPILE_SHIFT_KERNEL", raising=False)
    if not have_hooks():  # no counters to check: the sessions run on the shipped library
        yield request.param
        return
    before = shift_kernel_runs(request.param)
    yield request.param
    assert shift_kernel_runs(request.param) > before  # the forced kernel really ran


def _assert_bits_equal(y: np.ndarray, want: np.ndarray) -> None:
    """Float32 results equal value for value and bit for bit (so -0.0 != 0.0)."""
    assert y.dtype == want.dtype == np.float32
    np.testing.assert_array_equal(y, want)
    np.testing.assert_array_equal(y.view(np.uint32), want.view(np.uint32))


def pow2_thresholds(levels: int) -> list[float]:
    """The trainer's thresholds for L levels: 2^-(L-1/2), then 2^-(p+1/2) for p = L-2 .. 0."""
    return [2.0 ** -(levels - 0.5)] + [2.0 ** -(p + 0.5) for p in range(levels - 2, -1, -1)]


# ------------------------------------------------------------------------ activation quantizers

def _uniform(bits, signed, narrow, zp, mode, scale=0.25):
    return {"act_mode": "uniform", "act_scale": scale, "act_zero_point": zp, "act_bitwidth": bits,
            "act_signed": signed, "act_narrow": narrow, "act_rounding_mode": mode}


ACTS = {
    "pow2-L1": {"act_mode": "pow2", "act_thresholds": pow2_thresholds(1)},  # ternary {0, +-1}
    "pow2-L2": {"act_mode": "pow2", "act_thresholds": [0.3, 1.7]},  # not the trainer's grid
    "pow2-L3": {"act_mode": "pow2", "act_thresholds": pow2_thresholds(3)},  # AQE 3-bit
    "pow2-L5": {"act_mode": "pow2", "act_thresholds": pow2_thresholds(5)},
    "pow2-L7": {"act_mode": "pow2", "act_thresholds": pow2_thresholds(7)},  # AQE 4-bit
    "u1-unsigned": _uniform(1, 0, 0, 0.0, "ROUND"),
    "u2-signed-narrow": _uniform(2, 1, 1, 0.0, "ROUND"),  # ternary
    "u3-signed-zp1": _uniform(3, 1, 0, 1.0, "FLOOR"),
    "u4-unsigned-zp3": _uniform(4, 0, 0, 3.0, "CEIL"),
    "u4-unsigned-narrow-zp-2": _uniform(4, 0, 1, -2.0, "ROUND_TO_ZERO"),
    "u4-signed": _uniform(4, 1, 0, 0.0, "ROUND", scale=0.375),
    "u8-signed": _uniform(8, 1, 0, 0.0, "ROUND", scale=0.02),  # the full int8 range
}


def _act_input(rng, shape, act: dict) -> np.ndarray:
    """Float input that reaches every code, with exact ties planted (thresholds, half steps)."""
    x = rng.standard_normal(shape).astype(np.float32)
    flat = x.reshape(-1)
    if act["act_mode"] == "pow2":
        t = np.asarray(act["act_thresholds"], np.float32)
        x *= np.float32(t[-1] * 1.5)
        ties = np.concatenate([t, -t, np.nextafter(t, np.float32(0)), [0.0, -0.0]]).astype(np.float32)
    else:
        s = np.float32(act["act_scale"])
        lo, hi = shift.uniform_act_range(act["act_bitwidth"], act["act_signed"], act["act_narrow"],
                                         act["act_zero_point"])
        x *= np.float32((hi - lo + 2) / 2) * s
        ties = (np.arange(lo - 2, hi + 2) + np.float32(0.5) - np.float32(act["act_zero_point"])) * s
        ties = np.concatenate([ties, [0.0, -0.0]]).astype(np.float32)
    k = min(len(ties), flat.size // 2)
    flat[rng.choice(flat.size, k, replace=False)] = ties[:k]
    return x


# --------------------------------------------------------------------------------- weight kinds

WEIGHT_KINDS = {
    "binary": [1, -1],  # all e = 0
    "ternary": [0, 1, -1],
    "aqe3": [0, 1, -1, 2, -2, 4, -4],  # AQE 3-bit {0, +-2^-p} as 2^-2 * {0, +-1, +-2, +-4}
    "e6": [0] + [s * (1 << e) for e in range(7) for s in (1, -1)],  # every code, e up to 6
}


def _weights(rng, m: int, k: int, kind: str) -> tuple[np.ndarray, np.ndarray]:
    w = rng.choice(WEIGHT_KINDS[kind], size=(m, k))
    wp = shift.encode_weights(w)
    np.testing.assert_array_equal(shift.decode_weights(wp, k), w)  # the oracle's own round trip
    return w, wp


# ------------------------------------------------------------------------------------ ShiftConv

CONV_GEOMS = [
    # C, M, (H, W), (KH, KW), strides, dilations, pads, group, batch
    (1, 4, (7, 9), (3, 3), (1, 1), (1, 1), (1, 1, 1, 1), 1, 1),
    (3, 5, (8, 6), (5, 3), (2, 1), (1, 2), (2, 1, 0, 3), 1, 3),
    (63, 6, (5, 7), (1, 1), (1, 1), (1, 1), (0, 0, 0, 0), 1, 1),
    (64, 8, (6, 5), (3, 5), (1, 2), (2, 1), (0, 0, 0, 0), 2, 1),
    (65, 3, (4, 9), (3, 1), (2, 2), (1, 1), (1, 0, 2, 1), 1, 3),
    (130, 4, (3, 4), (3, 3), (1, 1), (2, 2), (2, 2, 2, 2), 2, 1),
    (8, 8, (9, 7), (5, 5), (2, 2), (1, 1), (2, 2, 2, 2), 8, 2),  # depthwise
    (16, 16, (6, 6), (3, 3), (1, 1), (2, 2), (0, 1, 2, 0), 16, 1),  # depthwise, dilated, asymmetric
    (6, 4, (5, 5), (5, 5), (1, 1), (1, 1), (0, 0, 0, 0), 2, 1),  # 1 x 1 output
    (4, 2, (1, 3), (3, 3), (1, 1), (1, 1), (1, 1, 1, 1), 1, 3),  # taps cut on both sides
    (2, 3, (3, 2), (3, 3), (1, 2), (1, 1), (4, 3, 4, 3), 1, 1),  # all-padding outputs
]


def _conv_attrs(geom, act: dict) -> dict:
    c, _, _, (kh, kw), s, d, pads, g, _ = geom
    return dict(in_channels=c, kernel_shape=[kh, kw], strides=list(s), pads=list(pads), dilations=list(d), group=g,
                **act)


def _check_conv(
    geom, act_name: str, wkind: str, threads: int, w_const: bool = False, kernel: str | None = None
) -> None:
    c, m, (h, w), (kh, kw), _, _, _, g, n = geom
    act = ACTS[act_name]
    rng = np.random.default_rng(c * 1000 + m * 10 + kh)
    x = _act_input(rng, (n, c, h, w), act)
    _, wp = _weights(rng, m, (c // g) * kh * kw, wkind)
    attrs = _conv_attrs(geom, act)
    inits = [onnx.numpy_helper.from_array(wp, "W")] if w_const else []
    sess = _session("ShiftConv", threads=threads, inits=inits, kernel=kernel, **attrs)
    feeds = {"X": x} if w_const else {"X": x, "W": wp}
    d_ref = shift.shift_conv_int(x, wp, **attrs)
    (y,) = sess.run(None, {**feeds, "scale": np.ones(m, np.float32), "bias": np.zeros(m, np.float32)})
    np.testing.assert_array_equal(y, d_ref.astype(np.float32))  # D exactly
    scale = rng.uniform(-1, 1, m).astype(np.float32)
    bias = rng.standard_normal(m).astype(np.float32)
    (y,) = sess.run(None, {**feeds, "scale": scale, "bias": bias})
    _assert_bits_equal(y, shift.shift_conv(x, wp, scale, bias, **attrs))


@pytest.mark.parametrize("act_name", list(ACTS))
@pytest.mark.parametrize("gi", range(len(CONV_GEOMS)),
                         ids=[f"C{g[0]}-k{g[3][0]}x{g[3][1]}-s{g[4][0]}{g[4][1]}-g{g[7]}-n{g[8]}" for g in CONV_GEOMS])
def test_shift_conv(gi, act_name, kernel):
    """Every geometry x every activation quantizer; weight kinds and thread counts rotate."""
    ai = list(ACTS).index(act_name)
    wkind = list(WEIGHT_KINDS)[(gi + ai) % len(WEIGHT_KINDS)]
    _check_conv(CONV_GEOMS[gi], act_name, wkind, threads=1 + (gi + ai) % 2, kernel=kernel)


@pytest.mark.parametrize("wkind", list(WEIGHT_KINDS))
@pytest.mark.parametrize("act_name", ["pow2-L3", "pow2-L7", "u4-unsigned-zp3"])
def test_shift_conv_weight_kinds(wkind, act_name, kernel):
    """Every weight kind with the AQE activations, on a padded/strided and a grouped geometry."""
    for geom in (CONV_GEOMS[1], CONV_GEOMS[3]):
        _check_conv(geom, act_name, wkind, threads=2, kernel=kernel)


def test_shift_conv_constant_weights(kernel):
    _check_conv(CONV_GEOMS[4], "pow2-L3", "aqe3", threads=2, w_const=True, kernel=kernel)


def test_shift_conv_extremes(kernel):
    """Largest codes both ways (|a| = 128, |w_int| = 64) over the largest receptive field here."""
    c, k = 130, 5
    x = np.full((1, c, 5, 5), -1e9, np.float32)  # code -128 ...
    x[0, ::2] = 1e9  # ... and +127 on even channels
    even = (np.arange(c * k * k) // (k * k)) % 2 == 0
    w = np.stack([np.where(even, 64, -64), np.where(even, -64, 64)])  # D = +-K * 2^13 (about) at the centre
    wp = shift.encode_weights(w)
    attrs = dict(in_channels=c, kernel_shape=[k, k], pads=[2, 2, 2, 2], **ACTS["u8-signed"])
    (y,) = _session("ShiftConv", kernel=kernel, **attrs).run(None, {"X": x, "W": wp, "scale": np.ones(2, np.float32),
                                                     "bias": np.zeros(2, np.float32)})
    d_ref = shift.shift_conv_int(x, wp, **attrs)
    assert np.abs(d_ref).max() > 2**24  # beyond float32's exact integers: D itself is exact
    np.testing.assert_array_equal(y, d_ref.astype(np.float32))


def test_shift_conv_empty(kernel):
    """N = 0 gives an empty output; an empty image has only padded taps: Y = 0 * scale + bias."""
    wp = shift.encode_weights(np.ones((2, 9), np.int64))
    scale = np.array([2.0, -3.0], np.float32)
    bias = np.array([0.5, -0.0], np.float32)
    attrs = dict(in_channels=1, kernel_shape=[3, 3], pads=[2, 1, 2, 1], **ACTS["pow2-L3"])
    sess = _session("ShiftConv", kernel=kernel, **attrs)
    (y,) = sess.run(None, {"X": np.zeros((0, 1, 4, 4), np.float32), "W": wp, "scale": scale, "bias": bias})
    assert y.shape == (0, 2, 6, 4)
    x = np.zeros((2, 1, 0, 3), np.float32)  # OH = 0 + 2 + 2 - 3 + 1 = 2, OW = 3
    (y,) = sess.run(None, {"X": x, "W": wp, "scale": scale, "bias": bias})
    want = np.broadcast_to((np.float32(0) * scale + bias)[None, :, None, None], (2, 2, 2, 3))
    _assert_bits_equal(y, np.ascontiguousarray(want))
    _assert_bits_equal(y, shift.shift_conv(x, wp, scale, bias, **attrs))


# ------------------------------------------------------------------------------------ ShiftGemm

@pytest.mark.parametrize("k", [1, 63, 64, 65, 130])
@pytest.mark.parametrize("act_name", list(ACTS))
def test_shift_gemm(k, act_name, kernel):
    ai = list(ACTS).index(act_name)
    wkind = list(WEIGHT_KINDS)[(k + ai) % len(WEIGHT_KINDS)]
    n, m = (1, 3)[ai % 2], 37  # 37 outputs: more than one 32-channel task, the last one partial
    rng = np.random.default_rng(k * 100 + ai)
    act = ACTS[act_name]
    x = _act_input(rng, (n, k), act)
    w, wp = _weights(rng, m, k, wkind)
    attrs = dict(in_features=k, **act)
    sess = _session("ShiftGemm", kernel=kernel, threads=1 + ai % 2, **attrs)
    d_ref = shift.shift_gemm_int(x, wp, **attrs)
    np.testing.assert_array_equal(d_ref, shift.act_int(x, **act) @ w.T)  # the oracle's own check
    (y,) = sess.run(None, {"X": x, "W": wp, "scale": np.ones(m, np.float32), "bias": np.zeros(m, np.float32)})
    np.testing.assert_array_equal(y, d_ref.astype(np.float32))
    scale = rng.uniform(-1, 1, m).astype(np.float32)
    bias = rng.standard_normal(m).astype(np.float32)
    (y,) = sess.run(None, {"X": x, "W": wp, "scale": scale, "bias": bias})
    _assert_bits_equal(y, shift.shift_gemm(x, wp, scale, bias, **attrs))


@pytest.mark.parametrize("wkind", list(WEIGHT_KINDS))
def test_shift_gemm_weight_kinds(wkind, kernel):
    rng = np.random.default_rng(7)
    x = _act_input(rng, (4, 130), ACTS["pow2-L3"])
    _, wp = _weights(rng, 9, 130, wkind)
    attrs = dict(in_features=130, **ACTS["pow2-L3"])
    scale = rng.uniform(-1, 1, 9).astype(np.float32)
    bias = rng.standard_normal(9).astype(np.float32)
    (y,) = _session("ShiftGemm", kernel=kernel, threads=2, **attrs).run(None, {"X": x, "W": wp, "scale": scale, "bias": bias})
    _assert_bits_equal(y, shift.shift_gemm(x, wp, scale, bias, **attrs))


def test_shift_gemm_empty_batch():
    wp = shift.encode_weights(np.ones((3, 5), np.int64))
    sess = _session("ShiftGemm", in_features=5, **ACTS["pow2-L1"])
    (y,) = sess.run(None, {"X": np.zeros((0, 5), np.float32), "W": wp, "scale": np.ones(3, np.float32),
                           "bias": np.zeros(3, np.float32)})
    assert y.shape == (0, 3) and y.dtype == np.float32


# --------------------------------------------------------------------- kernel choice and bounds

def _extreme_case(rng, act_name: str, e: int, shape, k: int, m: int):
    """Activations at their extreme codes (each element the largest or the smallest code) and
    weights all +-2^e: every vpmaddubsw pair and every partial sum as large as the range allows.
    (+-1e9 quantize to the largest / smallest code in both modes.)"""
    act = ACTS[act_name]
    x = np.where(rng.random(shape) < 0.5, np.float32(-1e9), np.float32(1e9)).astype(np.float32)
    w = rng.choice([1 << e, -(1 << e)], size=(m, k))
    w[0] = 1 << e  # channel 0: all positive (D at its most positive where every a is the largest)
    return act, x, w, shift.encode_weights(w)


@pytest.mark.parametrize("e", [0, 3, 6])
@pytest.mark.parametrize("act_name", ["u8-signed", "pow2-L7", "u4-unsigned-zp3", "u4-unsigned-narrow-zp-2"])
def test_shift_saturation_bound(act_name, e, kernel):
    """|a| up to 128 (a = 127 and -128, uniform 8-bit) with |w_int| up to 64: the int8 path's pair
    sums reach 2 * 255 * 64 = 32640 (no saturation), bit-exact on both kernels, conv and gemm."""
    rng = np.random.default_rng(100 * e + list(ACTS).index(act_name))
    c, hw, m = 67, 6, 20
    act, x, _, wp = _extreme_case(rng, act_name, e, (2, c, hw, hw), c * 9, m)
    x[0] = 1e9  # image 0: every code the largest
    attrs = dict(in_channels=c, kernel_shape=[3, 3], pads=[1, 1, 1, 1], **act)
    ones, zeros = np.ones(m, np.float32), np.zeros(m, np.float32)
    (y,) = _session("ShiftConv", kernel=kernel, threads=2, **attrs).run(None, {"X": x, "W": wp, "scale": ones, "bias": zeros})
    d_ref = shift.shift_conv_int(x, wp, **attrs)
    np.testing.assert_array_equal(y, d_ref.astype(np.float32))
    k = 300
    act, xg, w, wp = _extreme_case(rng, act_name, e, (7, k), k, m)
    xg[0] = 1e9
    attrs = dict(in_features=k, **act)
    (y,) = _session("ShiftGemm", kernel=kernel, **attrs).run(None, {"X": xg, "W": wp, "scale": ones, "bias": zeros})
    d_ref = shift.shift_gemm_int(xg, wp, **attrs)
    np.testing.assert_array_equal(d_ref, shift.act_int(xg, **act) @ w.T)
    np.testing.assert_array_equal(y, d_ref.astype(np.float32))


def _runs() -> dict[str, int]:
    return {k: shift_kernel_runs(k) for k in ("portable", "avx2")}


@pytest.mark.parametrize("forced", KERNELS)
@pytest.mark.parametrize("how", ["attribute", "override"])
def test_shift_kernel_forced(forced, how, monkeypatch):
    """kernel=<name> (or QCOMPILE_SHIFT_KERNEL=<name>, over a node's own `kernel`) makes
    ShiftConv and ShiftGemm run that kernel and no other (the library counts runs per kernel)."""
    other = "avx2" if forced == "portable" else "portable"
    if how == "override":
        monkeypatch.setenv("QCOMPILE_SHIFT_KERNEL", forced)
    named = forced if how == "attribute" else other
    conv = _session("ShiftConv", kernel=named if HAVE_AVX2 else None, **CONV_OK)
    gemm = _session("ShiftGemm", kernel=named if HAVE_AVX2 else None, **GEMM_OK)
    monkeypatch.delenv("QCOMPILE_SHIFT_KERNEL", raising=False)  # read when the kernel was created
    before = _runs()
    conv.run(None, _conv_feeds())
    gemm.run(None, _gemm_feeds())
    gemm.run(None, _gemm_feeds())
    after = _runs()
    assert after[forced] - before[forced] == 3
    assert after[other] == before[other]


def test_shift_kernel_default(monkeypatch):
    """Unset: the int8 path when the CPU has AVX2 and a group has >= 8 output channels; the
    shift-and-add kernel otherwise (and for depthwise-like layers)."""
    monkeypatch.delenv("QCOMPILE_SHIFT_KERNEL", raising=False)
    wide = dict(in_channels=4, kernel_shape=[3, 3], **ACTS["pow2-L3"])
    feeds = _conv_feeds(W=np.zeros((8, 18), np.uint8), scale=np.ones(8, np.float32), bias=np.zeros(8, np.float32))
    before = _runs()
    _session("ShiftConv", **wide).run(None, feeds)
    _session("ShiftConv", **CONV_OK).run(None, _conv_feeds())  # 1 channel per group
    after = _runs()
    if HAVE_AVX2:
        assert (after["avx2"] - before["avx2"], after["portable"] - before["portable"]) == (1, 1)
    else:
        assert (after["avx2"] - before["avx2"], after["portable"] - before["portable"]) == (0, 2)


def test_shift_kernel_unknown(monkeypatch):
    match = r"qcompile::ShiftConv \(node 'n0'\): attribute 'kernel': 'sse9' is not a kernel variant of this op; expected one of avx2, portable"
    with pytest.raises(Exception, match=match):
        _session("ShiftConv", kernel="sse9", **CONV_OK).run(None, _conv_feeds())
    monkeypatch.setenv("QCOMPILE_SHIFT_KERNEL", "sse9")
    match = r"qcompile::ShiftConv \(node 'n0'\): QCOMPILE_SHIFT_KERNEL=sse9 is not a kernel variant; expected one of avx2, portable"
    with pytest.raises(Exception, match=match):
        _session("ShiftConv", **CONV_OK).run(None, _conv_feeds())


# ------------------------------------------------------------------------------------ Pow2Quant

SPECIAL = np.array([0.0, -0.0, np.nan, -np.nan, np.inf, -np.inf, 3e38, -3e38, 1e-45, -1e-45], np.float32)


@pytest.mark.parametrize("levels", range(1, 8))
def test_pow2_quant(levels):
    t = pow2_thresholds(levels)
    tf = np.asarray(t, np.float32)
    rng = np.random.default_rng(levels)
    ties = np.concatenate([tf, -tf, np.nextafter(tf, np.float32(0)), -np.nextafter(tf, np.float32(0)),
                           np.nextafter(tf, np.float32(np.inf))])
    x = np.concatenate([SPECIAL, ties, rng.standard_normal(40000).astype(np.float32) * tf[-1] * 2])
    x = x.astype(np.float32).reshape(1, -1)  # more than one 16384-element task
    (y,) = _session("Pow2Quant", [("X", F32)], threads=2, thresholds=t).run(None, {"X": x})
    want = shift.pow2_quant(x, t)
    _assert_bits_equal(y, want)
    # the grid: Y in {0, +-2^-p}; exact ties reach the threshold's level
    assert set(np.unique(np.abs(want))) <= {0.0, *(2.0**-p for p in range(levels))}
    assert np.abs(shift.pow2_quant(tf, t)).tolist() == [2.0 ** -(levels - 1 - j) for j in range(levels)]


def test_pow2_quant_shapes():
    t = pow2_thresholds(3)
    sess = _session("Pow2Quant", [("X", F32)], thresholds=t)
    for shape in [(), (0,), (3, 0, 2), (2, 3, 4, 5, 1)]:
        x = np.asarray(np.random.default_rng(0).standard_normal(shape), np.float32)
        (y,) = sess.run(None, {"X": x})
        assert y.shape == x.shape
        _assert_bits_equal(y, shift.pow2_quant(x, t))


# ------------------------------------------------------------------------------------- refusals

CONV_OK = dict(in_channels=4, kernel_shape=[3, 3], group=2, **ACTS["pow2-L3"])  # M = 2, K = 2*3*3 = 18
GEMM_OK = dict(in_features=5, **ACTS["pow2-L3"])


def _conv_feeds(**over):
    feeds = {"X": np.zeros((1, 4, 5, 5), np.float32), "W": np.zeros((2, 9), np.uint8),
             "scale": np.ones(2, np.float32), "bias": np.zeros(2, np.float32)}
    return {**feeds, **over}


def _gemm_feeds(**over):
    feeds = {"X": np.zeros((2, 5), np.float32), "W": np.zeros((3, 3), np.uint8),
             "scale": np.ones(3, np.float32), "bias": np.zeros(3, np.float32)}
    return {**feeds, **over}


def _without(d: dict, key: str) -> dict:
    return {k: v for k, v in d.items() if k != key}


CONV_REFUSALS = {
    # name: (attribute changes (None deletes), feed changes, message pattern)
    "x-rank": ({}, {"X": np.zeros((4, 5, 5), np.float32)}, r"input X: expected rank 4 \[N, C, H, W\], got shape \[4, 5, 5\]"),
    "x-channels": ({}, {"X": np.zeros((1, 3, 5, 5), np.float32)}, r"input X: expected C \(dim 1\) = in_channels = 4"),
    "w-rank": ({}, {"W": np.zeros((2, 9, 1), np.uint8)}, r"input W: expected rank 2 .*got shape \[2, 9, 1\]"),
    "w-row": ({}, {"W": np.zeros((2, 18), np.uint8)},
              r"input W: expected shape \[2, 9\] \(\[M, ceil\(Cg\*KH\*KW/2\)\] with Cg = 2.*got \[2, 18\]"),
    "m-group": ({}, {"W": np.zeros((3, 9), np.uint8)}, r"input W: expected M \(dim 0\) >= 1 and divisible by group 2"),
    "scale-length": ({}, {"scale": np.ones(3, np.float32)}, r"input scale: expected shape \[2\].*got \[3\]"),
    "bias-length": ({}, {"bias": np.ones((1, 2), np.float32)}, r"input bias: expected shape \[2\].*got \[1, 2\]"),
    "output-size": ({"kernel_shape": [7, 3]}, {"W": np.zeros((2, 21), np.uint8)}, r"output size < 1: input X \[1, 4, 5, 5\]"),
    "c-group": ({"group": 3}, {}, r"attribute 'group': expected >= 1 and dividing in_channels \(4\), got 3"),
    "in-channels": ({"in_channels": None}, {}, r"attribute 'in_channels'.*missing; it is required"),
    "kernel-shape": ({"kernel_shape": None}, {}, r"attribute 'kernel_shape'.*missing; it is required"),
    "strides": ({"strides": [1, 0]}, {}, r"attribute 'strides': expected \[sh, sw\] with values >= 1, got \[1, 0\]"),
    "dilations": ({"dilations": [0, 1]}, {}, r"attribute 'dilations': expected .*>= 1, got \[0, 1\]"),
    "pads": ({"pads": [0, -1, 0, 0]}, {}, r"attribute 'pads': expected .*>= 0, got \[0, -1, 0, 0\]"),
    "act-mode": ({"act_mode": "log2"}, {}, r"attribute 'act_mode': expected 'pow2' or 'uniform', got 'log2'"),
    "act-mode-missing": ({"act_mode": None}, {}, r"attribute 'act_mode'.*missing; it is required"),
    "thresholds-missing": ({"act_thresholds": None}, {}, r"attribute 'act_thresholds'.*missing or empty"),
    "thresholds-8": ({"act_thresholds": [*pow2_thresholds(7), 2.0]}, {}, r"attribute 'act_thresholds'.*too many"),
    "thresholds-order": ({"act_thresholds": [0.5, 0.25]}, {}, r"attribute 'act_thresholds'.*\[0.5, 0.25\] \(not ascending\)"),
    "thresholds-tie": ({"act_thresholds": [0.5, 0.5]}, {}, r"attribute 'act_thresholds'.*not ascending"),
    "thresholds-zero": ({"act_thresholds": [0.0, 0.5]}, {}, r"attribute 'act_thresholds'.*not finite and > 0"),
    "thresholds-inf": ({"act_thresholds": [0.5, float("inf")]}, {}, r"attribute 'act_thresholds'.*not finite and > 0"),
    "dtype-w": ({}, {}, ""),  # checked by onnxruntime at session creation (below)
}

UNIFORM_OK = _uniform(4, 1, 0, 0.0, "ROUND")
UNIFORM_REFUSALS = {
    "scale-missing": ({"act_scale": None}, r"attribute 'act_scale'.*missing; it is required with act_mode 'uniform'"),
    "scale-zero": ({"act_scale": 0.0}, r"attribute 'act_scale': expected a finite float > 0, got 0"),
    "scale-nan": ({"act_scale": float("nan")}, r"attribute 'act_scale': expected a finite float > 0, got nan"),
    "zero-point": ({"act_zero_point": 0.5}, r"attribute 'act_zero_point': expected an integer value, got 0.5"),
    "bitwidth": ({"act_bitwidth": 9}, r"attribute 'act_bitwidth': expected 1..8, got 9"),
    "bitwidth-missing": ({"act_bitwidth": None}, r"attribute 'act_bitwidth'.*missing"),
    "signed": ({"act_signed": 2}, r"attribute 'act_signed': expected 0 or 1, got 2"),
    "narrow": ({"act_narrow": -1}, r"attribute 'act_narrow': expected 0 or 1, got -1"),
    "rounding": ({"act_rounding_mode": "HALF_UP"}, r"attribute 'act_rounding_mode'.*got 'HALF_UP'"),
    "int8-unsigned": ({"act_bitwidth": 8, "act_signed": 0}, r"activation codes q - act_zero_point span \[0, 255\].*outside the int8 range \[-128, 127\]"),
    "int8-zero-point": ({"act_zero_point": 125.0}, r"activation codes q - act_zero_point span \[-133, -118\].*outside the int8 range"),
}


def _apply(attrs: dict, over: dict) -> dict:
    out = dict(attrs)
    for k, v in over.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = v
    return out


@pytest.mark.parametrize("case", list(CONV_REFUSALS))
def test_shift_conv_refusals(case):
    attr_over, feed_over, pattern = CONV_REFUSALS[case]
    attrs = _apply(CONV_OK, attr_over)
    if case == "dtype-w":  # element types are declared: onnxruntime refuses the model when loading it
        inputs = [("X", F32), ("W", F32), ("scale", F32), ("bias", F32)]
        with pytest.raises(Exception, match=r"Type 'tensor\(float\)' of input parameter \(W\) of operator \(ShiftConv\)"):
            _session("ShiftConv", inputs, **attrs)
        return
    sess = _session("ShiftConv", **attrs)
    with pytest.raises(Exception, match=r"(?s)INVALID_ARGUMENT.*qcompile::ShiftConv \(node 'n0'\): " + pattern):
        sess.run(None, _conv_feeds(**feed_over))


@pytest.mark.parametrize("case", list(UNIFORM_REFUSALS))
@pytest.mark.parametrize("op", ["ShiftConv", "ShiftGemm"])
def test_uniform_refusals(op, case):
    attr_over, pattern = UNIFORM_REFUSALS[case]
    base = _without(CONV_OK if op == "ShiftConv" else GEMM_OK, "act_thresholds")
    attrs = _apply({**base, **UNIFORM_OK}, attr_over)
    feeds = _conv_feeds() if op == "ShiftConv" else _gemm_feeds()
    with pytest.raises(Exception, match=rf"qcompile::{op} \(node 'n0'\): " + pattern):
        _session(op, **attrs).run(None, feeds)


def test_uniform_nan_refused():
    """A NaN has no uniform code: the op fails naming it, and so does the reference."""
    x = np.zeros((1, 4, 5, 5), np.float32)
    x[0, 1, 2, 3] = np.nan
    attrs = {**_without(CONV_OK, "act_thresholds"), **UNIFORM_OK}
    with pytest.raises(Exception, match=r"qcompile::ShiftConv.*input X \[1, 4, 5, 5\]: element 38 is NaN"):
        _session("ShiftConv", **attrs).run(None, _conv_feeds(X=x))
    with pytest.raises(ValueError, match="NaN"):
        shift.shift_conv_int(x, np.zeros((2, 9), np.uint8), **attrs)
    # pow2 activations map NaN to 0, as Pow2Quant does
    (y,) = _session("ShiftConv", **CONV_OK).run(None, _conv_feeds(X=x, W=np.full((2, 9), 0x11, np.uint8)))
    np.testing.assert_array_equal(y, np.zeros((1, 2, 3, 3), np.float32))


def test_dot_product_range_refused():
    """Worst case |D| = K * max|a| * 2^6 must stay below 2^31, checked from the attributes."""
    big = dict(in_channels=30000, kernel_shape=[3, 3], **UNIFORM_OK)  # 270000 * 8 * 64 fits ...
    _session("ShiftConv", **big)  # ... so the kernel is created
    bigger = {**big, "act_signed": 1, "act_bitwidth": 8}  # 270000 * 128 * 64 does not
    with pytest.raises(Exception, match=r"qcompile::ShiftConv.*can reach .*270000 terms, max \|a\| 128, max \|w_int\| 64"
                                         r"\), more than the int32 D holds"):
        _session("ShiftConv", **bigger).run(None, _conv_feeds())
    gemm = dict(in_features=300000, **_uniform(8, 1, 0, 0.0, "ROUND"))
    with pytest.raises(Exception, match=r"qcompile::ShiftGemm.*in_features = 300000 terms.*more than the int32 D"):
        _session("ShiftGemm", **gemm).run(None, _gemm_feeds())


GEMM_REFUSALS = {
    "x-rank": ({}, {"X": np.zeros((2, 5, 1), np.float32)}, r"input X: expected rank 2 \[N, K\], got shape \[2, 5, 1\]"),
    "x-features": ({}, {"X": np.zeros((2, 6), np.float32)}, r"input X: expected shape \[N, 5\] \(in_features 5\), got \[2, 6\]"),
    "w-row": ({}, {"W": np.zeros((3, 5), np.uint8)}, r"input W: expected shape \[M, 3\] .*got \[3, 5\]"),
    "w-empty": ({}, {"W": np.zeros((0, 3), np.uint8), "scale": np.ones(0, np.float32),
                     "bias": np.ones(0, np.float32)}, r"input W: .*M >= 1, got \[0, 3\]"),
    "scale-length": ({}, {"scale": np.ones(2, np.float32)}, r"input scale: expected shape \[3\]"),
    "in-features": ({"in_features": None}, {}, r"attribute 'in_features'.*missing; it is required"),
    "act-mode": ({"act_mode": "float"}, {}, r"attribute 'act_mode': expected 'pow2' or 'uniform', got 'float'"),
}


@pytest.mark.parametrize("case", list(GEMM_REFUSALS))
def test_shift_gemm_refusals(case):
    attr_over, feed_over, pattern = GEMM_REFUSALS[case]
    sess = _session("ShiftGemm", **_apply(GEMM_OK, attr_over))
    with pytest.raises(Exception, match=r"qcompile::ShiftGemm \(node 'n0'\): " + pattern):
        sess.run(None, _gemm_feeds(**feed_over))


@pytest.mark.parametrize("thresholds,pattern", [
    (None, r"attribute 'thresholds'.*missing or empty; it is required"),
    ([0.25, -0.5], r"attribute 'thresholds'.*\[0.25, -0.5\] \(not finite and > 0\)"),
    ([0.5, 0.25], r"attribute 'thresholds'.*\[0.5, 0.25\] \(not ascending\)"),
    ([0.25, float("nan")], r"attribute 'thresholds'.*not finite and > 0"),
    ([0.1 * i for i in range(1, 9)], r"attribute 'thresholds': expected 1..7 .* \(too many\)"),
])
def test_pow2_quant_refusals(thresholds, pattern):
    attrs = {} if thresholds is None else {"thresholds": thresholds}
    sess = _session("Pow2Quant", [("X", F32)], **attrs)
    with pytest.raises(Exception, match=r"qcompile::Pow2Quant \(node 'n0'\): " + pattern):
        sess.run(None, {"X": np.zeros(3, np.float32)})
