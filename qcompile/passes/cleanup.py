"""Graph cleanup: constants as initializers, constant folding, no Identity or dead nodes, sorted."""

from __future__ import annotations

import onnx_ir as ir
import onnx_ir.passes.common as common
from onnxscript.optimizer import constant_folding

from qcompile.passes.rewrite import NamedPass


class CleanupPass(NamedPass, ir.passes.Sequential):
    """The normalisation every stage of the pipeline starts from."""

    def __init__(self) -> None:
        super().__init__(
            # Weights listed as graph inputs (old exporters do this) would stay alive after folding;
            # a compiled model's weights are constants, not overridable inputs.
            common.RemoveInitializersFromInputsPass(),
            # Constant nodes become initializers so every later pass reads constants one way.
            common.LiftConstantsToInitializersPass(lift_all_constants=True, size_limit=0),
            common.IdentityEliminationPass(),
            # Standard ops on constants (a Transpose of a folded weight) become constants; QONNX and
            # qcompile ops are left alone (the folder only evaluates ops it knows).
            constant_folding.FoldConstantsPass(shape_inference=False, input_size_limit=1 << 26, output_size_limit=1 << 26),
            # Two binary layers reading the same activation get one BinarizePack, not two.
            common.CommonSubexpressionEliminationPass(),
            common.RemoveUnusedNodesPass(),
            common.RemoveUnusedOpsetsPass(),
            common.TopologicalSortPass(),
        )
