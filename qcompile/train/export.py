"""Export a trained model to ONNX in the QONNX dialect (the contract the compiler relies on).

* Weights: a constant initializer feeding a QONNX node whose output feeds Conv/Gemm input B.
  Binary → ``BipolarQuant(±1, α)`` (α [M,1,1,1] / [M,1] per output channel, or scalar);
  ternary / uniform → ``Quant(Wq, scale, 0, bits, signed=1, narrow=1)`` where the initializer
  ``Wq`` already holds the exact quantized values (Quant reproduces them); AQE ≥3-bit powers of
  two → ``qcompile::Pow2Quant(Wq; thresholds)`` over the exact levels.
* Activations: binary → ``Clip(−1, 1)`` then ``BipolarQuant(x, 1.0)``; AQE 2-bit (Δ = ½) →
  ``Clip`` then ``Quant(x, 1, 0, 2, signed=1, narrow=1)``; DoReFa → ``Clip(0, 1)`` then
  ``Quant(x, 1/(2^k−1), 0, k, signed=0)``; BCGD → ``Quant(x, α, 0, b, signed=0,
  rounding_mode="CEIL")``. AQE ≥3-bit (powers of two) has no QONNX form: it is written as
  ``qcompile::Pow2Quant(x; thresholds)`` (custom_ops/SPEC.md), which the op library runs and
  the compiler lowers with the following layer to ShiftConv/ShiftGemm. A ternary Δ ≠ ½ is
  written as standard ops computing exactly what the eval-mode module computes
  (Abs, GreaterOrEqual, Cast, Mul, Add, Where; exact power-of-two sums, no rounding).
* Everything else is standard ONNX (opset 17): Conv, BatchNormalization (eval form), MaxPool,
  Clip, Gemm, Add, GlobalAveragePool, Flatten. Input "input", output "logits", dynamic batch.

Implementation: TorchScript export (``torch.onnx.export(dynamo=False)``) of a deep copy of the
model in which each quantizer is replaced by an autograd Function with a ``symbolic`` method;
scalar constants are then moved from Constant nodes into initializers.
"""

from __future__ import annotations

import copy
import os
import warnings
from pathlib import Path
from typing import Any

import onnx
import torch
from onnx import numpy_helper
from torch import Tensor, nn

from ..base.domains import QCOMPILE_DOMAIN, QCOMPILE_OPSET, QONNX_DOMAIN, QONNX_OPSET
from ..fileio import atomic_path
from .layers import QuantConv2d, QuantLinear
from .quantizers import ActQuantizer, aqe_h
from .symbolic import BipolarQuantFn, Pow2QuantFn, QuantFn

OPSET = 17  # the standard ONNX opset of the exported graph


class _ExportAct(nn.Module):
    """Eval-mode stand-in for an :class:`ActQuantizer` that traces to QONNX nodes."""

    def __init__(self, aq: ActQuantizer) -> None:
        super().__init__()
        self.aq = aq
        self.scheme, self.bits, self.active = aq.scheme, aq.bits, aq.active
        if aq.scheme == "bcgd":
            self.register_buffer("scale", aq.bcgd_alpha.detach().clone().float())
        elif aq.scheme == "dorefa":
            self.register_buffer("scale", torch.tensor(1.0 / aq.levels, dtype=torch.float32))
        else:
            self.register_buffer("scale", torch.tensor(1.0, dtype=torch.float32))

    def forward(self, x: Tensor) -> Tensor:
        aq = self.aq
        if self.scheme == "bcgd":
            if not self.active:
                return torch.relu(x)
            return QuantFn.apply(x, self.scale, 0.0, self.bits, 0, 0, "CEIL")
        if self.scheme == "dorefa":
            y = torch.clamp(x, 0.0, 1.0)
            return QuantFn.apply(y, self.scale, 0.0, self.bits, 0, 0, "ROUND") \
                if self.active else y
        y = torch.clamp(x, -1.0, 1.0)
        if not self.active:
            return y
        if self.bits == 1:
            return BipolarQuantFn.apply(y, self.scale)
        if self.bits == 2 and aq.act_delta == 0.5:
            # |y| ≤ ½ → 0 else ±1 is round-half-even of y on [−1, 1]: Quant reproduces it,
            # ties included (round(±0.5) = ±0).
            return QuantFn.apply(y, self.scale, 0.0, 2, 1, 1, "ROUND")
        if self.bits >= 3:
            return Pow2QuantFn.apply(y, self.bits, aq.zero_threshold)
        return aqe_h(y, self.bits, aq.act_delta, aq.zero_threshold)


