"""Reference QONNX Trunc (domain qonnx.custom_op.general), as in custom_ops/SPEC.md "Trunc".

Brevitas exports its TruncAvgPool2d as AveragePool -> Trunc: the pooled sum of integer codes is
re-quantized to a narrower integer grid by dividing by a power of two and rounding.
Version 2 (what Brevitas writes, 6 inputs) and version 1 (5 inputs) are both defined here; every
step is a float32 operation in the order written, so the C++ kernel can match it bit for bit.
"""

from __future__ import annotations

import numpy as np

from qcompile.ops.qonnx import int_range


def _sign(y: np.ndarray) -> np.ndarray:
    return np.sign(y).astype(np.float32)


# qonnx's own rounding-mode names for Trunc (ROUND and HALF_EVEN are both half to even)
TRUNC_ROUNDING = {
    "ROUND": np.round,
    "HALF_EVEN": np.round,
    "CEIL": np.ceil,
    "FLOOR": np.floor,
    "UP": lambda y: _sign(y) * np.ceil(np.abs(y)),  # away from zero
    "DOWN": np.trunc,  # toward zero
    "HALF_UP": lambda y: _sign(y) * np.floor(np.abs(y) + np.float32(0.5)),  # ties away from zero
    "HALF_DOWN": lambda y: _sign(y) * np.ceil(np.abs(y) - np.float32(0.5)),  # ties toward zero
}


def rounding_fn(mode: str):
    """The rounding function of a Trunc rounding_mode (case-insensitive, as qonnx reads it)."""
    fn = TRUNC_ROUNDING.get(str(mode).upper())
    if fn is None:
        raise ValueError(f"expected Trunc rounding_mode in {sorted(TRUNC_ROUNDING)}, got {mode!r}")
    return fn


def trunc_scale(scale, output_scale) -> np.ndarray:
    """2^round(log2(output_scale / scale)): the power of two the codes are divided by."""
    f32 = np.float32
    ratio = (np.asarray(output_scale, f32) / np.asarray(scale, f32)).astype(f32)
    return np.exp2(np.round(np.log2(ratio))).astype(f32)


def trunc(x, scale, zeropt, input_bitwidth, output_scale, output_bitwidth, *, signed: int = 1,
          narrow: int = 0, rounding_mode: str = "FLOOR") -> np.ndarray:
    """Trunc version 2. q = round(x / scale + zeropt) (half to even); y = q / t with t the trunc
    scale; y is clamped to the output grid (signed, narrow, output_bitwidth) *before* it is
    rounded with rounding_mode (qonnx's order); Y = (y − zeropt / t) · output_scale.
    input_bitwidth is not used (qonnx reads it and ignores it too)."""
    del input_bitwidth
    f32 = np.float32
    x = np.asarray(x, f32)
    s, z, so = (np.asarray(a, f32) for a in (scale, zeropt, output_scale))
    t = trunc_scale(s, so)
    y = (np.round((x / s + z).astype(f32)) / t).astype(f32)
    qmin, qmax = int_range(float(np.asarray(output_bitwidth).reshape(-1)[0]), signed, narrow)
    y = np.clip(y, f32(qmin), f32(qmax))
    y = rounding_fn(rounding_mode)(y).astype(f32)
    return ((y - (z / t).astype(f32)) * so).astype(f32)


def trunc_v1(x, scale, zeropt, input_bitwidth, output_bitwidth, *, rounding_mode: str = "FLOOR") -> np.ndarray:
    """Trunc version 1: t = 2^(input_bitwidth − output_bitwidth); y = rounding(round(x / scale +
    zeropt) / t); Y = (y − zeropt) · scale (no clamp; the *input* scale, as qonnx defines it)."""
    f32 = np.float32
    x = np.asarray(x, f32)
    s, z = np.asarray(scale, f32), np.asarray(zeropt, f32)
    bits_in = float(np.asarray(input_bitwidth).reshape(-1)[0])
    bits_out = float(np.asarray(output_bitwidth).reshape(-1)[0])
    t = f32(2.0 ** (bits_in - bits_out))
    y = (np.round((x / s + z).astype(f32)) / t).astype(f32)
    y = rounding_fn(rounding_mode)(y).astype(f32)
    return ((y - z) * s).astype(f32)
