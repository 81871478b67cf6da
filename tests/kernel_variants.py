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
