"""What each conv / dense layer of a model holds: weight and input bit widths, and what it lowers to.

The same classification drives `qcompile inspect`, the compile table, the --wbits/--abits checks and
the lowering rules' `check`, so what the table says is what the compiler does.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass, field

import numpy as np
import onnx_ir as ir

from qcompile.base.domains import QONNX_QUANT_OPS
from qcompile.base.ir_readers import (
    const_array,
    int_attr,
    ints_attr,
    is_qonnx,
    node_label,
    str_attr,
)
from qcompile.base.quantizer_nodes import is_pow2quant, pow2quant_thresholds
from qcompile.ops import qonnx as qref
from qcompile.ops.shift import pow2_quant

LAYER_OPS = ("Conv", "Gemm", "MatMul")


def evaluate_quantizer(node: ir.Node) -> np.ndarray | None:
    """The output of a BipolarQuant/Quant/IntQuant/Pow2Quant node whose inputs are constant, else None."""
    if not (is_qonnx(node, "BipolarQuant", *QONNX_QUANT_OPS) or is_pow2quant(node)):
        return None
    arrays = [const_array(v) for v in node.inputs]
    if any(a is None for a in arrays):
        return None
    if is_pow2quant(node):
        thresholds = pow2quant_thresholds(node)
        return pow2_quant(arrays[0], thresholds) if thresholds else None
    if node.op_type == "BipolarQuant":
        return qref.bipolar_quant(*arrays)
    x, scale, zeropt, bitwidth = arrays
    return qref.quant(
        x,
        scale,
        zeropt,
        bitwidth,
        signed=int_attr(node, "signed", 1),
        narrow=int_attr(node, "narrow", 0),
        rounding_mode=str_attr(node, "rounding_mode", "ROUND"),
    )


def constant_value(value: ir.Value | None) -> np.ndarray | None:
    """A constant, or the output of a quantizer of constants (a Conv/Gemm bias quantizer such as
    Brevitas's Int32Bias) evaluated now; None when the value depends on the input."""
    arr = const_array(value)
    if arr is None and value is not None:
        arr = evaluate_quantizer(value.producer()) if value.producer() is not None else None
    return arr


@dataclass
class Pow2Weights:
    """Weights as scale[m] · w_int with w_int ∈ {0, ±2^e}, 0 ≤ e ≤ MAX_EXPONENT."""

    ints: np.ndarray  # int64, output channels first, same shape as WeightInfo.values
    scale: np.ndarray  # float32 [M]
    bits: int  # code width of the grid {0, ±2^0 … ±2^emax}: ceil(log2(2·(emax+1)+1))


def pow2_decomposition(rows: np.ndarray) -> Pow2Weights | None:
    """Write each output channel as scale[m] · {0, ±2^e} exactly (scale = its smallest |w| ≠ 0), or None."""
    from qcompile.ops.shift import MAX_EXPONENT

    flat = np.asarray(rows, np.float32).reshape(rows.shape[0], -1)
    mags = np.abs(flat)
    if not np.all(np.isfinite(mags)):
        return None
    nonzero = np.where(mags > 0, mags, np.inf)
    scale = np.where(np.isfinite(nonzero.min(axis=1)), nonzero.min(axis=1), 1.0).astype(np.float32)
    ratio = mags / scale[:, None]  # exact where |w| = scale·2^e (a power-of-two multiple)
    exps = np.zeros(ratio.shape, np.int64)
    nz = ratio > 0
    exps[nz] = np.round(np.log2(ratio[nz])).astype(np.int64)
    if np.any(exps > MAX_EXPONENT) or not np.array_equal(np.ldexp(np.float32(1), exps)[nz], ratio[nz]):
        return None
    ints = np.where(nz, np.left_shift(1, exps), 0) * np.where(flat < 0, -1, 1)
    emax = int(exps[nz].max()) if nz.any() else 0
    bits = int(np.ceil(np.log2(2 * (emax + 1) + 1)))
    return Pow2Weights(ints.reshape(rows.shape).astype(np.int64), scale, bits)


@dataclass
class WeightInfo:
    kind: str  # "binary", "float", "multi-level" or "non-constant"
    bits: int | None  # 1 for binary; the quantizer's bit width for other quantized weights
    source: str  # what produced the weight: "BipolarQuant", "Quant(2 bits)", "initializer"
    values: np.ndarray | None = None  # the quantized weight, output channels first ([M, ...])
    alpha: np.ndarray | None = None  # per-output-channel magnitude, for binary weights

    @functools.cached_property
    def pow2(self) -> Pow2Weights | None:
        """The weights as scale[m]·{0, ±2^e} when they are (SHIFT-able), else None. Computed on
        first use: it reads every weight, and most layers (binary ones) never ask."""
        if self.kind not in ("binary", "multi-level") or self.values is None:
            return None
        return pow2_decomposition(self.values)

    def describe(self) -> str:
        if self.kind == "binary":
            return "binary (+-alpha per output channel)"
        if self.kind == "multi-level":
            levels = int(np.unique(self.values).size)
            grid = f", powers of two (0, ±2^0..2^{int(np.log2(np.abs(self.pow2.ints).max() or 1))})" \
                if self.pow2 is not None else ""
            return f"{levels} distinct levels from {self.source}{grid}"
        return f"{self.kind} ({self.source})"


@dataclass
class InputInfo:
    kind: str  # "binary", "int", "pow2" (qcompile::Pow2Quant) or "float"
    bits: int | None
    source: str
    scale: float | None = None  # BipolarQuant's scalar scale
    quant_node: ir.Node | None = None
    thresholds: list[float] | None = None  # Pow2Quant's


@dataclass
class Layer:
    node: ir.Node
    name: str
    op_type: str
    weight: WeightInfo
    input: InputInfo
    kernel: tuple[int, ...] = ()
    float_weight_bytes: int = 0
    target: str | None = None  # the qcompile op it lowers to, or None
    reason: str = ""  # why it stays float, when target is None
    notes: list[str] = field(default_factory=list)
    # the exact implementations this layer has (IMPLS names, "float" always) and the chosen one
    options: list[str] = field(default_factory=list)
    impl: str = "float"
    int8: object | None = None  # int8_plan.Int8Plan when "int8" is an option
    int8_refusal: str = ""  # else why not

    @property
    def quantized(self) -> bool:
        return self.weight.bits is not None or self.input.bits is not None


def _weight_rows(node: ir.Node, w: np.ndarray) -> np.ndarray:
    """The weight with output channels first: Conv [M,...], Gemm per transB, MatMul [K,M] -> [M,K]."""
    if node.op_type == "Conv":
        return w
    if node.op_type == "Gemm" and int_attr(node, "transB", 0):
        return w
    return w.T if w.ndim == 2 else w


def classify_weight(node: ir.Node) -> WeightInfo:
    wval = node.inputs[1]
    producer = wval.producer()
    if is_qonnx(producer, "BipolarQuant"):
        source, bits = "BipolarQuant", 1
        values = evaluate_quantizer(producer)
    elif is_qonnx(producer, *QONNX_QUANT_OPS):
        bw = const_array(producer.inputs[3])
        bits = int(np.asarray(bw).reshape(-1)[0]) if bw is not None else None
        source = f"{producer.op_type}({bits} bits)"
        values = evaluate_quantizer(producer)
    elif is_pow2quant(producer):
        bits = pow2quant_bits(pow2quant_thresholds(producer))
        source = f"Pow2Quant({bits} bits)"
        values = evaluate_quantizer(producer)
        if values is not None:  # the quantizer declares its grid, whichever levels are used
            return WeightInfo("multi-level", bits, source, _weight_rows(node, values))
    else:
        source, bits = "initializer", None
        values = const_array(wval)
    if values is None:
        return WeightInfo("non-constant", bits, source)
    rows = _weight_rows(node, values)
    mags = np.abs(rows.reshape(rows.shape[0], -1))
    alpha = mags.max(axis=1)
    if rows.ndim >= 2 and np.all(mags > 0) and np.all(mags == alpha[:, None]):
        return WeightInfo("binary", 1, source, rows, alpha.astype(np.float32))
    if bits is not None:
        info = WeightInfo("multi-level", bits, source, rows)
        # a power-of-two grid is narrower than the quantizer's integer grid (AQE's 3-bit levels
        # {0, ±¼, ±½, ±1} need a 4-bit uniform Quant): the layer holds the smaller bit width
        if info.pow2 is not None:
            info.bits = min(bits, info.pow2.bits)
        return info
    return WeightInfo("float", None, source, rows)


def pow2quant_bits(thresholds: list[float]) -> int | None:
    """L thresholds give the 2L+1 levels {0, ±2^0 … ±2^(L-1)} (times 2^-(L-1)): ⌈log2(2L+1)⌉ bits."""
    return int(np.ceil(np.log2(2 * len(thresholds) + 1))) if thresholds else None


SHAPE_OPS = ("Flatten", "Reshape", "Identity")  # a quantized value stays quantized through these


def classify_input(node: ir.Node) -> InputInfo:
    producer = node.inputs[0].producer()
    while producer is not None and producer.domain == "" and producer.op_type in SHAPE_OPS:
        producer = producer.inputs[0].producer()
    if is_qonnx(producer, "BipolarQuant"):
        scale = const_array(producer.inputs[1])
        scalar = float(scale.reshape(-1)[0]) if scale is not None and scale.size == 1 else None
        return InputInfo("binary", 1, "BipolarQuant", scalar, producer)
    if is_qonnx(producer, *QONNX_QUANT_OPS):
        bw = const_array(producer.inputs[3])
        bits = int(np.asarray(bw).reshape(-1)[0]) if bw is not None else None
        return InputInfo("int", bits, f"{producer.op_type}({bits} bits)", None, producer)
    if is_pow2quant(producer):
        thresholds = pow2quant_thresholds(producer)
        bits = pow2quant_bits(thresholds)
        return InputInfo("pow2", bits, f"Pow2Quant({bits} bits)", None, producer, thresholds)
    return InputInfo("float", None, producer.op_type if producer is not None else "graph input")


# The op library's bound on conv attributes (kMaxAttr in custom_ops/common/conv_attrs.h).
MAX_CONV_ATTR = 1 << 24


def conv_geometry_refusal(node: ir.Node, kernel: tuple[int, ...], in_channels: int) -> str:
    """Why the op library would reject this Conv's geometry ('' if it accepts it): the checks of
    ConvAttrs::Parse, made here so that such a layer stays float instead of failing at run time."""
    attrs = conv_attrs(node, kernel)
    for name, count, lo in (("kernel_shape", 2, 1), ("strides", 2, 1), ("dilations", 2, 1), ("pads", 4, 0)):
        values = attrs[name]
        if len(values) != count or any(not lo <= v <= MAX_CONV_ATTR for v in values):
            return (f"{name}={values} is outside what the op library accepts ({count} values from {lo} to "
                    f"{MAX_CONV_ATTR})")
    group = attrs["group"]
    if group < 1 or in_channels % group:
        return f"group={group} does not divide the {in_channels} input channels"
    return ""


def _structure_refusal(node: ir.Node, weight: WeightInfo) -> str:
    """Why this Conv/Gemm/MatMul cannot become any qcompile op, whatever its bits ('' if it can)."""
    if weight.values is None:
        return "weights are not constant"
    if node.op_type == "Conv":
        if weight.values.ndim != 4:
            return f"expected a 2-D conv (4-D weight), got a {weight.values.ndim}-D weight"
        auto_pad = node.attributes.get("auto_pad")
        if auto_pad is not None and auto_pad.as_string() not in ("NOTSET", ""):
            return f"auto_pad={auto_pad.as_string()} is not supported; export with explicit pads"
        if len(node.inputs) > 2 and node.inputs[2] is not None and constant_value(node.inputs[2]) is None:
            return "Conv bias is not constant"
        group = int_attr(node, "group", 1)
        return conv_geometry_refusal(node, tuple(weight.values.shape[2:]), weight.values.shape[1] * max(group, 1))
    if node.op_type == "Gemm":
        if int_attr(node, "transA", 0):
            return "Gemm with transA=1 is not supported"
        c = node.inputs[2] if len(node.inputs) > 2 else None
        if c is not None:
            cval = constant_value(c)
            if cval is None or cval.size not in (1, weight.values.shape[0]):
                return "Gemm's C is not a constant per-output vector"
    if node.op_type == "MatMul" and weight.values.ndim != 2:
        return "MatMul weight is not 2-D"
    return ""


@dataclass
class Operand:
    """A multi-bit operand as integer values v = offset + sum coeff[p] * plane_p, times a scale."""

    planes: int
    coeffs: list[int]
    offset: int
    scale: np.ndarray  # float32: per output channel [M] for weights, scalar for activations
    codes: np.ndarray | None = None  # weights: the integer values, output channels first
    quant: dict | None = None  # activations: QuantizePack's attributes
    divisor: np.ndarray | None = None  # activations: a per-channel scale divided out before QuantizePack


def _scalar(value: ir.Value | None) -> float | None:
    arr = const_array(value)
    return float(arr.reshape(-1)[0]) if arr is not None and arr.size == 1 else None


def _depthwise_channel_scale(quant: ir.Node, layer: ir.Node | None) -> np.ndarray | str:
    """A per-channel activation scale [1, C, 1, 1] that folds exactly: the layer is a depthwise
    conv (group == C, one input channel per group), so output channel m reads input channel
    m // (M / C) only and s_a[c] joins that channel's output scale. Else why it does not fold."""
    scale = const_array(quant.inputs[1])
    if scale is None or not np.all(np.isfinite(scale)) or not np.all(scale > 0):
        return "activation Quant scale is not a positive constant"
    if layer is None or layer.op_type != "Conv":
        return "a per-channel activation scale folds only into a depthwise Conv (this layer is not a Conv)"
    w = const_array(layer.inputs[1])
    w = w if w is not None else evaluate_quantizer(layer.inputs[1].producer()) if layer.inputs[1].producer() else None
    group = int_attr(layer, "group", 1)
    channels = scale.size
    if scale.ndim != 4 or scale.shape != (1, channels, 1, 1):
        return f"activation Quant scale of shape {list(scale.shape)} is not per tensor or per channel [1, C, 1, 1]"
    if w is None or w.ndim != 4 or group != channels or w.shape[1] != 1 or w.shape[0] % group:
        from qcompile.int8_plan import channel_scale_refusal  # why the weights cannot absorb it

        return channel_scale_refusal(scale, layer)
    return np.repeat(scale.reshape(-1).astype(np.float32), w.shape[0] // group)


def activation_operand(quant: ir.Node, layer: ir.Node | None = None) -> Operand | str:
    """A QONNX Quant on activations as QuantizePack attributes, or why it cannot be.

    A per-channel scale into a depthwise `layer` is divided out in front of QuantizePack (the same
    float32 x / s[c] the Quant computes, then QuantizePack with scale 1: x / 1 is exact) and the
    Operand's scale is per output channel."""
    from qcompile.ops.bitserial import plane_coeffs, planes_needed
    from qcompile.ops.qonnx import ROUNDING, int_range

    scale, zp, bits = (_scalar(v) for v in quant.inputs[1:4])
    divisor = None
    if scale is None:
        per_channel = _depthwise_channel_scale(quant, layer)
        if isinstance(per_channel, str):
            return per_channel
        divisor = const_array(quant.inputs[1]).astype(np.float32)
        scale = 1.0
    if not scale > 0:
        return "activation Quant scale is not a positive scalar constant"
    if zp is None or zp != int(zp):
        return "activation Quant zero point is not an integer scalar constant"
    if bits is None or bits != int(bits) or not 1 <= bits <= 8:
        return "activation Quant bit width is not a constant integer in 1..8"
    signed, narrow = int_attr(quant, "signed", 1), int_attr(quant, "narrow", 0)
    mode = quant.attributes.get("rounding_mode")
    mode = mode.as_string() if mode is not None else "ROUND"
    if mode not in ROUNDING:
        return f"activation Quant rounding_mode {mode!r} is not supported"
    qmin, qmax = int_range(bits, signed, narrow)
    planes, two_c = planes_needed(int(qmin) - int(zp), int(qmax) - int(zp))
    attrs = dict(scale=float(np.float32(scale)), zero_point=float(zp), bitwidth=int(bits), signed=signed,
                 narrow=narrow, rounding_mode=mode, planes=planes)
    out_scale = np.float32(scale) if divisor is None else per_channel
    return Operand(planes, plane_coeffs(planes, two_c), 0, out_scale, quant=attrs, divisor=divisor)


def weight_operand(node: ir.Node, weight: WeightInfo) -> Operand | str:
    """The layer's weights as bit planes with a per-output-channel scale, or why they cannot be."""
    from qcompile.ops.bitserial import plane_coeffs, planes_needed
    from qcompile.ops.qonnx import int_range, quant_int

    rows = weight.values
    if weight.kind == "binary":  # +-alpha: bit 1 <-> -1, v = 1 - 2*bit
        bits = (rows < 0).astype(np.int64)
        return Operand(1, [-2], 1, weight.alpha, codes=bits)
    producer = node.inputs[1].producer()
    if is_pow2quant(producer) and weight.pow2 is not None:  # the power-of-two integers as bit planes
        ints = weight.pow2.ints
        planes, two_c = planes_needed(int(ints.min()), int(ints.max()))
        return Operand(planes, plane_coeffs(planes, two_c), 0, weight.pow2.scale, codes=ints)
    if weight.kind != "multi-level" or producer is None or producer.op_type in ("BipolarQuant", "Pow2Quant"):
        return f"weights are {weight.describe()}"
    w, s, zp, bits = (const_array(v) for v in producer.inputs[:4])
    m = rows.shape[0]
    zp_s = _scalar(producer.inputs[2])
    if zp_s is None or zp_s != int(zp_s):
        return "weight Quant zero point is not one integer for the whole tensor"
    bits_s = _scalar(producer.inputs[3])
    if bits_s is None or not 1 <= bits_s <= 8:
        return "weight Quant bit width is not a constant in 1..8"
    # the scale must vary along the output-channel axis only (one scale per output channel)
    srows = _weight_rows(node, np.broadcast_to(np.asarray(s, np.float32), w.shape)).reshape(m, -1)
    if not np.all(srows == srows[:, :1]):
        return "weight Quant scale is not per-tensor or per-output-channel"
    signed, narrow = int_attr(producer, "signed", 1), int_attr(producer, "narrow", 0)
    mode = producer.attributes.get("rounding_mode")
    q = quant_int(w, s, zp, bits, signed=signed, narrow=narrow, rounding_mode=mode.as_string() if mode else "ROUND")
    codes = _weight_rows(node, q.astype(np.int64) - int(zp_s))
    qmin, qmax = int_range(bits_s, signed, narrow)
    planes, two_c = planes_needed(int(qmin) - int(zp_s), int(qmax) - int(zp_s))
    return Operand(planes, plane_coeffs(planes, two_c), 0, srows[:, 0].copy(), codes=codes)


def _plan(node: ir.Node, weight: WeightInfo, inp: InputInfo) -> tuple[str | None, str]:
    """(the qcompile op this layer lowers to, or None with the reason it stays float)."""
    reason = _structure_refusal(node, weight) if weight.kind != "float" else ""
    if weight.kind in ("float", "non-constant"):
        return None, f"weights are {weight.describe()}"
    if reason:
        return None, reason
    conv = node.op_type == "Conv"
    if inp.kind == "binary":
        if weight.kind != "binary":
            return None, f"binary input with {weight.describe()} weights is not supported yet"
        if inp.scale is None or not inp.scale > 0:
            return None, "input BipolarQuant scale is not a positive scalar constant"
        return ("XnorConv" if conv else "XnorGemm"), ""
    shift_op = "ShiftConv" if conv else "ShiftGemm"
    if inp.kind == "pow2":
        if weight.pow2 is None:
            return None, f"power-of-two input with {weight.describe()} weights (SHIFT needs 0 or ±scale·2^e weights)"
        why = shift_activation(inp)
        return (shift_op, "") if isinstance(why, dict) else (None, why)
    if inp.kind == "int":
        act = activation_operand(inp.quant_node, node)
        if isinstance(act, str):
            return None, act
        if act.divisor is not None:  # a per-channel scale: bit-serial only (SHIFT takes one scale)
            wop = weight_operand(node, weight)
            return (None, wop) if isinstance(wop, str) else ("BitSerialConv", "")
        # MINW-Net's rule: the smaller bit width chooses; 1-2 bits run as popcounts, 3+ bits on
        # power-of-two weights as shifts
        if weight.pow2 is not None and min(weight.bits or 0, inp.bits or 0) >= 3 \
                and isinstance(uniform_shift_activation(act), dict):
            return shift_op, ""
        wop = weight_operand(node, weight)
        if isinstance(wop, str):
            return None, wop
        return ("BitSerialConv" if conv else "BitSerialGemm"), ""
    return None, f"input is {inp.kind} ({inp.source}), not quantized"


def shift_activation(inp: InputInfo) -> dict | str:
    """ShiftConv's activation attributes for this input (custom_ops/SPEC.md), or why it has none."""
    from qcompile.ops.shift import MAX_POW2_LEVELS

    if inp.kind == "pow2":
        t = inp.thresholds or []
        if not 1 <= len(t) <= MAX_POW2_LEVELS or any(b <= a for a, b in itertools.pairwise(t)) or t[0] <= 0:
            return f"Pow2Quant thresholds {t} are not 1..{MAX_POW2_LEVELS} ascending positive values"
        return dict(act_mode="pow2", act_thresholds=[float(v) for v in t])
    act = activation_operand(inp.quant_node)
    return act if isinstance(act, str) else uniform_shift_activation(act)


def uniform_shift_activation(act: Operand) -> dict | str:
    """ShiftConv's attributes for a uniform activation (its QuantizePack attributes), or why not."""
    from qcompile.ops.shift import uniform_act_range

    q = act.quant
    lo, hi = uniform_act_range(q["bitwidth"], q["signed"], q["narrow"], q["zero_point"])
    if lo < -128 or hi > 127:
        return f"activation codes span [{lo}, {hi}], beyond ShiftConv's int8"
    return dict(act_mode="uniform", act_scale=q["scale"], act_zero_point=q["zero_point"],
                act_bitwidth=q["bitwidth"], act_signed=q["signed"], act_narrow=q["narrow"],
                act_rounding_mode=q["rounding_mode"])


# The exact implementations a layer can have, by name (what --impl takes), and their op per layer op.
IMPLS = ("xnor", "bitserial", "shift", "int8", "float")
_TARGETS = {
    "xnor": ("XnorConv", "XnorGemm"),
    "bitserial": ("BitSerialConv", "BitSerialGemm"),
    "shift": ("ShiftConv", "ShiftGemm"),
    # a depthwise or direct int8 conv runs on qcompile's own op (passes/depthwise_integer.py,
    # passes/direct_integer.py)
    "int8": ("ConvInteger", "MatMulInteger", "DepthwiseConvInteger", "DepthwiseConvRequantize", "DirectConvInteger",
             "DirectConvRequantize"),
}
# Without measured costs, int8 arithmetic replaces bit-serial from this many bits of weights or
# activations up (an 8-bit-input first layer: 8 plane pairs against one int8 multiply-add)
INT8_DEFAULT_BITS = 5


def target_of(impl: str, op_type: str) -> str | None:
    """The op a layer of `op_type` becomes under `impl` (None: it stays float)."""
    return None if impl == "float" else _TARGETS[impl][0 if op_type == "Conv" else 1]


def impl_of(target: str | None) -> str:
    """The implementation a lowered op is (XnorConvThreshold, a packed-output XnorConv, is xnor)."""
    return next((impl for impl, ops in _TARGETS.items() if target and target.startswith(ops)), "float")


def _add_options(layer: Layer) -> None:
    """layer.options and the default choice (the planned target, or int8 at INT8_DEFAULT_BITS+)."""
    from qcompile.int8_plan import int8_plan

    planned = impl_of(layer.target)
    layer.options = [planned] if planned != "float" else []
    if layer.weight.kind != "float" and not _structure_refusal(layer.node, layer.weight):
        plan = int8_plan(layer.node, layer.weight, layer.input)
        if isinstance(plan, str):
            layer.int8_refusal = plan
        else:
            layer.int8 = plan
            layer.options.append("int8")
    layer.options.append("float")
    layer.impl = planned
    bits = max(layer.weight.bits or 0, layer.input.bits or 0)
    if layer.int8 is not None and (planned == "float" or (planned == "bitserial" and bits >= INT8_DEFAULT_BITS)):
        choose(layer, "int8")


def choose(layer: Layer, impl: str, why: str = "") -> None:
    """Make `impl` (one of layer.options) the layer's implementation."""
    if impl not in layer.options:
        raise ValueError(f"expected one of {layer.options} for layer {layer.name!r}, got {impl!r}")
    layer.impl = impl
    layer.target = target_of(impl, layer.op_type)
    if impl == "float":
        layer.reason = why or layer.reason or "float chosen"


def analyze_layer(node: ir.Node) -> Layer:
    weight = classify_weight(node)
    inp = classify_input(node)
    kernel: tuple[int, ...] = ()
    if weight.values is not None:
        kernel = tuple(weight.values.shape[2:]) if node.op_type == "Conv" else ()
    wsrc = node.inputs[1]
    latent = wsrc.producer().inputs[0] if wsrc.producer() is not None else wsrc
    latent_arr = const_array(latent)
    layer = Layer(
        node=node,
        name=node_label(node),
        op_type=node.op_type,
        weight=weight,
        input=inp,
        kernel=kernel,
        float_weight_bytes=int(latent_arr.size * 4) if latent_arr is not None else 0,
    )
    layer.target, layer.reason = _plan(node, weight, inp)
    _add_options(layer)
    return layer


def analyze_model(model: ir.Model) -> list[Layer]:
    """Every Conv / Gemm / MatMul of the main graph, in graph order."""
    return [analyze_layer(n) for n in model.graph if n.domain == "" and n.op_type in LAYER_OPS]


def conv_attrs(node: ir.Node, kernel: tuple[int, ...]) -> dict[str, list[int] | int]:
    """Conv attributes with ONNX defaults filled in."""
    return {
        "kernel_shape": list(kernel),
        "strides": ints_attr(node, "strides", [1, 1]),
        "pads": ints_attr(node, "pads", [0, 0, 0, 0]),
        "dilations": ints_attr(node, "dilations", [1, 1]),
        "group": int_attr(node, "group", 1),
    }


def _inputs_fingerprint(node: ir.Node) -> tuple:
    """What analyze_layer reads around `node`: its inputs, their producers and constants, and the
    producer chain of its activation through shape ops. Objects, compared by identity."""
    parts: list[object] = []
    for value in node.inputs:
        producer = value.producer() if value is not None else None
        parts += [value, producer, value.const_value if value is not None else None]
        if producer is not None:
            for v in producer.inputs:
                parts += [v, v.const_value if v is not None else None]
    producer = node.inputs[0].producer() if node.inputs and node.inputs[0] is not None else None
    while producer is not None and producer.domain == "" and producer.op_type in SHAPE_OPS:
        producer = producer.inputs[0].producer()
        parts.append(producer)
    return tuple(parts)


class LayerAnalyses:
    """analyze_layer once per node: a cached Layer is reused while what it was computed from (the
    node's inputs, their producers and constants) is the same objects, and recomputed otherwise."""

    def __init__(self, choices: dict[str, tuple[str, str]] | None = None) -> None:
        self._cache: dict[ir.Node, tuple[tuple, Layer]] = {}
        self.computed = 0  # how many analyses ran (a test and the benchmark read it)
        self.choices = choices or {}  # layer name -> (impl, why) chosen before the run (costmodel)

    def get(self, node: ir.Node) -> Layer:
        fingerprint = _inputs_fingerprint(node)
        hit = self._cache.get(node)
        if hit is not None and len(hit[0]) == len(fingerprint) and all(a is b for a, b in zip(hit[0], fingerprint, strict=False)):
            return hit[1]
        layer = analyze_layer(node)
        chosen = self.choices.get(layer.name)
        if chosen is not None and chosen[0] in layer.options:
            choose(layer, *chosen)
        self.computed += 1
        self._cache[node] = (fingerprint, layer)
        return layer
