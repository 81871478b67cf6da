"""The compile report: what every rule and pass declined to do, and why, for one pipeline run.

Passes write into the report of the run they belong to (`PipelineRun.current()`); the compile
table reads a layer's reason from it. A pass applied on its own writes into a run of its own; a
test that wants to read it activates one (`with PipelineRun().active() as run:`).
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from dataclasses import dataclass, field

import onnx_ir as ir

from qcompile.analysis import Layer, LayerAnalyses
from qcompile.base.ir_readers import node_label
from qcompile.base.metadata import LAYER_KEY


@dataclass(frozen=True)
class Refusal:
    """A match whose check failed: which rule (or pass), on which node, and the reason."""

    rule: str
    node: str
    reason: str
    # the reason is why the layer `node` stays float (not "another rule lowers it"): the compile
    # table shows it
    layer_reason: bool = False


@dataclass
class CompileReport:
    refusals: list[Refusal] = field(default_factory=list)

    def refuse(self, rule: str, node: ir.Node, reason: str, layer_reason: bool = False) -> None:
        """Record a refusal once, however many fixed-point rounds see the same match."""
        refusal = Refusal(rule, node.metadata_props.get(LAYER_KEY) or node_label(node), reason, layer_reason)
        if refusal not in self.refusals:
            self.refusals.append(refusal)

    def layer_reason(self, layer: str) -> str | None:
        """Why the layer stays float, as the first lowering rule that refused it said."""
        return next((r.reason for r in self.refusals if r.layer_reason and r.node == layer), None)

    def by_rule(self, rule: str) -> list[Refusal]:
        return [r for r in self.refusals if r.rule == rule]

    def for_node(self, node: str) -> list[Refusal]:
        return [r for r in self.refusals if r.node == node]


@dataclass
class PipelineRun:
    """What the passes of one pipeline run share: the report and the layer analyses."""

    report: CompileReport = field(default_factory=CompileReport)
    analyses: LayerAnalyses = field(default_factory=LayerAnalyses)

    def layer(self, node: ir.Node) -> Layer:
        return self.analyses.get(node)

    @staticmethod
    def current() -> PipelineRun | None:
        return _CURRENT.get()

    @staticmethod
    @contextlib.contextmanager
    def ensure() -> Iterator[PipelineRun]:
        """The active run, or a fresh one for as long as the block lasts (a pass run on its own)."""
        run = _CURRENT.get()
        if run is not None:
            yield run
            return
        with PipelineRun().active() as fresh:
            yield fresh

    @contextlib.contextmanager
    def active(self) -> Iterator[PipelineRun]:
        token = _CURRENT.set(self)
        try:
            yield self
        finally:
            _CURRENT.reset(token)


_CURRENT: contextvars.ContextVar[PipelineRun | None] = contextvars.ContextVar("qcompile_pipeline_run", default=None)
