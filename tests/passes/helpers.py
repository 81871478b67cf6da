"""Apply passes alone, in one pipeline run whose report the test reads; random inputs for a model
and the check that a compiled graph computes what the pure-Python evaluator does."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir

from qcompile.ops import evaluator
from qcompile.passes.report import PipelineRun
from qcompile.runtime import InferenceSession


def apply_alone(proto: onnx.ModelProto, *passes) -> tuple[onnx.ModelProto, list[bool], PipelineRun]:
    """(the rewritten model, each pass's `modified`, the run with its report)."""
    model = ir.serde.deserialize_model(proto)
    model.opset_imports.setdefault("qcompile", 1)
    with PipelineRun().active() as run:
        modified = [p(model).modified for p in passes]
    return ir.serde.serialize_model(model), modified, run


def op_types(proto: onnx.ModelProto) -> list[str]:
    return [n.op_type for n in proto.graph.node]


def random_inputs(model: onnx.ModelProto, seed: int = 0) -> dict[str, np.ndarray]:
    """The model's one input, standard normal times 3 at its static shape."""
    rng = np.random.default_rng(seed)
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    return {model.graph.input[0].name: (rng.standard_normal(dims) * 3).astype(np.float32)}


def equals_the_evaluator(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> None:
    """onnxruntime with the op library and the pure-Python evaluator give the same outputs, bit for bit."""
    got = InferenceSession(model.SerializeToString()).run(None, feeds)
    want = evaluator.run(model, feeds)
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, w)
