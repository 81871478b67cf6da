"""qcompile::QuantizePack / BitSerialConv / BitSerialGemm in onnxruntime against the numpy
reference (qcompile.ops.bitserial): packed planes equal bit for bit, the integer part D exactly
(scale 1, bias 0), the float part bit for bit. QuantizePack and BitSerialConv/Gemm run under every kernel
variant of their op's table (the node attribute `kernel`), with W as a graph input and as a constant (laid out
once when the session is created)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from kernel_variants import variant_params, with_kernel
from onnx import TensorProto, helper

from qcompile import runtime
from qcompile.ops import bitserial

U64, F32 = TensorProto.UINT64, TensorProto.FLOAT
INPUTS4 = ["X", "W", "scale", "bias"]
TYPES4 = [("X", U64), ("W", U64), ("scale", F32), ("bias", F32)]


def _model(node, inputs: list[tuple[str, int]], out_type: int, inits=()) -> bytes:
    names = {i.name for i in inits}
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info(n, t, None) for n, t in inputs if n not in names],
        [helper.make_tensor_value_info(node.output[0], out_type, None)],
        initializer=list(inits),
    )
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("qcompile", 1)]
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 8
    return model.SerializeToString()


def _session(op: str, inputs, out_type, threads: int = 1, variant=None, inits=(), **attrs):
    """A one-node session running kernel variant `variant` (None: the default)."""
    node = helper.make_node(op, [n for n, _ in inputs], ["Y"], domain="qcompile", **attrs)
    model = with_kernel(_model(node, inputs, out_type, inits), variant)
    return runtime.InferenceSession(model, threads=threads)


VARIANT_PARAMS = variant_params("BitSerialConv")
QUANTIZE_VARIANTS = variant_params("QuantizePack")


def bits_equal(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal bit patterns (so -0.0 != 0.0): float32 results must match bit for bit."""
    same_kind = a.dtype == b.dtype == np.float32 and a.shape == b.shape
    return same_kind and np.array_equal(a.view(np.uint32), b.view(np.uint32))


def _code_range(bits: int, signed: bool) -> tuple[int, int]:
    return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)


def _act_coeffs(bits: int, signed: bool) -> list[int]:
    return bitserial.plane_coeffs(*bitserial.planes_needed(*_code_range(bits, signed)))


# ------------------------------------------------------------------------------ QuantizePack

QP_CASES = [
    # bitwidth, signed, narrow, zero_point, rounding_mode, planes (0 = as needed)
    (1, 0, 0, 0.0, "ROUND", 0),
    (2, 1, 0, 0.0, "ROUND", 0),  # signed 2-bit, as ternary uses
    (2, 1, 1, 0.0, "FLOOR", 0),
    (3, 0, 0, 0.0, "CEIL", 0),
    (4, 0, 1, 3.0, "ROUND_TO_ZERO", 0),  # zero point > 0: v = q - zp reaches below 0
    (4, 1, 0, 0.0, "ROUND", 6),  # more planes than needed
    (8, 0, 0, 0.0, "ROUND", 0),
]


@pytest.mark.parametrize("bitwidth,signed,narrow,zp,mode,planes", QP_CASES)
@pytest.mark.parametrize("shape,group", [((2, 70, 3, 4), 1), ((1, 130, 2, 3), 2), ((3, 65), 1)])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("variant", QUANTIZE_VARIANTS)
def test_quantize_pack(bitwidth, signed, narrow, zp, mode, planes, shape, group, threads, variant):
    rng = np.random.default_rng(bitwidth * 10 + signed)
    x = (rng.standard_normal(shape) * 2).astype(np.float32)
    x.flat[:4] = [0.0, -0.0, 0.125, -0.375]  # ties at half steps of scale 0.25
    attrs = dict(
        scale=0.25, zero_point=zp, bitwidth=bitwidth, signed=signed, narrow=narrow,
        rounding_mode=mode, planes=planes, group=group,
    )
    sess = _session("QuantizePack", [("X", F32)], U64, threads, variant, **attrs)
    (p,) = sess.run(None, {"X": x})
    want = bitserial.quantize_pack(x, **{**attrs, "planes": planes or None})
    assert p.dtype == np.uint64 and np.array_equal(p, want)


