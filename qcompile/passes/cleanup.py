"""Graph cleanup: constants as initializers, no Identity or dead nodes, topological order."""

from __future__ import annotations

import onnx_ir as ir
import onnx_ir.passes.common as common


def cleanup_pass() -> ir.passes.PassBase:
    return ir.passes.Sequential(
        # Constant nodes become initializers so every later pass reads constants one way.
        common.LiftConstantsToInitializersPass(lift_all_constants=True, size_limit=0),
        common.IdentityEliminationPass(),
        # Two binary layers reading the same activation get one BinarizePack, not two.
        common.CommonSubexpressionEliminationPass(),
        common.RemoveUnusedNodesPass(),
        common.RemoveUnusedOpsetsPass(),
        common.TopologicalSortPass(),
    )
