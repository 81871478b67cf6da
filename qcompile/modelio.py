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
from qcompile.ops.qonnx import ROUNDING


def _one_line(text: str) -> str:
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def _run_checker(proto: onnx.ModelProto) -> None:
    """onnx.checker.check_model and its full check (strict shape inference), except on one point where it is stricter than the ONNX IR spec:
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
    # what full_check adds, on the model as it is (the placeholders above would clash with it)
    onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True)


QUANT_BITWIDTH_RANGE = (1, 32)  # QONNX Quant: an integer bit width, at most what int32 holds


def _constants(graph: onnx.GraphProto) -> dict[str, onnx.TensorProto]:
    found = {i.name: i for i in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.domain == "" and node.output:
            for attr in node.attribute:
                if attr.name == "value" and attr.HasField("t"):
                    found[node.output[0]] = attr.t
    return found


def _const_values(constants: dict[str, onnx.TensorProto], name: str) -> np.ndarray | None:
    tensor = constants.get(name)
    if tensor is None:
        return None
    try:
        return np.asarray(onnx.numpy_helper.to_array(tensor), dtype=np.float64)
    except (ValueError, TypeError) as exc:
        raise ModelLoadError(f"constant {name!r} cannot be read as numbers ({exc})") from None


def _broadcasts_to(shape: tuple[int, ...], target: tuple[int, ...]) -> bool:
    """SPEC's rule (as the C++ ops): numpy broadcasting to X's shape, extra leading dims of 1 allowed."""
    extra = len(shape) - len(target)
    if extra > 0 and any(d != 1 for d in shape[:extra]):
        return False
    shape = shape[max(extra, 0):]
    try:
        return np.broadcast_shapes(shape, target) == tuple(target)
    except ValueError:
        return False


# QONNX quantizers: (min inputs, max inputs); the checker knows no schema for their domain.
_QONNX_ARITY = {"BipolarQuant": (2, 2), "Quant": (4, 4), "IntQuant": (4, 4), "Trunc": (5, 6)}  # Trunc: version 1 (5 inputs) or 2 (6)


def check_qonnx_arity(proto: onnx.ModelProto, where: str) -> None:
    for node in proto.graph.node:
        if node.domain == QONNX_DOMAIN and node.op_type in _QONNX_ARITY:
            lo, hi = _QONNX_ARITY[node.op_type]
            given = [i for i in node.input if i]
            if not lo <= len(given) <= hi or len(node.output) != 1:
                raise ModelLoadError(f"{where}: node {node.name!r} ({node.op_type}) has {len(given)} input(s) and "
                                     f"{len(node.output)} output(s), expected {lo} input(s) and 1 output")


# The QONNX ops' attributes and their types (onnx checks no custom op's attributes).
_QONNX_ATTR_TYPES = {"signed": (onnx.AttributeProto.INT, "an int"), "narrow": (onnx.AttributeProto.INT, "an int"),
                     "rounding_mode": (onnx.AttributeProto.STRING, "a string")}


def check_qonnx_attribute_types(proto: onnx.ModelProto, where: str) -> None:
    """Every attribute has a type (onnx checks only its own ops'; onnx-ir cannot even write one
    without), and the QONNX ops' known attributes theirs."""
    for node in proto.graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.UNDEFINED:
                raise ModelLoadError(f"{where}: node {node.name!r} ({node.op_type}): attribute {attr.name!r} has no "
                                     "type (UNDEFINED)")
        if node.domain != QONNX_DOMAIN:
            continue
        for attr in node.attribute:
            want = _QONNX_ATTR_TYPES.get(attr.name)
            if want is not None and attr.type != want[0]:
                got = onnx.AttributeProto.AttributeType.Name(attr.type) if attr.type in (
                    onnx.AttributeProto.AttributeType.values()) else str(attr.type)
                raise ModelLoadError(f"{where}: node {node.name!r} ({node.op_type}): attribute {attr.name!r} must be "
                                     f"{want[1]}, got type {got}")


