"""The library's kernel-variant table as pytest parameters: one list drives every op sweep.

A variant this CPU cannot run is skipped, with the ISA it lacks as the reason.
"""

from __future__ import annotations

import pytest

from qcompile import runtime

VARIANTS = runtime.kernel_variants()
VARIANT_PARAMS = [
    pytest.param(
        v.name,
        id=v.name,
        marks=[] if v.supported else pytest.mark.skip(reason=f"CPU lacks {v.isa} for variant {v.name}"),
    )
    for v in VARIANTS
]


def lut_always(name: str) -> bool:
    """Variants named *_lut run the table-lookup kernel on every convolution it can run
    (custom_ops/xnor/xnor_variants.cc), instead of their row kernels and tap concatenation."""
    return name.endswith("_lut")


def lut_runs() -> int:
    """Convolutions that ran a table-lookup kernel since the library was loaded."""
    import ctypes

    lib = ctypes.CDLL(runtime.get_library_path())
    lib.qcompile_lut_runs.restype = ctypes.c_uint64
    return int(lib.qcompile_lut_runs())