@pytest.mark.parametrize("pre_scale,pre_bias", [(2.0, -1.0), (1.0, 0.3), (-0.7, 0.0), (3.1, 1e-7)])
@pytest.mark.parametrize("shape", [(1, 784), (2, 70, 3, 4)])
@pytest.mark.parametrize("variant", QUANTIZE_VARIANTS)
def test_quantize_pack_pre_affine_is_the_mul_and_add_it_replaces(pre_scale, pre_bias, shape, variant):
    """pre_scale / pre_bias give bit for bit the codes of onnxruntime's Mul -> Add -> QuantizePack,
    including values whose rounded x * a + b lands exactly on a half step."""
    rng = np.random.default_rng(len(shape))
    x = (rng.standard_normal(shape) * 2).astype(np.float32)
    # x * a + b = 0.125 (a tie at scale 0.25) for the first values, where a is exact
    x.flat[:3] = (np.float32([0.125, -0.375, 0.625]) - np.float32(pre_bias)) / np.float32(pre_scale)
    q = dict(scale=0.25, zero_point=0.0, bitwidth=3, signed=1, narrow=0, rounding_mode="ROUND")
    fused = _session("QuantizePack", [("X", F32)], U64, 2, variant, **q, pre_scale=pre_scale, pre_bias=pre_bias)
    (got,) = fused.run(None, {"X": x})
    nodes = [
        helper.make_node("Mul", ["X", "a"], ["t"]),
        helper.make_node("Add", ["t", "b"], ["u"]),
        helper.make_node("QuantizePack", ["u"], ["Y"], domain="qcompile", **q),
    ]
    inits = [onnx.numpy_helper.from_array(np.float32(v).reshape(()), n) for v, n in ((pre_scale, "a"), (pre_bias, "b"))]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("X", F32, None)],
                              [helper.make_tensor_value_info("Y", U64, None)], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("qcompile", 1)])
    model.ir_version = 8
    (want,) = runtime.InferenceSession(with_kernel(model.SerializeToString(), variant)).run(None, {"X": x})
    assert np.array_equal(got, want)
    assert np.array_equal(got, bitserial.quantize_pack(x, **q, pre_scale=pre_scale, pre_bias=pre_bias))


def test_quantize_pack_pre_affine_errors():
    sess = _session("QuantizePack", [("X", F32)], U64, scale=0.5, bitwidth=4, signed=1, planes=2, pre_scale=4.0)
    with pytest.raises(Exception, match=r"QuantizePack.*value 4 \(x \* pre_scale \+ pre_bias\) quantizes"):
        sess.run(None, {"X": np.array([[0.0, 1.0]], np.float32)})
    sess = _session("QuantizePack", [("X", F32)], U64, scale=0.5, bitwidth=4, pre_bias=float("inf"))
    with pytest.raises(Exception, match=r"QuantizePack.*'pre_scale' / 'pre_bias': expected finite"):
        sess.run(None, {"X": np.zeros((1, 2), np.float32)})


@pytest.mark.parametrize("variant", QUANTIZE_VARIANTS)
def test_quantize_pack_errors(variant):
    zeros = {"X": np.zeros((1, 2), np.float32)}
    sess = _session("QuantizePack", [("X", F32)], U64, 1, variant, scale=0.5, bitwidth=4, signed=1, planes=2)
    match = r"QuantizePack.*value 3 quantizes to a code outside \[-2, 1\]"
    with pytest.raises(Exception, match=match):
        sess.run(None, {"X": np.array([[0.0, 3.0]], np.float32)})
    with pytest.raises(Exception, match=match):  # the first of two, past a vector of four
        sess.run(None, {"X": np.array([[0.0, 0.5, -0.5, -1.0, 1e-3, 3.0, 0.0, 5.0]], np.float32)})
    sess = _session("QuantizePack", [("X", F32)], U64, scale=0.5, bitwidth=9)
    with pytest.raises(Exception, match=r"QuantizePack.*'bitwidth': expected 1..8, got 9"):
        sess.run(None, zeros)
    sess = _session("QuantizePack", [("X", F32)], U64, bitwidth=2)
    with pytest.raises(Exception, match=r"QuantizePack.*attribute 'scale'.*missing"):
        sess.run(None, zeros)


