"""Post-training quantization of float models: insert QONNX quantizers, then compile as usual.

Weights: per output channel. 1 bit: BipolarQuant(W, alpha_c = mean|W_c|) (XNOR-Net scaling);
N bits: Quant(W, s_c = max|W_c| / (2^(N-1) - 1), 0, N, signed, narrow). Activations (--abits, needs
calibration inputs): per tensor, Quant(x, s, 0, M) with s = max|x| / qmax over the calibration
data, unsigned where every calibration value is >= 0 (after a ReLU), signed otherwise; 1 bit is
BipolarQuant(x, 1). The first conv and the last dense layer stay float by default (as in the
papers). The result is a reference QONNX model: what the compiler then lowers matches it exactly
in its integer part, and `PtqReport` says what the quantization itself costs against the float model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper, numpy_helper

from qcompile.base.domains import QONNX_DOMAIN, QONNX_OPSET
from qcompile.errors import QCompileError

LAYER_OPS = ("Conv", "Gemm", "MatMul")


@dataclass
class PtqReport:
    quantized: list[str] = field(default_factory=list)
    kept_float: list[str] = field(default_factory=list)
    max_abs_error: float = 0.0  # quantized reference vs float model, on the calibration inputs
    rel_error: float = 0.0
    top1_agreement: float | None = None


def _initializers(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}


def _weight_axis(node: onnx.NodeProto) -> int:
    """The output-channel axis of the layer's weight."""
    if node.op_type == "Conv":
        return 0
    trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
    return 0 if node.op_type == "Gemm" and trans_b else 1


def _weight_quantizer(name: str, w: np.ndarray, axis: int, bits: int) -> tuple[list, list[onnx.TensorProto]]:
    other = tuple(a for a in range(w.ndim) if a != axis)
    shape = [1] * w.ndim
    shape[axis] = w.shape[axis]
    if bits == 1:
        scale = np.mean(np.abs(w), axis=other).reshape(shape).astype(np.float32)
        node = helper.make_node("BipolarQuant", [name, f"{name}/ptq_scale"], [f"{name}/ptq"], domain=QONNX_DOMAIN)
        return [node], [numpy_helper.from_array(scale, f"{name}/ptq_scale")]
    qmax = 2 ** (bits - 1) - 1
    scale = (np.max(np.abs(w), axis=other) / qmax).reshape(shape).astype(np.float32)
    scale[scale == 0] = 1.0
    inits = [numpy_helper.from_array(scale, f"{name}/ptq_scale"), numpy_helper.from_array(np.float32(0), f"{name}/ptq_zp"),
             numpy_helper.from_array(np.float32(bits), f"{name}/ptq_bits")]
    node = helper.make_node("Quant", [name, f"{name}/ptq_scale", f"{name}/ptq_zp", f"{name}/ptq_bits"],
                            [f"{name}/ptq"], domain=QONNX_DOMAIN, signed=1, narrow=1, rounding_mode="ROUND")
    return [node], inits


def _activation_quantizer(name: str, lo: float, hi: float, bits: int) -> tuple[list, list[onnx.TensorProto]]:
    out = f"{name}/ptq_act"
    if bits == 1:
        inits = [numpy_helper.from_array(np.float32(1.0), f"{out}_scale")]
        return [helper.make_node("BipolarQuant", [name, f"{out}_scale"], [out], domain=QONNX_DOMAIN)], inits
    signed = int(lo < 0)
    qmax = 2 ** (bits - 1) - 1 if signed else 2**bits - 1
    scale = np.float32(max(abs(lo), abs(hi)) / qmax) or np.float32(1.0)
    inits = [numpy_helper.from_array(np.float32(scale), f"{out}_scale"), numpy_helper.from_array(np.float32(0), f"{out}_zp"),
             numpy_helper.from_array(np.float32(bits), f"{out}_bits")]
    node = helper.make_node("Quant", [name, f"{out}_scale", f"{out}_zp", f"{out}_bits"], [out], domain=QONNX_DOMAIN,
                            signed=signed, narrow=0, rounding_mode="ROUND")
    return [node], inits


def _calibrate(model: onnx.ModelProto, names: list[str], feeds: dict[str, np.ndarray]) -> dict[str, tuple[float, float]]:
    from qcompile.verify import open_session, with_outputs

    sess = open_session(with_outputs(model, names), None, "the float")
    values = sess.run(names, feeds)
    return {n: (float(np.min(v)), float(np.max(v))) for n, v in zip(names, values, strict=False)}


def quantize_float_model(
    model: onnx.ModelProto,
    wbits: int,
    abits: int | None = None,
    calib: dict[str, np.ndarray] | None = None,
    keep_first_last: bool = True,
) -> tuple[onnx.ModelProto, PtqReport]:
    """Insert weight (and, with calibration data, activation) quantizers into a float model."""
    if abits is not None and calib is None:
        raise QCompileError("--abits on a float model needs calibration inputs: pass --calib data.npz")
    inits = _initializers(model)
    nodes = list(model.graph.node)
    layers = [i for i, n in enumerate(nodes) if n.domain == "" and n.op_type in LAYER_OPS and n.input[1] in inits]
    if not layers:
        raise QCompileError("the model has no Conv/Gemm/MatMul with constant weights to quantize")
    chosen = set(layers[1:-1] if keep_first_last and len(layers) > 2 else layers)
    report = PtqReport(kept_float=[nodes[i].name or nodes[i].output[0] for i in layers if i not in chosen])
    ranges = _calibrate(model, [nodes[i].input[0] for i in sorted(chosen)], calib) if abits is not None else {}
    out = onnx.ModelProto()
    out.CopyFrom(model)
    if not any(o.domain == QONNX_DOMAIN for o in out.opset_import):
        out.opset_import.append(helper.make_opsetid(QONNX_DOMAIN, QONNX_OPSET))
    new_nodes, new_inits, act_done = [], [], {}
    for index, node in enumerate(out.graph.node):
        if index in chosen:
            w = inits[node.input[1]]
            qnodes, qinits = _weight_quantizer(node.input[1] + f"@{len(new_nodes)}", w, _weight_axis(node), wbits)
            # the quantizer reads the original initializer under its own name
            qnodes[0].input[0] = node.input[1]
            new_nodes += qnodes
            new_inits += qinits
            node.input[1] = qnodes[0].output[0]
            if abits is not None:
                x = node.input[0]
                if x not in act_done:
                    anodes, ainits = _activation_quantizer(x, *ranges[x], abits)
                    new_nodes += anodes
                    new_inits += ainits
                    act_done[x] = anodes[0].output[0]
                node.input[0] = act_done[x]
            report.quantized.append(node.name or node.output[0])
        new_nodes.append(node)
    del out.graph.node[:]
    out.graph.node.extend(new_nodes)
    out.graph.initializer.extend(new_inits)

    return out, report


def measure_cost(float_model: onnx.ModelProto, quantized: onnx.ModelProto, feeds: dict[str, np.ndarray], report: PtqReport) -> None:
    """How far the quantized reference is from the float model (what PTQ itself costs)."""
    from qcompile.verify import compare_output, open_session

    ref = open_session(float_model, None, "the float").run(None, feeds)[0]
    got = open_session(quantized, None, "the quantized").run(None, feeds)[0]
    parity = compare_output("output", np.asarray(ref), np.asarray(got), 0.0)
    report.max_abs_error, report.rel_error, report.top1_agreement = parity.max_abs_error, parity.rel_error, parity.top1_agreement
