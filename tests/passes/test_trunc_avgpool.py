"""TruncAvgPoolToIntegerPoolPass: Trunc(AveragePool(Quant(x))) as an integer sum-pool and shift.

Structure (no float pool, no Trunc left) and bit-exact parity with the reference Trunc kernel in
onnxruntime, for every rounding mode, signed and unsigned codes, trunc scales 1..2^6 and global,
tiling and whole-input windows; the int8 layer after it reads the codes; and the refusals, each
naming the node and the attribute."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from graphs import GraphBuilder
from helpers import apply_alone, op_types

from qcompile import runtime
from qcompile.base.domains import QONNX_DOMAIN
from qcompile.compiler import compile as compile_model
from qcompile.ops import trunc as trunc_ref
from qcompile.passes.trunc_avgpool import TruncAvgPoolToIntegerPoolPass

MODES = sorted(trunc_ref.TRUNC_ROUNDING)
F32 = np.float32
# (pool op, attributes, input H x W): a global pool, 2x2 tiles, a window the size of the input
POOLS = {
    "global": ("GlobalAveragePool", {}, (4, 4)),
    "tiles2x2": ("AveragePool", dict(kernel_shape=[2, 2], strides=[2, 2]), (4, 6)),
    "whole7x7": ("AveragePool", dict(kernel_shape=[7, 7], strides=[1, 1]), (7, 7)),
}


def _trunc_model(pool: str, mode: str, signed: int, shift: int, *, out_bits=8, bits=4, channels=5,
                 zeropt=0.0, scale_factor=1.0, version=2, hw=None, **overrides) -> onnx.ModelProto:
    op_type, attrs, (h, w) = POOLS[pool]
    h, w = hw or (h, w)
    attrs = {**attrs, **overrides}
    k = h * w if op_type == "GlobalAveragePool" or attrs["kernel_shape"] == [h, w] else int(np.prod(attrs["kernel_shape"]))
    g = GraphBuilder(0)
    s = F32(0.0625 * 3)  # not a power of two: the pooled mean is inexact in float32
    xq = g.quant("x", s, bits, signed=signed)
    pooled = g.op(op_type, [xq], name="pool", **attrs)
    st = F32(s / F32(k)) * F32(scale_factor)
    ins = [pooled, g.const(st, "st"), g.const(F32(zeropt), "zt"), g.const(F32(bits + 6), "bi")]
    ins += [g.const(F32(st * F32(2**shift)), "so"), g.const(F32(out_bits), "bo")] if version == 2 else [g.const(F32(out_bits), "bo")]
    y = g.op("Trunc", ins, domain=QONNX_DOMAIN, name="trunc", signed=signed, narrow=0, rounding_mode=mode)
    return g.model({"x": [2, channels, h, w]}, [y])


def _inputs(model: onnx.ModelProto, seed: int = 0) -> np.ndarray:
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    rng = np.random.default_rng(seed)
    return (rng.uniform(-3.2, 3.2, dims)).astype(np.float32)  # beyond the 4-bit grid both ways


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(model.SerializeToString(), runtime.session_options(threads=1),
                                providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]


def _set_window_sum(x: np.ndarray, channel: int, total: int, signed: int, pool: str) -> None:
    """Make the first window of (batch 0, channel) hold codes summing to `total`."""
    kh, kw = (2, 2) if pool == "tiles2x2" else x.shape[2:]
    window = np.zeros(kh * kw)
    for i in range(window.size):  # greedily, each code within the 4-bit grid
        window[i] = np.clip(total - window.sum(), -8 if signed else 0, 7 if signed else 15)
    assert window.sum() == total
    x[0, channel, :kh, :kw] = (window.reshape(kh, kw) * F32(0.0625 * 3)).astype(np.float32)


def _window_sums(x: np.ndarray, signed: int, pool: str) -> np.ndarray:
    codes = np.clip(np.round(x / F32(0.0625 * 3)), -8 if signed else 0, 7 if signed else 15)
    n, c, h, w = codes.shape
    kh, kw = (2, 2) if pool == "tiles2x2" else (h, w)
    return codes.reshape(n, c, h // kh, kh, w // kw, kw).sum((3, 5))


@pytest.mark.parametrize("pool", list(POOLS))
@pytest.mark.parametrize("shift", [0, 1, 3, 5])
@pytest.mark.parametrize("signed", [0, 1])
@pytest.mark.parametrize("mode", MODES)
def test_integer_pool_matches_reference_trunc_bit_for_bit(pool, shift, signed, mode):
    ref = _trunc_model(pool, mode, signed, shift, out_bits=4 if shift >= 3 else 8)
    out, modified, run = apply_alone(ref, TruncAvgPoolToIntegerPoolPass())
    assert modified == [True], run.report.refusals
    ops = op_types(out)
    assert "Trunc" not in ops and "AveragePool" not in ops and "GlobalAveragePool" not in ops and "ReduceSum" in ops
    x = _inputs(ref, seed=shift)
    t = 1 << shift
    if shift:  # rounding ties (S / t = n + 1/2), of both signs where the codes are signed
        _set_window_sum(x, 0, t // 2, signed, pool)
        _set_window_sum(x, 1, -t // 2 if signed else t + t // 2, signed, pool)
        sums = _window_sums(x, signed, pool)
        assert np.any(sums % t == t // 2) and (not signed or np.any((sums < 0) & (sums % t == t // 2)))
    np.testing.assert_array_equal(_run(out, x), _run(ref, x))


def test_int8_layer_after_the_pool_reads_its_codes():
    """Quant -> GlobalAveragePool -> Trunc (8-bit) -> Flatten -> 8-bit Gemm: MatMulInteger reads the
    pool's uint8 codes; no float tensor between (no Mul, no QuantizeLinear after the pool)."""
    g = GraphBuilder(1)
    s = F32(0.2)
    xq = g.quant("x", s, 4, signed=0)
    pooled = g.op("GlobalAveragePool", [xq], name="pool")
    st = F32(s / F32(16))
    y = g.op("Trunc", [pooled, g.const(st), g.const(F32(0)), g.const(F32(8)), g.const(st), g.const(F32(8))],
             domain=QONNX_DOMAIN, name="trunc", signed=0, narrow=0, rounding_mode="FLOOR")
    flat = g.op("Flatten", [y], name="flatten")
    w = g.quant(g.const(g.rng.standard_normal((10, 6)).astype(np.float32)), 0.05, 8, narrow=1)
    out = g.op("Gemm", [flat, w], name="fc", transB=1)
    ref = g.model({"x": [3, 6, 4, 4]}, [out])
    result = compile_model(ref, None, parity_inputs={"x": np.random.default_rng(0).uniform(0, 3, (3, 6, 4, 4)).astype(np.float32)})
    assert result.parity.passed
    assert [r.op_after for r in result.rows] == ["MatMulInteger"]
    nodes = {n.output[0]: n for n in result.model.graph.node}
    mm = next(n for n in result.model.graph.node if n.op_type == "MatMulInteger")
    chain = []
    v = mm.input[0]
    while v in nodes and nodes[v].op_type != "ReduceSum":
        chain.append(nodes[v].op_type)
        v = nodes[v].input[0]
    assert chain == ["Flatten", "Cast", "Clip"], chain  # uint8 codes straight from the integer pool
    assert not {"Trunc", "GlobalAveragePool", "Mul"} & set(op_types(result.model)[:-3])  # Cast, Mul, Add: the Gemm's scale


