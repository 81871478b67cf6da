"""Quantized layers and ``apply_spec``.

``QuantConv2d`` / ``QuantLinear`` are drop-in subclasses of ``nn.Conv2d`` / ``nn.Linear`` whose
weight passes through a :class:`WeightQuantizer`; :class:`QuantAct` replaces a HardTanh (the
quantization point of a block). ``apply_spec`` swaps them into any ``nn.Module`` per a
:class:`QuantSpec`; which spec a method uses is in :mod:`.registry`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from .quantizers import ActQuantizer, WeightQuantizer
from .symbolic import GemmFn

QuantAct = ActQuantizer


class _QuantWeightMixin:
    """The weight a quantized layer computes with: ``wq(weight)``, or, in a copy prepared for
    export, the function that traces to the weight's QONNX node (:meth:`use_export_weight`)."""

    wq: WeightQuantizer
    export_weight: Callable[[], Tensor] | None = None

    def use_export_weight(self, fn: Callable[[], Tensor]) -> None:
        """Compute with ``fn()`` instead of ``wq(weight)`` (export only; the caller then drops
        ``weight`` so that only the quantized initializer reaches the graph)."""
        self.export_weight = fn

    def quantized_weight(self) -> Tensor:
        if self.export_weight is not None:
            return self.export_weight()
        return self.wq(self.weight)


class QuantConv2d(_QuantWeightMixin, nn.Conv2d):
    """``nn.Conv2d`` with a quantized weight (``self.wq``)."""

    def __init__(self, *args: Any, wq: WeightQuantizer | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.wq = wq if wq is not None else WeightQuantizer()

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, wq: WeightQuantizer) -> QuantConv2d:
        new = cls(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                  conv.padding, conv.dilation, conv.groups, conv.bias is not None,
                  conv.padding_mode, wq=wq)
        new.load_state_dict(conv.state_dict(), strict=False)
        return new.to(conv.weight.device)

    def forward(self, x: Tensor) -> Tensor:
        return self._conv_forward(x, self.quantized_weight(), self.bias)


class QuantLinear(_QuantWeightMixin, nn.Linear):
    """``nn.Linear`` with a quantized weight (``self.wq``)."""

    def __init__(self, *args: Any, wq: WeightQuantizer | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.wq = wq if wq is not None else WeightQuantizer()

    @classmethod
    def from_linear(cls, lin: nn.Linear, wq: WeightQuantizer) -> QuantLinear:
        new = cls(lin.in_features, lin.out_features, lin.bias is not None, wq=wq)
        new.load_state_dict(lin.state_dict(), strict=False)
        return new.to(lin.weight.device)

    def forward(self, x: Tensor) -> Tensor:
        if self.export_weight is not None and x.dim() == 2:
            return GemmFn.apply(x, self.quantized_weight(), self.bias)  # one Gemm(transB=1)
        return F.linear(x, self.quantized_weight(), self.bias)


# ---------------------------------------------------------------------------------------------
# Quantizer settings
# ---------------------------------------------------------------------------------------------
@dataclass
class QuantSpec:
    """Which quantizers a method uses, with their options (all overridable)."""

    weight: dict[str, Any] | None
    act: dict[str, Any] | None
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# apply_spec
# ---------------------------------------------------------------------------------------------
@dataclass
class QuantReport:
    """Which layers ``apply_spec`` quantized and which it left in full precision."""

    quantized: list[str] = field(default_factory=list)
    full_precision: list[str] = field(default_factory=list)
    activations: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, list[str]]:
        return {"quantized": self.quantized, "full_precision": self.full_precision,
                "activation_quantizers": self.activations}

    def __str__(self) -> str:
        return (f"quantized layers: {', '.join(self.quantized) or '-'}\n"
                f"full-precision layers: {', '.join(self.full_precision) or '-'}\n"
                f"activation quantizers: {', '.join(self.activations) or '-'}")


def _set_module(root: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, new)


def apply_spec(model: nn.Module, spec: QuantSpec, keep_first_last_fp: bool = True,
               act_types: tuple[type[nn.Module], ...] = (nn.Hardtanh,)) -> QuantReport:
    """Replace Conv2d/Linear layers and activation modules of ``model`` in place per ``spec``.

    Weight layers are taken in registration order (``named_modules``); with
    ``keep_first_last_fp`` the first and the last stay full precision. Each module of
    ``act_types`` (HardTanh by default: the quantization point of an AQE block) becomes a
    :class:`QuantAct`. Returns the report (also stored as ``model.quant_report``).
    """
    report = QuantReport()
    weight_layers = [(n, m) for n, m in model.named_modules()
                     if isinstance(m, (nn.Conv2d, nn.Linear))]
    acts = [(n, m) for n, m in model.named_modules() if isinstance(m, act_types)
            and not isinstance(m, ActQuantizer)]
    for i, (name, mod) in enumerate(weight_layers):
        keep = keep_first_last_fp and i in (0, len(weight_layers) - 1)
        if spec.weight is None or keep:
            report.full_precision.append(name)
            continue
        wq = WeightQuantizer(**spec.weight)
        if isinstance(mod, nn.Conv2d):
            new: nn.Module = QuantConv2d.from_conv(mod, wq)
        else:
            new = QuantLinear.from_linear(mod, wq)
        _set_module(model, name, new)
        report.quantized.append(name)
    if spec.act is not None:
        for name, _ in acts:
            _set_module(model, name, ActQuantizer(**spec.act))
            report.activations.append(name)
    model.quant_report = report  # type: ignore[attr-defined]
    return report


def weight_quantizers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The quantized weight layers of ``model`` (name, layer)."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, (QuantConv2d, QuantLinear))]


def act_quantizers(model: nn.Module) -> list[tuple[str, ActQuantizer]]:
    """The activation quantizers of ``model`` (name, module)."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, ActQuantizer)]
