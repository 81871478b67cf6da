"""Reference QONNX Trunc (domain qonnx.custom_op.general), as in custom_ops/SPEC.md "Trunc".

Brevitas exports its TruncAvgPool2d as AveragePool -> Trunc: the pooled sum of integer codes is
re-quantized to a narrower integer grid by dividing by a power of two and rounding.
Version 2 (what Brevitas writes, 6 inputs) and version 1 (5 inputs) are both defined here; every
step is a float32 operation in the order written, so the C++ kernel can match it bit for bit.
"""

from __future__ import annotations

import numpy as np

from qcompile.ops.qonnx import broadcast_to_x, int_range


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
    """2^round(log2(output_scale / scale)): the power of two the codes are divided by.

    round(log2 r) is computed exactly, without a log: with r = m·2^e, m in [0.5, 1), it is e when
    log2 m >= -1/2, i.e. m² >= 1/2 (m² is exact in float64: m has 24 bits), else e - 1; the half
    way point 2^(k+1/2) is irrational, so there is no tie. A float32 log2 (qonnx's) can round a
    ratio within about 1e-7 of 2^(k+1/2) the other way; compiler.check_trunc_nodes refuses those."""
    f32 = np.float32
    ratio = (np.asarray(output_scale, f32) / np.asarray(scale, f32)).astype(f32)
    m, e = np.frexp(ratio.astype(np.float64))
    exact = np.ldexp(np.float64(1), np.where(m * m >= 0.5, e, e - 1)).astype(f32)
    with np.errstate(divide="ignore", invalid="ignore"):  # 0, negative or non-finite ratios
        other = np.exp2(np.round(np.log2(ratio))).astype(f32)
    return np.where(np.isfinite(ratio) & (ratio > 0), exact, other).astype(f32)


def log2_near_half_integer(ratio: np.ndarray) -> np.ndarray:
    """Where log2(ratio) is within float32 rounding of k + 1/2 (|m² - 1/2| <= 2^-20, m the
    mantissa in [0.5, 1)): there qonnx's float32 log2 and the exact rounding may disagree."""
    m, _ = np.frexp(np.asarray(ratio, np.float64))
    return np.abs(m * m - 0.5) <= 2.0**-20


def trunc(x, scale, zeropt, input_bitwidth, output_scale, output_bitwidth, *, signed: int = 1,
          narrow: int = 0, rounding_mode: str = "FLOOR") -> np.ndarray:
    """Trunc version 2. q = round(x / scale + zeropt) (half to even); y = q / t with t the trunc
    scale; y is clamped to the output grid (signed, narrow, output_bitwidth) *before* it is
    rounded with rounding_mode (qonnx's order); Y = (y − zeropt / t) · output_scale.
    input_bitwidth is not used (qonnx reads it and ignores it too)."""
    del input_bitwidth
    f32 = np.float32
    x = np.asarray(x, f32)
    s, z, so = (broadcast_to_x(a, x.shape, n) for a, n in ((scale, "scale"), (zeropt, "zeropt"),
                                                           (output_scale, "output_scale")))
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
    s, z = broadcast_to_x(scale, x.shape), broadcast_to_x(zeropt, x.shape, "zeropt")
    bits_in = float(np.asarray(input_bitwidth).reshape(-1)[0])
    bits_out = float(np.asarray(output_bitwidth).reshape(-1)[0])
    t = f32(2.0 ** (bits_in - bits_out))
    y = (np.round((x / s + z).astype(f32)) / t).astype(f32)
    y = rounding_fn(rounding_mode)(y).astype(f32)
    return ((y - z) * s).astype(f32)