REFUSALS = {
    "overlapping": (dict(pool="tiles2x2", kernel_shape=[3, 3], strides=[1, 1]),
                    "AveragePool 'pool': attributes kernel_shape [3, 3] / strides [1, 1]"),
    "padded": (dict(pool="tiles2x2", pads=[1, 1, 1, 1]), "AveragePool 'pool': attribute pads"),
    "ceil-mode": (dict(pool="tiles2x2", ceil_mode=1), "AveragePool 'pool': attribute ceil_mode"),
    "zeropt": (dict(zeropt=1.0), "Trunc 'trunc': input zeropt is 1.0, not 0"),
    "scale-not-mean": (dict(scale_factor=3.0), "Trunc 'trunc': input scale"),
    "version-1": (dict(version=1), "Trunc 'trunc': version 1"),
    "wide-out": (dict(out_bits=20), "Trunc 'trunc': input output_bit_width 20"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_refused_with_the_node_and_attribute_named(case):
    kwargs, reason = REFUSALS[case]
    kwargs = dict(kwargs)
    ref = _trunc_model(kwargs.pop("pool", "global"), "FLOOR", 0, 1, **kwargs)
    out, modified, run = apply_alone(ref, TruncAvgPoolToIntegerPoolPass())
    assert modified == [False]
    assert "Trunc" in op_types(out)
    reasons = [r.reason for r in run.report.refusals]
    assert any(r.startswith(reason) for r in reasons), reasons


def test_window_too_large_for_float32_is_refused():
    """8-bit codes in a 64x64 window: the reference's float32 mean is no longer exact enough."""
    ref = _trunc_model("global", "FLOOR", 0, 0, bits=8, hw=(64, 64))
    _, modified, run = apply_alone(ref, TruncAvgPoolToIntegerPoolPass())
    assert modified == [False]
    assert any("too large for float32" in r.reason for r in run.report.refusals)


@pytest.mark.parametrize("signed", [0, 1])
def test_infinite_and_huge_inputs_saturate_like_the_reference(signed):
    """±inf and ±1e30 saturate to the grid's ends in both (QuantizeLinear saturates, then Clip)."""
    ref = _trunc_model("tiles2x2", "HALF_EVEN", signed, 1, out_bits=8)
    out, modified, _ = apply_alone(ref, TruncAvgPoolToIntegerPoolPass())
    assert modified == [True]
    x = _inputs(ref, seed=7)
    x[0, 0, :2, :2] = np.inf
    x[0, 1, :2, :2] = -np.inf
    x[1, 0] = F32(1e30)
    x[1, 1] = F32(-1e30)
    x[1, 2, :2, :2] = [[np.inf, -np.inf], [1e30, -1e30]]
    np.testing.assert_array_equal(_run(out, x), _run(ref, x))
