"""Quantized layers and ``quantize_model``.

``QuantConv2d`` / ``QuantLinear`` are drop-in subclasses of ``nn.Conv2d`` / ``nn.Linear`` whose
weight passes through a :class:`WeightQuantizer`; :class:`QuantAct` replaces a HardTanh (the
quantization point of a block). ``quantize_model`` swaps them into any ``nn.Module``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from .quantizers import FP_BITS, ActQuantizer, WeightQuantizer

METHODS = ("fp32", "ste", "xnor", "twn", "dorefa", "aqe", "sq", "bcgd", "progressive1",
           "progressive2", "stochastic-precision", "kd")

QuantAct = ActQuantizer


class _QuantWeightMixin:
    wq: WeightQuantizer

    def quantized_weight(self) -> Tensor:
        exp = getattr(self, "_export_fn", None)
        if exp is not None:
            return exp()
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
        if getattr(self, "_export_fn", None) is not None and x.dim() == 2:
            from .export import GemmFn  # one Gemm(transB=1) in the exported graph

            return GemmFn.apply(x, self.quantized_weight(), self.bias)
        return F.linear(x, self.quantized_weight(), self.bias)


# ---------------------------------------------------------------------------------------------
# Method → quantizers
# ---------------------------------------------------------------------------------------------
@dataclass
class QuantSpec:
    """Which quantizers a method uses, with their options (all overridable)."""

    weight: dict[str, Any] | None
    act: dict[str, Any] | None
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def method_spec(method: str, wbits: int, abits: int, *, aqe_alpha: float = 0.5,
                per_channel: bool | None = None, act_delta: float = 0.5,
                delta_factor: float = 0.7, zero_threshold: str = "log",
                bcgd_alpha: float | None = None) -> QuantSpec:
    """The weight and activation quantizer settings for ``method`` at ``wbits``/``abits``.

    * fp32: nothing quantized (HardTanh activations).
    * ste / aqe: AQE's h for weights and activations (1: sign, 2: ternary, ≥3: powers of two)
      with the STE or the AQE estimator.
    * xnor: BWN weights α_c·sign(W_c) (wbits must be 1); activations h with STE.
    * twn: TWN ternary weights (any wbits → ternary); activations h with STE.
    * sq: BWN (wbits=1) or TWN (wbits≥2) weights, channel-wise α (SQ quantizes per row), with
      stochastic row selection; activations h with STE (``--abits 32`` for the paper's
      weight-only setting).
    * bcgd: BCGD weights, BCGD adaptive quantized-ReLU activations.
    * dorefa, progressive1/2, stochastic-precision, kd: DoReFa weights and activations (§2).
    """
    if method not in METHODS:
        raise ValueError(f"expected method in {METHODS}, got {method!r}")
    if method == "fp32":
        return QuantSpec(None, None)
    w: dict[str, Any]
    a: dict[str, Any] = {"scheme": "h", "bits": abits, "estimator": "ste",
                         "act_delta": act_delta, "zero_threshold": zero_threshold}
    common = {"bits": wbits, "delta_factor": delta_factor, "zero_threshold": zero_threshold}
    if method in ("ste", "aqe"):
        est = method
        w = {"scheme": "h", "estimator": est, "alpha": aqe_alpha, **common}
        if per_channel is not None:
            w["per_channel"] = per_channel
        a.update(estimator=est, alpha=aqe_alpha)
    elif method == "xnor":
        if wbits != 1:
            raise ValueError(f"xnor has binary weights: expected --wbits 1, got {wbits}")
        w = {"scheme": "bwn", "per_channel": True if per_channel is None else per_channel,
             **common}
    elif method == "twn":
        w = {"scheme": "twn", "per_channel": bool(per_channel), **{**common, "bits": 2}}
    elif method == "sq":
        scheme = "bwn" if wbits == 1 else "twn"
        w = {"scheme": scheme, "per_channel": True if per_channel is None else per_channel,
             **{**common, "bits": 1 if wbits == 1 else 2}}
    elif method == "bcgd":
        w = {"scheme": "bcgd", **common}
        a = {"scheme": "bcgd", "bits": abits, "bcgd_alpha": bcgd_alpha}
    else:  # dorefa family
        w = {"scheme": "dorefa", **common}
        a = {"scheme": "dorefa", "bits": abits}
    if wbits >= FP_BITS:
        w = None
    return QuantSpec(w, a)


# ---------------------------------------------------------------------------------------------
# quantize_model
# ---------------------------------------------------------------------------------------------
@dataclass
class QuantReport:
    """Which layers ``quantize_model`` quantized and which it left in full precision."""

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


def quantize_model(model: nn.Module, wbits: int, abits: int, method: str = "ste",
                   keep_first_last_fp: bool = True,
                   act_types: tuple[type[nn.Module], ...] = (nn.Hardtanh,),
                   **spec_options: Any) -> QuantReport:
    """Replace Conv2d/Linear layers and activation modules of ``model`` in place.

    Weight layers are taken in registration order (``named_modules``); with
    ``keep_first_last_fp`` the first and the last stay full precision. Each module of
    ``act_types`` (HardTanh by default: the quantization point of an AQE block) becomes a
    :class:`QuantAct`. ``spec_options`` go to :func:`method_spec`. Returns the report.
    """
    spec = method_spec(method, wbits, abits, **spec_options)
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
        for name, mod in acts:
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
