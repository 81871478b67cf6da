"""What each conv / dense layer of a model holds: weight and input bit widths, and what it lowers to.

The same classification drives `qcompile inspect`, the compile table, the --wbits/--abits checks and
the lowering rules' `check`, so what the table says is what the compiler does.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx_ir as ir

from qcompile.passes._consts import (
    QONNX_QUANT_OPS,
    const_array,
    int_attr,
    ints_attr,
    is_qonnx,
    node_label,
)
from qcompile.passes.fold_quantizers import evaluate_quantizer

LAYER_OPS = ("Conv", "Gemm", "MatMul")


@dataclass
class WeightInfo:
    kind: str  # "binary", "float", "multi-level" or "non-constant"
    bits: int | None  # 1 for binary; the quantizer's bit width for other quantized weights
    source: str  # what produced the weight: "BipolarQuant", "Quant(2 bits)", "initializer"
    values: np.ndarray | None = None  # the quantized weight, output channels first ([M, ...])
    alpha: np.ndarray | None = None  # per-output-channel magnitude, for binary weights

    def describe(self) -> str:
        if self.kind == "binary":
            return "binary (+-alpha per output channel)"
        if self.kind == "multi-level":
            levels = int(np.unique(self.values).size)
            return f"{levels} distinct levels from {self.source}"
        return f"{self.kind} ({self.source})"


@dataclass
class InputInfo:
    kind: str  # "binary", "int" or "float"
    bits: int | None
    source: str
    scale: float | None = None  # BipolarQuant's scalar scale
    quant_node: ir.Node | None = None


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
        return WeightInfo("multi-level", bits, source, rows)
    return WeightInfo("float", None, source, rows)


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
    return InputInfo("float", None, producer.op_type if producer is not None else "graph input")


def _binary_refusal(node: ir.Node, weight: WeightInfo, inp: InputInfo) -> str:
    """Why a layer cannot become an XNOR op ('' when it can)."""
    if weight.kind != "binary":
        return f"weights are {weight.describe()}, not binary"
    if inp.kind != "binary":
        return f"input is {inp.kind} ({inp.source}), not binary"
    if inp.scale is None or not inp.scale > 0:
        return "input BipolarQuant scale is not a positive scalar constant"
    if node.op_type == "Conv":
        if len(weight.values.shape) != 4:
            return f"expected a 2-D conv (4-D weight), got a {weight.values.ndim}-D weight"
        auto_pad = node.attributes.get("auto_pad")
        if auto_pad is not None and auto_pad.as_string() not in ("NOTSET", ""):
            return f"auto_pad={auto_pad.as_string()} is not supported; export with explicit pads"
        if len(node.inputs) > 2 and node.inputs[2] is not None and const_array(node.inputs[2]) is None:
            return "Conv bias is not constant"
        return ""
    if node.op_type == "Gemm":
        if int_attr(node, "transA", 0):
            return "Gemm with transA=1 is not supported"
        c = node.inputs[2] if len(node.inputs) > 2 else None
        if c is not None:
            cval = const_array(c)
            m = weight.values.shape[0]
            if cval is None or cval.size not in (1, m):
                return "Gemm's C is not a constant per-output vector"
    if node.op_type == "MatMul" and weight.values.ndim != 2:
        return "MatMul weight is not 2-D"
    return ""


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
    reason = _binary_refusal(node, weight, inp)
    if reason:
        layer.reason = reason
    else:
        layer.target = "XnorConv" if node.op_type == "Conv" else "XnorGemm"
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