# ------------------------------------------------------------------ BitSerialConv / Gemm

# activation (bits, signed), weight (bits, signed or "binary")
PRECISIONS = [
    ((2, False), (2, True)),
    ((3, True), (1, "binary")),
    ((1, False), (3, False)),
    ((4, False), (2, True)),
]
# every (M, N) in {1..4}^2 (unsigned M-bit activations; N = 1 binary +-1, else signed N-bit
# weights), ternary weights, and signed activations
PRECISION_GRID = [((m, False), (1, "binary") if n == 1 else (n, True)) for m in range(1, 5) for n in range(1, 5)] + [
    ((2, False), (2, "ternary")),
    ((4, False), (2, "ternary")),
    ((2, True), (3, True)),
]
CONV_GEOMS = [
    # C, M, (H, W), (KH, KW), stride, dilation, pads, group, batch
    (64, 9, (6, 7), (3, 3), 1, 1, (1, 1, 1, 1), 1, 1),
    (65, 8, (5, 6), (3, 1), 2, 1, (1, 0, 2, 1), 1, 2),
    (130, 6, (5, 9), (1, 5), 1, 2, (0, 2, 3, 1), 2, 1),
    (3, 5, (7, 4), (5, 5), 1, 1, (2, 2, 2, 2), 1, 1),
    (16, 16, (4, 4), (3, 3), 2, 1, (1, 1, 1, 1), 16, 2),
]


def _operands(rng, shape, bits: int, signed: bool) -> np.ndarray:
    lo, hi = _code_range(bits, signed)
    return rng.integers(lo, hi + 1, size=shape)


def _weights(rng, shape, wprec):
    """Integer weights, their packed planes, coefficients and offset."""
    bits, kind = wprec
    if kind == "binary":  # +-1 with bit 1 <-> -1: v = 1 - 2b
        codes = np.where(rng.random(shape) < 0.5, -1, 1)
        packed = bitserial.pack_weight_planes((codes < 0).astype(np.int64), 1, False)
        return codes, packed, [-2], 1
    if kind == "ternary":  # {-1, 0, 1}: the signed 2-bit (narrow) case
        codes = rng.integers(-1, 2, size=shape)
        return codes, bitserial.pack_weight_planes(codes, 2, True), bitserial.plane_coeffs(2, True), 0
    codes = _operands(rng, shape, bits, bool(kind))
    packed = bitserial.pack_weight_planes(codes, bits, bool(kind))
    return codes, packed, bitserial.plane_coeffs(bits, bool(kind)), 0


