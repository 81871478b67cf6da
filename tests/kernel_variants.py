"""The library's kernel-variant tables as pytest parameters, and the one way the op tests pick a
variant: the node attribute `kernel` (qcompile.runtime.kernel_variants(op_type)).

A variant this CPU cannot run is skipped, with the ISA it lacks as the reason.
"""

from __future__ import annotations

import onnx
import pytest

from qcompile import runtime


def variant_params(op_type: str) -> list:
    """One pytest.param per row of op_type's table, best first; unsupported rows skipped."""
    return [
        pytest.param(
            v.name,
            id=v.name,
            marks=[] if v.supported else pytest.mark.skip(reason=f"CPU lacks {v.isa} for variant {v.name}"),
        )
        for v in runtime.kernel_table(op_type)
    ]


def with_kernel(model: bytes | onnx.ModelProto, name: str | None) -> bytes:
    """The model with attribute kernel=name on its qcompile nodes (runtime.with_kernel)."""
    return runtime.with_kernel(model, name)


# XnorConv, XnorConvThreshold and XnorGemm share one table.
XNOR_TABLE = runtime.kernel_table("XnorConv")
VARIANT_PARAMS = variant_params("XnorConv")
