"""``quantize_model``: a method's quantizers (from the registry) swapped into any model."""

from __future__ import annotations

from typing import Any

from torch import nn

from .layers import QuantReport, apply_spec
from .registry import method_spec


def quantize_model(model: nn.Module, wbits: int, abits: int, method: str = "ste",
                   keep_first_last_fp: bool = True,
                   act_types: tuple[type[nn.Module], ...] = (nn.Hardtanh,),
                   **spec_options: Any) -> QuantReport:
    """Replace Conv2d/Linear layers and activation modules of ``model`` in place with
    ``method``'s quantizers at ``wbits``/``abits`` (see :func:`.layers.apply_spec`);
    ``spec_options`` go to :func:`.registry.method_spec`. Returns the report."""
    spec = method_spec(method, wbits, abits, **spec_options)
    return apply_spec(model, spec, keep_first_last_fp, act_types)
