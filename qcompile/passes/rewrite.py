"""A pass that applies one rewrite-rule set (onnxscript's rewriter) and reports whether it fired."""

from __future__ import annotations

from collections.abc import Callable

import onnx_ir as ir
from onnxscript.rewriter import pattern


class RewriteRulesPass(ir.passes.InPlacePass):
    """Apply a rule set built by `make_rules` until nothing matches."""

    def __init__(self, name: str, make_rules: Callable[[], pattern.RewriteRuleSet]):
        self.name = name
        self.make_rules = make_rules

    def __repr__(self) -> str:
        return self.name

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        rules = self.make_rules()
        total = 0
        while True:  # each application can expose a new match (e.g. Mul after a folded BN)
            count = rules.apply_to_model(model)
            total += count
            if count == 0:
                break
        return ir.passes.PassResult(model, total > 0)
