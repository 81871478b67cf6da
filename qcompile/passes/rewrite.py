"""Pass infrastructure: readable pass names, rules that report why they did not fire, and a pass
that applies one rewrite-rule set (onnxscript's public RewritePass) to a bounded fixed point."""

from __future__ import annotations

from collections.abc import Callable

import onnx_ir as ir
from onnxscript.rewriter import MatchResult, RewritePass, pattern

from qcompile.errors import QCompileError
from qcompile.passes.report import PipelineRun

MAX_REWRITE_ROUNDS = 32  # far above what any rule set needs (the deepest chain folds in 3 rounds)


class NamedPass:
    """A pass that prints as its class name (in the error a user sees when it fails)."""

    def __repr__(self) -> str:
        return type(self).__name__

    __str__ = __repr__


class ReportingRule(pattern.RewriteRuleClassBase):
    """A rule whose `check` failures go into the compile report of the active pipeline run.

    Subclasses implement `check_match` (same arguments as onnxscript's `check`)."""

    def check(self, context, **bindings) -> MatchResult:
        result = self.check_match(context, **bindings)
        if not result:
            run = PipelineRun.current()
            if run is not None:
                run.report.refuse(self.name, context.root, result.reason, self.is_layer_reason(context.root))
        return result

    def is_layer_reason(self, node: ir.Node) -> bool:
        """Whether a refusal of this rule on `node` says why that layer stays float."""
        return False

    def check_match(self, context, **bindings) -> MatchResult:
        return MatchResult()


class RuleSetPass(NamedPass, ir.passes.InPlacePass):
    """Apply the rule set built by `make_rules` until nothing matches, at most MAX_REWRITE_ROUNDS
    times (each application can expose a new match, e.g. a Mul after a folded BatchNorm)."""

    make_rules: Callable[[], pattern.RewriteRuleSet]

    def __init__(self, max_rounds: int = MAX_REWRITE_ROUNDS) -> None:
        super().__init__()
        self.max_rounds = max_rounds

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        rewrite = RewritePass(type(self).make_rules())
        modified = False
        with PipelineRun.ensure():
            for _ in range(self.max_rounds):
                if not rewrite(model).modified:
                    return ir.passes.PassResult(model, modified)
                modified = True
        raise QCompileError(
            f"{self}: the rules still matched after {self.max_rounds} rounds (two rules undo each other?)"
        )
