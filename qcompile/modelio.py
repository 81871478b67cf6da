"""Loading and saving models: clear errors for bad files, atomic writes."""

from __future__ import annotations

import os
from pathlib import Path

import onnx
import onnx_ir as ir

from qcompile.errors import ModelLoadError
from qcompile.fileio import write_bytes_atomic


def load_proto(path: str | os.PathLike) -> onnx.ModelProto:
    """Read an ONNX file, or raise ModelLoadError saying what is wrong with it."""
    p = Path(path)
    if not p.exists():
        raise ModelLoadError(f"no such file: {p}")
    if p.is_dir():
        raise ModelLoadError(f"expected an ONNX model file, got a directory: {p}")
    try:
        proto = onnx.load(str(p))
    except Exception as exc:  # protobuf raises DecodeError, RuntimeError, ValueError...
        raise ModelLoadError(f"{p} is not an ONNX model ({type(exc).__name__}: {exc})") from exc
    if not proto.HasField("graph") or len(proto.graph.node) == 0:
        raise ModelLoadError(f"{p} is not an ONNX model (no graph nodes found)")
    return proto


def load_ir(path: str | os.PathLike) -> ir.Model:
    return ir.serde.deserialize_model(load_proto(path))


def save_atomic(model: onnx.ModelProto | ir.Model, path: str | os.PathLike) -> Path:
    """Write to a temporary file beside `path`, then rename: never a half-written model."""
    if isinstance(model, ir.Model):
        model = ir.serde.serialize_model(model)
    return write_bytes_atomic(path, model.SerializeToString())
