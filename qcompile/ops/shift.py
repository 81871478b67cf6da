"""Reference Pow2Quant / ShiftConv / ShiftGemm (custom_ops/SPEC.md, "SHIFT").

Power-of-two weights w = scale_w * (0 or ±2^e) multiply an integer activation code by a shift:
a * (±2^e) = ±(a << e). The reference below does not use shifts: it decodes the weight codes to
integers and runs a plain integer convolution, so kernels are checked against the maths itself.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from qcompile.ops.qonnx import int_range, quant_int
from qcompile.ops.xnor import affine, int_conv2d

MAX_EXPONENT = 6  # a weight code's exponent e (|w_int| = 2^e) is 0..6: 3 bits with "zero" as code 0
MAX_POW2_LEVELS = 7  # Pow2Quant: at most 7 thresholds, so |a_int| <= 2^6 fits int8


def pow2_int(x: np.ndarray, thresholds: Sequence[float]) -> np.ndarray:
    """Pow2Quant's integer code: 0 if |x| < t[0], else sign(x) * 2^j with j = max{k : |x| >= t[k]}.

    sign(x) is +1 for x >= 0 (-0.0 included), -1 otherwise; NaN compares false and gives 0.
    """
    x = np.asarray(x, dtype=np.float32)
    t = np.asarray(thresholds, dtype=np.float32)
    a = np.abs(x)
    steps = np.zeros(x.shape, dtype=np.int64)  # how many thresholds |x| reaches
    for tk in t:
        steps += a >= tk
    mag = np.where(steps > 0, np.left_shift(1, np.maximum(steps - 1, 0)), 0)
    return np.where(x >= 0, mag, -mag).astype(np.int64)


def pow2_quant(x: np.ndarray, thresholds: Sequence[float]) -> np.ndarray:
    """qcompile::Pow2Quant: Y = pow2_int(x) * 2^-(L-1), L = len(thresholds) (exact in float32)."""
    scale = np.float32(2.0 ** -(len(thresholds) - 1))
    return (pow2_int(x, thresholds).astype(np.float32) * scale).astype(np.float32)


def act_int(x: np.ndarray, *, act_mode: str, act_thresholds: Sequence[float] = (), act_scale: float = 1.0,
            act_zero_point: float = 0.0, act_bitwidth: int = 8, act_signed: int = 0, act_narrow: int = 0,
            act_rounding_mode: str = "ROUND") -> np.ndarray:
    """The integer activation a that ShiftConv multiplies: pow2 codes, or QONNX Quant's q - zero_point."""
    if act_mode == "pow2":
        return pow2_int(x, act_thresholds)
    if act_mode == "uniform":
        q = quant_int(x, act_scale, act_zero_point, act_bitwidth, signed=act_signed, narrow=act_narrow,
                      rounding_mode=act_rounding_mode)
        if np.isnan(q).any():  # Quant keeps NaN; it has no integer code (the op fails the same way)
            raise ValueError(f"expected no NaN in a uniform activation, got one at {np.argwhere(np.isnan(q))[0]}")
        return (q - np.float32(act_zero_point)).astype(np.int64)
    raise ValueError(f"act_mode must be 'pow2' or 'uniform', got {act_mode!r}")


def uniform_act_range(bitwidth: int, signed: int, narrow: int, zero_point: float) -> tuple[int, int]:
    """[lo, hi] of q - zero_point for a uniform activation (ShiftConv needs it inside int8)."""
    qmin, qmax = int_range(bitwidth, signed, narrow)
    return int(qmin - zero_point), int(qmax - zero_point)


def encode_weights(w_int: np.ndarray) -> np.ndarray:
    """Integer weights [M, K] (each 0 or ±2^e, e <= 6) -> nibble codes uint8 [M, ceil(K/2)].

    Code (4 bits): 0 = zero weight; else bit 3 = sign (1: negative), bits 0-2 = e + 1.
    Weight k of a row is in byte k // 2, low nibble for even k; an odd row ends in a 0 nibble.
    """
    w = np.asarray(w_int, dtype=np.int64)
    if w.ndim != 2:
        raise ValueError(f"expected [M, K] integer weights, got shape {w.shape}")
    mag = np.abs(w)
    e = np.zeros(w.shape, dtype=np.int64)
    nz = mag > 0
    e[nz] = np.log2(mag[nz]).round().astype(np.int64)
    if np.any(nz & ((1 << e) != mag)) or np.any(e > MAX_EXPONENT):
        bad = w[nz & (((1 << e) != mag) | (e > MAX_EXPONENT))][0]
        raise ValueError(f"weight {bad} is not 0 or ±2^e with 0 <= e <= {MAX_EXPONENT}")
    codes = np.where(nz, (e + 1) | np.where(w < 0, 8, 0), 0).astype(np.uint8)
    m, k = codes.shape
    if k % 2:
        codes = np.concatenate([codes, np.zeros((m, 1), np.uint8)], axis=1)
    return (codes[:, 0::2] | (codes[:, 1::2] << 4)).astype(np.uint8)


def decode_weights(packed: np.ndarray, k: int) -> np.ndarray:
    """Inverse of encode_weights: uint8 [M, ceil(K/2)] -> int64 [M, K]."""
    p = np.asarray(packed, dtype=np.uint8)
    codes = np.stack([p & 0xF, p >> 4], axis=-1).reshape(p.shape[0], -1)[:, :k].astype(np.int64)
    e = (codes & 7) - 1
    mag = np.where(codes & 7, np.left_shift(1, np.maximum(e, 0)), 0)
    return np.where(codes & 8, -mag, mag)


def shift_conv_int(x, w_packed, *, in_channels: int, kernel_shape: Sequence[int], strides=(1, 1),
                   pads=(0, 0, 0, 0), dilations=(1, 1), group: int = 1, **act) -> np.ndarray:
    """The exact integer sum D [N, M, OH, OW] of ShiftConv."""
    kh, kw = kernel_shape
    cg = in_channels // group
    w = decode_weights(w_packed, cg * kh * kw).reshape(-1, cg, kh, kw)
    return int_conv2d(act_int(x, **act), w, strides=strides, pads=pads, dilations=dilations, group=group)


def shift_conv(x, w_packed, scale, bias, **attrs) -> np.ndarray:
    """qcompile::ShiftConv: Y = float(D) * scale[m] + bias[m]."""
    return affine(shift_conv_int(x, w_packed, **attrs), scale, bias)


def shift_gemm_int(x, w_packed, *, in_features: int, **act) -> np.ndarray:
    a = act_int(x, **act)
    w = decode_weights(w_packed, in_features)
    return a @ w.T


def shift_gemm(x, w_packed, scale, bias, **attrs) -> np.ndarray:
    """qcompile::ShiftGemm: Y[n, m] = float(D) * scale[m] + bias[m]."""
    return affine(shift_gemm_int(x, w_packed, **attrs), scale, bias, channel_axis=1)