def _make_weight_fn(layer: nn.Module):
    form = layer.wq.export_form(layer.weight)
    if form.op is None:
        return None
    layer.register_buffer("qweight", form.values.detach().clone().float())
    if form.op == "Pow2Quant":
        bits, zero_threshold = form.bits, layer.wq.zero_threshold
        return lambda: Pow2QuantFn.apply(layer.qweight, bits, zero_threshold)
    layer.register_buffer("qscale", form.scale.detach().clone().float())
    if form.op == "BipolarQuant":
        return lambda: BipolarQuantFn.apply(layer.qweight, layer.qscale)
    bits = form.bits
    return lambda: QuantFn.apply(layer.qweight, layer.qscale, 0.0, bits, 1, 1, "ROUND")


def prepare_for_export(model: nn.Module) -> nn.Module:
    """A CPU eval-mode deep copy of ``model`` whose quantizers trace to QONNX nodes."""
    m = copy.deepcopy(model).cpu().eval()
    for name, mod in list(m.named_modules()):
        if isinstance(mod, (QuantConv2d, QuantLinear)):
            fn = _make_weight_fn(mod)
            if fn is not None:
                mod.use_export_weight(fn)
                del mod.weight  # only the quantized initializer goes into the graph
        elif isinstance(mod, ActQuantizer):
            parent_name, _, child = name.rpartition(".")
            parent = m.get_submodule(parent_name) if parent_name else m
            setattr(parent, child, _ExportAct(mod))
    return m


def _constants_to_initializers(model: onnx.ModelProto) -> None:
    """Constant nodes → initializers; Identity nodes bypassed; unused initializers dropped."""
    graph = model.graph
    keep = []
    for node in graph.node:
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx") and \
                len(node.attribute) == 1 and node.attribute[0].name == "value":
            t = numpy_helper.to_array(node.attribute[0].t)
            graph.initializer.append(numpy_helper.from_array(t, node.output[0]))
        else:
            keep.append(node)
    # bypass Identity nodes (the exporter leaves some between initializers and their users)
    outputs = {o.name for o in graph.output}
    rename: dict[str, str] = {}
    nodes = []
    for node in keep:
        if node.op_type == "Identity" and node.output[0] not in outputs:
            rename[node.output[0]] = rename.get(node.input[0], node.input[0])
            continue
        nodes.append(node)
    for node in nodes:
        for i, name in enumerate(node.input):
            if name in rename:
                node.input[i] = rename[name]
    del graph.node[:]
    graph.node.extend(nodes)
    used = {i for n in graph.node for i in n.input} | outputs
    inits = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(inits)


def export_onnx(model: nn.Module, path: str | os.PathLike, in_shape: tuple[int, ...],
                metadata: dict[str, Any] | None = None) -> Path:
    """Write ``model`` (eval semantics) to ``path`` as QONNX; atomic (temp file, then rename).

    ``in_shape`` is one sample's shape (C, H, W); the batch dimension is dynamic.
    """
    path = Path(path)
    m = prepare_for_export(model)
    dummy = torch.zeros(2, *in_shape)
    with atomic_path(path, suffix=".onnx.tmp") as tmp:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(m, (dummy,), tmp, dynamo=False, opset_version=OPSET,
                              input_names=["input"], output_names=["logits"],
                              dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                              custom_opsets={QONNX_DOMAIN: QONNX_OPSET,
                                             QCOMPILE_DOMAIN: QCOMPILE_OPSET},
                              do_constant_folding=True)
        proto = onnx.load(tmp)
        _constants_to_initializers(proto)
        proto.producer_name = "qcompile.train"
        for k, v in (metadata or {}).items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = str(k), str(v)
        onnx.checker.check_model(proto)
        onnx.save(proto, tmp)
    return path
