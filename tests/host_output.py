"""Reading the printout of custom_ops/examples/host.cc (the C++ host example)."""

from __future__ import annotations

import numpy as np


def parse_outputs(text: str) -> dict[str, np.ndarray]:
    """The host's printout -> {name: float32 array of the printed shape}."""
    outputs: dict[str, np.ndarray] = {}
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        _, name, _, dims = lines[i].split()
        shape = [int(d) for d in dims.split("x")] if dims else []
        n = int(np.prod(shape))
        outputs[name] = np.array([float(v) for v in lines[i + 1:i + 1 + n]], np.float32).reshape(shape)
        i += 1 + n
    return outputs