@pytest.mark.parametrize("aprec,wprec", PRECISIONS, ids=lambda p: f"{p[0]}{p[1]}")
@pytest.mark.parametrize("geom", CONV_GEOMS, ids=lambda g: f"C{g[0]}-k{g[3][0]}x{g[3][1]}-g{g[7]}")
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("variant", VARIANT_PARAMS)
def test_bitserial_conv(aprec, wprec, geom, threads, variant):
    c, m, (h, w), (kh, kw), s, d, pads, g, n = geom
    rng = np.random.default_rng(c + m + kh)
    abits, asigned = aprec
    acts = _operands(rng, (n, c, h, w), abits, asigned)
    _, wp, wcoeffs, woff = _weights(rng, (m, c // g, kh, kw), wprec)
    # Activations in QuantizePack's layout: scale 1, zero point 0, so v is the code itself.
    xp = bitserial.quantize_pack(
        acts.astype(np.float32), scale=1.0, bitwidth=abits, signed=int(asigned), group=g
    )
    geo = dict(
        in_channels=c, kernel_shape=[kh, kw], strides=[s, s], pads=list(pads), dilations=[d, d],
        group=g,
    )
    planes = dict(act_coeffs=_act_coeffs(abits, asigned), weight_coeffs=wcoeffs, weight_offset=woff)
    sess = _session("BitSerialConv", TYPES4, F32, threads, variant, **geo, **planes)
    ref = {**{k: tuple(v) if isinstance(v, list) else v for k, v in geo.items()}, **planes}
    d_ref = bitserial.bitserial_conv_int(xp, wp, **ref)
    ones, zeros = np.ones(m, np.float32), np.zeros(m, np.float32)
    (y,) = sess.run(None, {"X": xp, "W": wp, "scale": ones, "bias": zeros})
    assert np.array_equal(y, d_ref.astype(np.float32))
    scale = rng.uniform(-1, 1, m).astype(np.float32)
    bias = rng.standard_normal(m).astype(np.float32)
    (y,) = sess.run(None, {"X": xp, "W": wp, "scale": scale, "bias": bias})
    assert bits_equal(y, bitserial.bitserial_conv(xp, wp, scale, bias, **ref))
    # W as a constant: laid out once when the session is created.
    w_init = [onnx.numpy_helper.from_array(wp, "W")]
    sess_c = _session("BitSerialConv", TYPES4, F32, threads, variant, w_init, **geo, **planes)
    (y,) = sess_c.run(None, {"X": xp, "scale": scale, "bias": bias})
    assert bits_equal(y, bitserial.bitserial_conv(xp, wp, scale, bias, **ref))


@pytest.mark.parametrize("k", [1, 63, 64, 65, 130])
@pytest.mark.parametrize("aprec,wprec", PRECISIONS[:2], ids=lambda p: f"{p[0]}{p[1]}")
@pytest.mark.parametrize("variant", VARIANT_PARAMS)
def test_bitserial_gemm(k, aprec, wprec, variant):
    n, m = 3, 11
    rng = np.random.default_rng(k)
    abits, asigned = aprec
    acts = _operands(rng, (n, k), abits, asigned)
    wcodes, wp, wcoeffs, woff = _weights(rng, (m, k), wprec)
    xp = bitserial.quantize_pack(
        acts.astype(np.float32), scale=1.0, bitwidth=abits, signed=int(asigned)
    )
    attrs = dict(
        in_features=k, act_coeffs=_act_coeffs(abits, asigned), weight_coeffs=wcoeffs,
        weight_offset=woff,
    )
    sess = _session("BitSerialGemm", TYPES4, F32, 1, variant, **attrs)
    scale = rng.uniform(-1, 1, m).astype(np.float32)
    bias = rng.standard_normal(m).astype(np.float32)
    (y,) = sess.run(None, {"X": xp, "W": wp, "scale": scale, "bias": bias})
    d_ref = bitserial.bitserial_gemm_int(xp, wp, **attrs)
    assert np.array_equal(d_ref, (acts @ wcodes.T).astype(np.int32))  # the oracle's own check
    assert bits_equal(y, bitserial.bitserial_gemm(xp, wp, scale, bias, **attrs))
    w_init = [onnx.numpy_helper.from_array(wp, "W")]
    sess_c = _session("BitSerialGemm", TYPES4, F32, 1, variant, w_init, **attrs)
    (y,) = sess_c.run(None, {"X": xp, "scale": scale, "bias": bias})
    assert bits_equal(y, bitserial.bitserial_gemm(xp, wp, scale, bias, **attrs))


def test_bitserial_errors():
    attrs = dict(
        in_channels=64, kernel_shape=[3, 3], act_coeffs=[1, 2], weight_coeffs=[-2], weight_offset=1
    )
    feeds = {
        "X": np.zeros((1, 5, 5, 1), np.uint64),
        "W": np.zeros((4, 3, 3, 1), np.uint64),
        "scale": np.ones(4, np.float32),
        "bias": np.zeros(4, np.float32),
    }
    match = (
        r"BitSerialConv.*input X: expected last dim G\*P\*ceil\(\(C/G\)/64\) = 1\*2\*1 = 2 "
        r".*got shape \[1, 5, 5, 1\]"
    )
    with pytest.raises(Exception, match=match):
        _session("BitSerialConv", TYPES4, F32, **attrs).run(None, feeds)
    no_act = {k: v for k, v in attrs.items() if k != "act_coeffs"}
    with pytest.raises(Exception, match=r"BitSerialConv.*attribute 'act_coeffs'.*required"):
        _session("BitSerialConv", TYPES4, F32, **no_act).run(None, feeds)
    big = {**attrs, "act_coeffs": [1 << 20] * 16, "weight_coeffs": [1 << 20]}
    with pytest.raises(Exception, match=r"BitSerialConv.*more than the int32 D holds"):
        _session("BitSerialConv", TYPES4, F32, **big).run(None, feeds)


@pytest.mark.parametrize("aprec,wprec", PRECISION_GRID, ids=lambda p: f"{p[0]}{p[1]}")
@pytest.mark.parametrize("variant", VARIANT_PARAMS)
def test_bitserial_conv_precision_grid(aprec, wprec, variant):
    """Every activation x weight precision pair, on two geometries (padded and strided/grouped)."""
    for geom in (CONV_GEOMS[1], CONV_GEOMS[2]):
        test_bitserial_conv(aprec, wprec, geom, 1, variant)


# Stride-1 convolutions with few channels per group, where the split kernels concatenate the
# KW taps of a kernel row into one bit vector (bitserial_ops.cc, "tap concatenation"): words
# shared by taps, vectors crossing word boundaries, groups, asymmetric pads, batches.
TAP_CONCAT_GEOMS = [
    # C, M, (H, W), (KH, KW), stride, dilation, pads, group, batch
    (16, 16, (9, 10), (3, 3), 1, 1, (1, 1, 1, 1), 1, 1),
    (32, 12, (6, 7), (3, 3), 1, 1, (1, 1, 1, 1), 1, 2),
    (21, 9, (5, 6), (3, 3), 1, 1, (0, 2, 1, 0), 1, 1),
    (22, 8, (5, 6), (2, 3), 1, 1, (1, 0, 0, 2), 1, 1),
    (48, 10, (4, 9), (3, 2), 1, 1, (1, 1, 1, 1), 2, 1),
    (40, 17, (3, 5), (1, 3), 1, 1, (0, 1, 0, 1), 1, 1),
]


@pytest.mark.parametrize("aprec,wprec", PRECISIONS, ids=lambda p: f"{p[0]}{p[1]}")
@pytest.mark.parametrize("geom", TAP_CONCAT_GEOMS, ids=lambda g: f"C{g[0]}-k{g[3][0]}x{g[3][1]}-g{g[7]}")
@pytest.mark.parametrize("variant", VARIANT_PARAMS)
def test_bitserial_conv_tap_concat(aprec, wprec, geom, variant):
    test_bitserial_conv(aprec, wprec, geom, 1, variant)


@pytest.mark.parametrize("variant", VARIANT_PARAMS)
def test_bitserial_conv_pad_bits(variant):
    """Pad bits set in X or W: every variant (tap-concatenated or not) gives the same result as
    the plain POPCNT kernel, which ANDs whole words."""
    c, m, h, w, g = 16, 8, 6, 7, 1
    rng = np.random.default_rng(5)
    acts = _operands(rng, (1, c, h, w), 2, False)
    xp = bitserial.quantize_pack(acts.astype(np.float32), scale=1.0, bitwidth=2, group=g)
    geo = dict(in_channels=c, kernel_shape=[3, 3], pads=[1, 1, 1, 1], group=g)
    scale = rng.uniform(-1, 1, m).astype(np.float32)
    bias = rng.standard_normal(m).astype(np.float32)
    junk = np.uint64(0xFFFF_0000_0000_0000)
    for wprec in [(1, "binary"), (2, True)]:  # weight_offset 1 and 0
        _, wp, wcoeffs, woff = _weights(rng, (m, c, 3, 3), wprec)
        planes = dict(act_coeffs=[1, 2], weight_coeffs=wcoeffs, weight_offset=woff)
        for xj, wj in [(xp | junk, wp), (xp, wp | junk), (xp | junk, wp | junk)]:
            feeds = {"X": xj, "W": wj, "scale": scale, "bias": bias}
            (want,) = _session("BitSerialConv", TYPES4, F32, 1, "portable", **geo, **planes).run(None, feeds)
            (y,) = _session("BitSerialConv", TYPES4, F32, 1, variant, **geo, **planes).run(None, feeds)
            assert bits_equal(y, want)
            w_init = [onnx.numpy_helper.from_array(wj, "W")]
            sess_c = _session("BitSerialConv", TYPES4, F32, 1, variant, w_init, **geo, **planes)
            (y,) = sess_c.run(None, {k: v for k, v in feeds.items() if k != "W"})
            assert bits_equal(y, want)