def check_quantizer_constants(proto: onnx.ModelProto, where: str) -> None:
    """Refuse QONNX quantizers whose constant parameters no QONNX runtime defines: a bit width that
    is not one integer in QUANT_BITWIDTH_RANGE (NaN, inf, 0, 33, negative), a scale that is not
    finite and positive (x / scale), a zero point that is not finite."""
    lo, hi = QUANT_BITWIDTH_RANGE
    constants = None
    for node in proto.graph.node:
        is_quant = node.op_type in QONNX_QUANT_OPS and len(node.input) >= 4
        if node.domain != QONNX_DOMAIN or not (is_quant or (node.op_type == "BipolarQuant" and len(node.input) >= 2)):
            continue
        constants = _constants(proto.graph) if constants is None else constants
        x = _const_values(constants, node.input[0])
        if x is not None and not np.all(np.isfinite(x)):
            raise ModelLoadError(f"{where}: node {node.name!r} ({node.op_type}) quantizes a constant that is not "
                                 "all finite (NaN or infinity has no quantized value)")
        scale = _const_values(constants, node.input[1])
        if scale is not None and not (np.all(np.isfinite(scale)) and np.all(scale > 0)):
            raise ModelLoadError(f"{where}: node {node.name!r} ({node.op_type}) has scale values that are not all "
                                 "finite and positive")
        params = [(name, a) for name, a in zip(("scale", "zero point"), (scale, _const_values(constants, node.input[2])
                                                                        if is_quant else None), strict=True)]
        for label, a in params:
            if x is not None and a is not None and not _broadcasts_to(a.shape, x.shape):
                raise ModelLoadError(f"{where}: node {node.name!r} ({node.op_type}): {label} of shape {list(a.shape)} "
                                     f"does not broadcast to the input's shape {list(x.shape)}")
        if not is_quant:
            continue
        attrs = {a.name: a for a in node.attribute}
        mode = attrs["rounding_mode"].s.decode("utf-8", "replace") if "rounding_mode" in attrs else "ROUND"
        if mode not in ROUNDING:
            raise ModelLoadError(f"{where}: node {node.name!r} ({node.op_type}) has rounding_mode {mode!r}, expected "
                                 f"one of {sorted(ROUNDING)}")
        for flag in ("signed", "narrow"):
            if flag in attrs and attrs[flag].i not in (0, 1):
                raise ModelLoadError(f"{where}: node {node.name!r} ({node.op_type}) has {flag}={attrs[flag].i}, "
                                     "expected 0 or 1")
        zero_point = _const_values(constants, node.input[2])
        if zero_point is not None and not np.all(np.isfinite(zero_point)):
            raise ModelLoadError(f"{where}: node {node.name!r} ({node.op_type}) has a zero point that is not finite")
        values = _const_values(constants, node.input[3])
        if values is None:
            continue
        values = values.ravel()
        if values.size != 1 or not np.isfinite(values[0]) or values[0] != np.round(values[0]) or not lo <= values[0] <= hi:
            raise ModelLoadError(f"{where}: node {node.name!r} ({node.op_type}) has bit width {values.tolist()}, "
                                 f"expected one integer from {lo} to {hi}")


def check_text_attributes(proto: onnx.ModelProto, where: str) -> None:
    """ONNX requires string attributes to be UTF-8; protobuf does not check bytes fields."""
    for node in proto.graph.node:
        for attr in node.attribute:
            for text in (attr.s, *attr.strings):
                try:
                    text.decode("utf-8")
                except UnicodeDecodeError:
                    raise ModelLoadError(f"{where}: attribute {attr.name!r} of node {node.name!r} ({node.op_type}) "
                                         "is not UTF-8 text") from None


def check_initializers(proto: onnx.ModelProto, where: str) -> None:
    """Every initializer holds as many values as its dims say, of a known type (the checker does not
    look; readers would fail later, far from the cause). External data is checked when read."""
    for init in proto.graph.initializer:
        if init.data_location == onnx.TensorProto.EXTERNAL:
            continue
        try:
            values = onnx.numpy_helper.to_array(init)
            # and the reader the passes use, stricter on packed sub-byte data (FLOAT6E2M3 with too
            # many bytes reads here but fails in constant folding)
            ir.serde.deserialize_tensor(init).numpy()
        except Exception as exc:  # ValueError (size), TypeError/KeyError (unknown data type)...
            raise ModelLoadError(f"{where}: initializer {init.name!r} cannot be read: {_one_line(exc)}") from None
        if list(values.shape) != list(init.dims):
            raise ModelLoadError(f"{where}: initializer {init.name!r} holds shape {list(values.shape)}, "
                                 f"its dims say {list(init.dims)}")


def check_proto(proto: onnx.ModelProto, where: str) -> onnx.ModelProto:
    """onnx.checker's verdict first (its message is the error), then what qcompile itself needs."""
    if not proto.HasField("graph") or len(proto.graph.node) == 0:
        raise ModelLoadError(f"{where} is not an ONNX model (no graph nodes found)")
    try:
        _run_checker(proto)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError, ValueError, RuntimeError) as exc:
        raise ModelLoadError(f"{where} is not a valid ONNX model: {_one_line(exc)}") from None
    if len(proto.graph.output) == 0:
        raise ModelLoadError(f"{where} has no graph outputs: there is nothing to compute or compare")
    names = [o.name for o in proto.graph.output]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ModelLoadError(f"{where} lists graph output(s) {duplicates} more than once")
    check_text_attributes(proto, where)
    check_initializers(proto, where)
    check_qonnx_arity(proto, where)
    check_qonnx_attribute_types(proto, where)
    check_quantizer_constants(proto, where)
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
