"""Loading and saving models: clear errors for bad files, onnx.checker first, atomic writes."""

from __future__ import annotations

import os
from pathlib import Path

import onnx
import onnx_ir as ir

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
