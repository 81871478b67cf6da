"""Apply passes alone, in one pipeline run whose report the test reads."""

from __future__ import annotations

import onnx
import onnx_ir as ir

from qcompile.passes.report import PipelineRun


def apply_alone(proto: onnx.ModelProto, *passes) -> tuple[onnx.ModelProto, list[bool], PipelineRun]:
    """(the rewritten model, each pass's `modified`, the run with its report)."""
    model = ir.serde.deserialize_model(proto)
    model.opset_imports.setdefault("qcompile", 1)
    with PipelineRun().active() as run:
        modified = [p(model).modified for p in passes]
    return ir.serde.serialize_model(model), modified, run


def op_types(proto: onnx.ModelProto) -> list[str]:
    return [n.op_type for n in proto.graph.node]
