"""Loading and saving models: clear errors for bad files, onnx.checker first, atomic writes."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir

from qcompile.base.domains import QONNX_DOMAIN, QONNX_QUANT_OPS
from qcompile.errors import ModelLoadError
from qcompile.fileio import check_readable_file, write_bytes_atomic


def _one_line(text: str) -> str:
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def _run_checker(proto: onnx.ModelProto) -> None:
    """onnx.checker.check_model, except on one point where it is stricter than the ONNX IR spec:
    a graph input or output without a shape (unknown rank) is allowed, as onnxruntime allows it.
    Those get an empty shape while the checker runs (it does not compare ranks without
    full_check) and lose it again after."""
    unshaped = [v.type.tensor_type for v in (*proto.graph.input, *proto.graph.output)
                if v.type.HasField("tensor_type") and not v.type.tensor_type.HasField("shape")]
    for t in unshaped:
        t.shape.SetInParent()
    try:
        onnx.checker.check_model(proto)
    finally:
        for t in unshaped:
            t.ClearField("shape")


QUANT_BITWIDTH_RANGE = (1, 32)  # QONNX Quant: an integer bit width, at most what int32 holds


def _constants(graph: onnx.GraphProto) -> dict[str, onnx.TensorProto]:
    found = {i.name: i for i in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.domain == "" and node.output:
            for attr in node.attribute:
                if attr.name == "value" and attr.HasField("t"):
                    found[node.output[0]] = attr.t
    return found


def check_quant_bit_widths(proto: onnx.ModelProto, where: str) -> None:
    """Refuse Quant nodes whose constant bit width is not one integer in QUANT_BITWIDTH_RANGE (NaN,
    inf, 0, 33, negative): no QONNX runtime defines them, so neither can a compiled layer."""
    lo, hi = QUANT_BITWIDTH_RANGE
    constants = None
    for node in proto.graph.node:
        if node.domain != QONNX_DOMAIN or node.op_type not in QONNX_QUANT_OPS or len(node.input) < 4:
            continue
        constants = _constants(proto.graph) if constants is None else constants
        tensor = constants.get(node.input[3])
        if tensor is None:
            continue
        values = np.asarray(onnx.numpy_helper.to_array(tensor), dtype=np.float64).ravel()
        if values.size != 1 or not np.isfinite(values[0]) or values[0] != np.round(values[0]) or not lo <= values[0] <= hi:
            raise ModelLoadError(f"{where}: node {node.name!r} ({node.op_type}) has bit width {values.tolist()}, "
                                 f"expected one integer from {lo} to {hi}")


def check_proto(proto: onnx.ModelProto, where: str) -> onnx.ModelProto:
    """onnx.checker's verdict first (its message is the error), then what qcompile itself needs."""
    if not proto.HasField("graph") or len(proto.graph.node) == 0:
        raise ModelLoadError(f"{where} is not an ONNX model (no graph nodes found)")
    try:
        _run_checker(proto)
    except (onnx.checker.ValidationError, ValueError, RuntimeError) as exc:
        raise ModelLoadError(f"{where} is not a valid ONNX model: {_one_line(exc)}") from None
    if len(proto.graph.output) == 0:
        raise ModelLoadError(f"{where} has no graph outputs: there is nothing to compute or compare")
    names = [o.name for o in proto.graph.output]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ModelLoadError(f"{where} lists graph output(s) {duplicates} more than once")
    check_quant_bit_widths(proto, where)
    return proto


def parse_model_bytes(data: bytes, where: str = "the model") -> onnx.ModelProto:
    """Decode and check a serialized model (no external data)."""
    proto = onnx.ModelProto()
    try:
        proto.ParseFromString(data)
    except Exception as exc:  # protobuf's DecodeError and friends
        raise ModelLoadError(f"{where} is not an ONNX model ({type(exc).__name__}: {_one_line(exc)})") from None
    return check_proto(proto, where)


def load_proto(path: str | os.PathLike) -> onnx.ModelProto:
    """Read an ONNX file, or raise ModelLoadError saying what is wrong with it."""
    p = check_readable_file(path)
    try:
        proto = onnx.load(str(p))
    except Exception as exc:  # protobuf raises DecodeError, RuntimeError, ValueError...
        raise ModelLoadError(f"{p} is not an ONNX model ({type(exc).__name__}: {_one_line(exc)})") from None
    return check_proto(proto, str(p))


def load_ir(path: str | os.PathLike) -> ir.Model:
    return ir.serde.deserialize_model(load_proto(path))


def save_atomic(model: onnx.ModelProto | ir.Model, path: str | os.PathLike) -> Path:
    """Write to a temporary file beside `path`, then rename: never a half-written model."""
    if isinstance(model, ir.Model):
        model = ir.serde.serialize_model(model)
    return write_bytes_atomic(path, model.SerializeToString())
