"""Whether a layer runs exactly on onnxruntime's integer ops (ConvInteger / MatMulInteger), and how.

The reference computes sum (s_a * v_a)(s_w[m] * v_w) = s_a * s_w[m] * D, D = sum v_a * v_w the
integer dot product of the activation values v_a = q_a - z_a and the weight values v_w. ORT's
ConvInteger / MatMulInteger compute sum (x - x_zp)(w - w_zp) exactly in int32, so with
x - x_zp = v_a and w - w_zp = v_w the layer is D times one float scale per output channel.

Operand types follow what ORT 1.32's MLAS runs fast (measured on this machine, 128x28x28 3x3:
ConvInteger with int8 X and uint8 W 0.47 ms, the other three type pairs 5-28 ms; MatMulInteger
uint8 A x int8 B 0.16 ms, int8 A 36 ms): ConvInteger takes int8 activations and uint8 weights,
MatMulInteger uint8 activations and int8 weights. An onnxruntime without ConvInteger for int8
activations (the releases before it, down to the declared floor 1.21) gets uint8 ones, offset by
their zero point: exact too, only slower. Zero points are per tensor (ConvInteger refuses
a per-channel W zero point), so the weight offset is one number; ConvInteger pads X with its zero
point, i.e. v_a = 0 in the border, as the reference's zero padding.

The activation codes come from ORT's QuantizeLinear: round(x / s) (float32 division, ties to even)
plus its zero point, saturated. That equals QONNX's round(x / s + z) only when z = 0 (x / s + z is
rounded once more in float32 when z != 0), so a nonzero activation zero point is refused.
A Pow2Quant input (AQE's power-of-two activations, {0, +-2^j} * 2^-(L-1)) stays in place and
QuantizeLinear divides its output by 2^-(L-1): exactly the integers a, within int8.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import onnx_ir as ir

from qcompile.analysis import (
    InputInfo,
    WeightInfo,
    activation_operand,
    shift_activation,
    weight_operand,
)
from qcompile.base.ir_readers import const_array, int_attr, is_qonnx

INT32_MAX = 2**31 - 1


@dataclass
class Int8Plan:
    """The operands of the integer op: x = round(x/s_a) + x_zp clipped to [x_lo, x_hi]; w = v_w + w_zp."""

    x_dtype: type  # np.int8 or np.uint8
    x_zero_point: int
    x_lo: int
    x_hi: int
    weights: np.ndarray  # v_w + w_zero_point, output channels first, in w_dtype
    w_zero_point: int
    act_scale: np.ndarray  # float32: scalar, or per output channel [M] (a depthwise conv's per-channel input)
    weight_scale: np.ndarray  # float32 [M]
    # a per-channel activation scale [1, C, 1, 1] divided out before QuantizeLinear(., 1): the same
    # float32 x / s[c] the Quant computes (x / 1 is exact), as bit-serial's QuantizePack does
    x_divisor: np.ndarray | None = None
    # the input is a Pow2Quant's output a * 2^-(L-1) (a in {0, +-2^j}): QuantizeLinear reads that
    # output, and dividing by the power of two act_scale gives the integer a exactly (no Clip needed)
    x_pow2: bool = False


def _weight_values(node: ir.Node, weight: WeightInfo) -> tuple[np.ndarray, np.ndarray] | str:
    """(integer weight values v_w, output channels first; per-channel scale) or why there are none."""
    if weight.kind == "binary":
        return np.where(weight.values < 0, -1, 1).astype(np.int64), weight.alpha
    if weight.pow2 is not None and node.inputs[1].producer() is not None \
            and node.inputs[1].producer().op_type == "Pow2Quant":
        return weight.pow2.ints, weight.pow2.scale
    wop = weight_operand(node, weight)
    if isinstance(wop, str):
        return wop
    return wop.codes.astype(np.int64), wop.scale


@functools.lru_cache(maxsize=1)
def conv_integer_reads_int8() -> bool:
    """Whether this onnxruntime has ConvInteger for int8 activations (1.32 does, and it is the fast
    pair; older releases, down to the declared floor, only uint8): probed once with a 1x1 conv."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.ones((1, 1, 1, 1), np.uint8), "w")
    node = helper.make_node("ConvInteger", ["x", "w"], ["y"])
    graph = helper.make_graph([node], "probe", [helper.make_tensor_value_info("x", TensorProto.INT8, [1, 1, 1, 1])],
                              [helper.make_tensor_value_info("y", TensorProto.INT32, None)], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    try:
        sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        return int(sess.run(None, {"x": np.full((1, 1, 1, 1), -3, np.int8)})[0].reshape(-1)[0]) == -3
    except Exception:  # onnxruntime's NOT_IMPLEMENTED (or any failure): take the uint8 kernel
        return False


def _fit(lo: int, hi: int, dtype: type) -> int | None:
    """An offset o with [lo + o, hi + o] inside dtype's range (0 when none is needed), else None."""
    info = np.iinfo(dtype)
    if hi - lo > int(info.max) - int(info.min):
        return None
    if lo >= info.min and hi <= info.max:
        return 0
    return int(info.min) - lo if lo < info.min else int(info.max) - hi


def int8_plan(node: ir.Node, weight: WeightInfo, inp: InputInfo) -> Int8Plan | str:
    """How `node` runs on ConvInteger / MatMulInteger exactly, or why it cannot."""
    from qcompile.ops.qonnx import int_range

    if inp.kind == "pow2" and inp.quant_node is not None:
        act_attrs = shift_activation(inp)  # the same check of the thresholds as for ShiftConv
        if isinstance(act_attrs, str):
            return act_attrs
        # Pow2Quant's codes a in {0, +-2^j}, j < L = len(thresholds) <= 7: within [-64, 64]
        top = 2 ** (len(inp.thresholds) - 1)
        return _plan(node, weight, -top, top, np.float32(1.0 / top), None, x_pow2=True)
    if inp.kind != "int" or inp.quant_node is None:
        return f"input is {inp.kind} ({inp.source}), not a uniform integer grid"
    scale = const_array(inp.quant_node.inputs[1])
    depthwise = False
    if scale is not None and scale.size > 1:  # ConvInteger's input is quantized per tensor
        depthwise = node.op_type == "Conv" and int_attr(node, "group", 1) == scale.size
        if node.op_type == "Conv" and not depthwise:
            return channel_scale_refusal(scale, node)
        if not depthwise:
            return "activation Quant scale is not one number (QuantizeLinear's codes are per tensor here)"
    # a depthwise conv's per-channel scale: divided out in front, joins each output channel's scale
    act = activation_operand(inp.quant_node, node if depthwise else None)
    if isinstance(act, str):
        return act
    q = act.quant
    if q["zero_point"] != 0:
        return "activation zero point is not 0 (QuantizeLinear rounds x/s, QONNX rounds x/s + z)"
    if q["rounding_mode"] != "ROUND":
        return f"activation rounding_mode {q['rounding_mode']} is not ROUND (QuantizeLinear rounds to nearest even)"
    qmin, qmax = (int(v) for v in int_range(q["bitwidth"], q["signed"], q["narrow"]))
    return _plan(node, weight, qmin, qmax, act.scale, act.divisor)


def _plan(node: ir.Node, weight: WeightInfo, qmin: int, qmax: int, act_scale, divisor,
          x_pow2: bool = False) -> Int8Plan | str:
    """The plan for activation values in [qmin, qmax] (times act_scale): the weights' integers and
    both operands' types and zero points, or why they do not fit."""
    if weight.values is None or weight.kind not in ("binary", "multi-level"):
        return f"weights are {weight.describe()}"
    values = _weight_values(node, weight)
    if isinstance(values, str):
        return values
    v_w, w_scale = values
    conv = node.op_type == "Conv"
    x_dtype, w_dtype = (np.int8 if conv_integer_reads_int8() else np.uint8, np.uint8) if conv else (np.uint8, np.int8)
    x_zp = _fit(qmin, qmax, x_dtype)
    w_lo, w_hi = int(v_w.min()), int(v_w.max())
    w_zp = _fit(min(w_lo, 0), max(w_hi, 0), w_dtype)
    if w_zp is None and not conv:  # a uint8 B runs slower but exactly
        w_dtype, w_zp = np.uint8, _fit(min(w_lo, 0), max(w_hi, 0), np.uint8)
    if x_zp is None or w_zp is None:
        return f"codes do not fit 8 bits (activations [{qmin}, {qmax}], weights [{w_lo}, {w_hi}])"
    k = int(np.prod(v_w.shape[1:]))
    # what MLAS may accumulate before removing the zero points: |x| <= 255, |w| <= 255
    if k * 255 * 255 > INT32_MAX:
        return f"K = {k} products could overflow int32"
    return Int8Plan(x_dtype, x_zp, qmin + x_zp, qmax + x_zp, (v_w + w_zp).astype(w_dtype), w_zp,
                    np.asarray(act_scale, np.float32), np.asarray(w_scale, np.float32), divisor, x_pow2)


# Per-input-channel activation scales into a conv that is not depthwise (MobileNet-style
# per-channel QuantReLUs before a dense conv). With s[c] = s0 * 2^e[c] exactly, the Quant's codes
# are those of a per-tensor Quant(x * 2^-e[c], s0) (x / s[c] and (x * 2^-e) / s0 are the same
# float32 quotient: scaling by a power of two is exact) and the layer sums
# s0 * sum_c (v_w[m, c] * 2^e[c]) * q[c]: the powers of two go into the integer weights, which
# then need e_max more bits (qcompile.passes.absorb_channel_scales rewrites it so).
MAX_ABSORBED_BITS = 8  # the weights must stay within int8 (the int8 path; bit-serial up to 8 planes)


def channel_scale_exponents(scale: np.ndarray) -> tuple[np.float32, np.ndarray] | str:
    """(s0, e): scale[c] = s0 * 2^e[c] exactly in float32, s0 the smallest; else why not."""
    s = np.asarray(scale, np.float32).reshape(-1)
    if not np.all(np.isfinite(s)) or not np.all(s > 0):
        return "activation Quant scale is not a positive constant"
    s0 = np.float32(s.min())
    if s0 < np.float32(2.0**-100):  # x * 2^-e must stay a normal float32 wherever it rounds to a code != 0
        return f"its smallest scale {s0:g} is too small to rescale exactly"
    e = np.round(np.log2(s.astype(np.float64) / float(s0))).astype(np.int64)
    exact = np.ldexp(s0, e).astype(np.float32) == s
    if not np.all(exact):
        c = int(np.flatnonzero(~exact)[0])
        return (f"channel {c}'s scale is {float(s[c]) / float(s0):.6g} times the smallest, not a power of two, "
                "so the integer weights cannot absorb it exactly")
    return s0, e


def channel_scale_refusal(scale: np.ndarray, layer: ir.Node) -> str:
    """Why a per-input-channel activation scale into `layer` (a Conv that is not depthwise) does not
    fold into its integer weights: the specific reason absorb_channel_scales found."""
    why = absorption(scale, layer)
    why = why if isinstance(why, str) else "its powers of two were not absorbed into the weights"
    return (f"per-channel activation scale into a Conv with group={int_attr(layer, 'group', 1)} (not depthwise, "
            f"where it folds into the output scales): {why}")


def absorption(scale: np.ndarray, layer: ir.Node) -> tuple[np.float32, np.ndarray, int] | str:
    """(s0, e, weight bits after absorbing 2^e) for a per-channel scale into `layer`, or why not."""
    exps = channel_scale_exponents(scale)
    if isinstance(exps, str):
        return exps
    s0, e = exps
    wq = layer.inputs[1].producer() if len(layer.inputs) > 1 and layer.inputs[1] is not None else None
    if not is_qonnx(wq, "Quant", "IntQuant") or any(const_array(v) is None for v in wq.inputs[:4]):
        return "the weights are not a Quant of constants (binary ±α weights times 2^e are not absorbed)"
    zero, bits = const_array(wq.inputs[2]), const_array(wq.inputs[3])
    if zero.size != 1 or float(zero.reshape(-1)[0]) != 0 or bits.size != 1:
        return "the weight Quant's zero point is not one 0 or its bit width not one number"
    wbits = int(bits.reshape(-1)[0]) + int(e.max())
    if wbits > MAX_ABSORBED_BITS:
        return (f"its scale ratios go up to 2^{int(e.max())}: the {int(bits.reshape(-1)[0])}-bit "
                f"weights times them need {wbits} bits, beyond int8")
    return s0, e, wbits
