"""Reference QuantizePack / BitSerialConv / BitSerialGemm (custom_ops/SPEC.md, "bit planes").

A multi-bit operand is v = offset + sum_p coeff[p] * b_p over P packed bit planes. The product of
two such operands summed over a receptive field is a sum of plane-pair popcounts; the reference
below does not use that identity: it unpacks the planes back to integers and runs a plain integer
convolution (xnor.int_conv2d), so kernels are checked against the integer maths itself.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from qcompile.ops.packing import pack_last_axis, unpack_last_axis, words_for
from qcompile.ops.qonnx import int_range, quant_int
from qcompile.ops.xnor import affine, int_conv2d


def plane_coeffs(planes: int, signed: bool) -> list[int]:
    """Two's complement (signed) or plain binary plane weights."""
    coeffs = [1 << p for p in range(planes)]
    if signed:
        coeffs[-1] = -coeffs[-1]
    return coeffs


def planes_needed(lo: int, hi: int) -> tuple[int, bool]:
    """(P, signed) so every integer in [lo, hi] fits P planes."""
    if lo >= 0:
        return max(1, int(hi).bit_length()), False
    p = 1
    while not (-(1 << (p - 1)) <= lo and hi <= (1 << (p - 1)) - 1):
        p += 1
    return p, True


def to_planes(v: np.ndarray, planes: int, signed: bool) -> np.ndarray:
    """int array -> {0,1} planes stacked on a new leading axis [P, ...] (two's complement if signed)."""
    lo, hi = (-(1 << (planes - 1)), (1 << (planes - 1)) - 1) if signed else (0, (1 << planes) - 1)
    v = np.asarray(v, dtype=np.int64)
    if v.size and (v.min() < lo or v.max() > hi):
        raise ValueError(f"expected values in [{lo}, {hi}] for {planes} planes, got [{v.min()}, {v.max()}]")
    u = np.where(v < 0, v + (1 << planes), v)
    return np.stack([(u >> p) & 1 for p in range(planes)]).astype(np.uint8)


def from_planes(bits: np.ndarray, coeffs: Sequence[int], offset: int = 0) -> np.ndarray:
    """{0,1} planes [P, ...] -> integers offset + sum coeff[p] * bits[p]."""
    return offset + sum(int(c) * bits[p].astype(np.int64) for p, c in enumerate(coeffs))


def act_codes(x, *, scale, zero_point, bitwidth, signed, narrow, rounding_mode) -> np.ndarray:
    """The integer v = q - zero_point that QuantizePack encodes (QONNX Quant's integer part)."""
    q = quant_int(x, np.float32(scale), np.float32(zero_point), bitwidth, signed=signed, narrow=narrow,
                  rounding_mode=rounding_mode)
    return (q.astype(np.int64) - int(zero_point))


def quantize_pack(x, *, scale, zero_point=0.0, bitwidth, signed=0, narrow=0, rounding_mode="ROUND",
                  planes=None, group=1, pre_scale=1.0, pre_bias=0.0) -> np.ndarray:
    """QuantizePack: float -> packed planes ([N,H,W,G*P*Wg] or [N,P*Kw]). With pre_scale /
    pre_bias, x is first x * pre_scale + pre_bias, two float32 operations each rounded (the Mul
    and Add / Sub nodes the compiler folded in)."""
    if pre_scale != 1.0 or pre_bias != 0.0:
        x = np.asarray(x, np.float32) * np.float32(pre_scale)
        x = x + np.float32(pre_bias)
    v = act_codes(x, scale=scale, zero_point=zero_point, bitwidth=bitwidth, signed=signed, narrow=narrow,
                  rounding_mode=rounding_mode)
    qmin, qmax = int_range(bitwidth, signed, narrow)
    p_needed, two_c = planes_needed(int(qmin) - int(zero_point), int(qmax) - int(zero_point))
    planes = planes or p_needed
    bits = to_planes(v, planes, two_c)  # [P, N, ...]
    if x.ndim == 2:
        return np.concatenate([pack_last_axis(bits[p]) for p in range(planes)], axis=-1)
    n, c, h, w = x.shape
    cg = c // group
    per = bits.transpose(1, 3, 4, 0, 2).reshape(n, h, w, planes, group, cg)  # [N,H,W,P,G,Cg]
    per = per.transpose(0, 1, 2, 4, 3, 5)  # [N,H,W,G,P,Cg]
    return pack_last_axis(per).reshape(n, h, w, group * planes * words_for(cg))


def pack_weight_planes(codes: np.ndarray, planes: int, signed: bool) -> np.ndarray:
    """Integer weights [M, Cg, KH, KW] -> uint64 [M, KH, KW, Q*Wg] (or [M, K] -> [M, Q*Kw])."""
    bits = to_planes(codes, planes, signed)
    if codes.ndim == 2:
        return np.concatenate([pack_last_axis(bits[q]) for q in range(planes)], axis=-1)
    per = bits.transpose(1, 3, 4, 0, 2)  # [M, KH, KW, Q, Cg]
    m, kh, kw = per.shape[:3]
    return pack_last_axis(per).reshape(m, kh, kw, planes * words_for(codes.shape[1]))


def unpack_act_planes(xp: np.ndarray, channels: int, group: int, coeffs: Sequence[int]) -> np.ndarray:
    """uint64 [N,H,W,G*P*Wg] -> int activations [N, C, H, W]."""
    n, h, w, _ = xp.shape
    planes, cg = len(coeffs), channels // group
    words = xp.reshape(n, h, w, group, planes, words_for(cg))
    bits = unpack_last_axis(words, cg)  # [N,H,W,G,P,Cg]
    v = from_planes(bits.transpose(4, 0, 1, 2, 3, 5), coeffs)  # [N,H,W,G,Cg]
    return v.reshape(n, h, w, channels).transpose(0, 3, 1, 2)


def unpack_weight_planes(wp: np.ndarray, cg: int, coeffs: Sequence[int], offset: int) -> np.ndarray:
    """uint64 [M,KH,KW,Q*Wg] -> int weights [M, Cg, KH, KW]."""
    m, kh, kw, _ = wp.shape
    bits = unpack_last_axis(wp.reshape(m, kh, kw, len(coeffs), words_for(cg)), cg)  # [M,KH,KW,Q,Cg]
    return from_planes(bits.transpose(3, 0, 4, 1, 2), coeffs, offset)


def bitserial_conv_int(xp, wp, *, in_channels, kernel_shape, act_coeffs, weight_coeffs, weight_offset=0,
                       strides=(1, 1), pads=(0, 0, 0, 0), dilations=(1, 1), group=1) -> np.ndarray:
    cg = in_channels // group
    x = unpack_act_planes(xp, in_channels, group, act_coeffs)
    w = unpack_weight_planes(wp, cg, weight_coeffs, weight_offset)
    if tuple(w.shape[2:]) != tuple(kernel_shape):
        raise ValueError(f"expected kernel_shape {tuple(w.shape[2:])}, got {tuple(kernel_shape)}")
    return int_conv2d(x, w, strides=strides, pads=pads, dilations=dilations, group=group).astype(np.int32)


def bitserial_conv(xp, wp, scale, bias, **attrs) -> np.ndarray:
    return affine(bitserial_conv_int(xp, wp, **attrs), scale, bias)


def bitserial_gemm_int(xp, wp, *, in_features, act_coeffs, weight_coeffs, weight_offset=0) -> np.ndarray:
    kw = words_for(in_features)
    xb = unpack_last_axis(xp.reshape(xp.shape[0], len(act_coeffs), kw), in_features)  # [N,P,K]
    wb = unpack_last_axis(wp.reshape(wp.shape[0], len(weight_coeffs), kw), in_features)  # [M,Q,K]
    x = from_planes(xb.transpose(1, 0, 2), act_coeffs)
    w = from_planes(wb.transpose(1, 0, 2), weight_coeffs, weight_offset)
    return (x @ w.T).astype(np.int32)


def bitserial_gemm(xp, wp, scale, bias, **attrs) -> np.ndarray:
    return affine(bitserial_gemm_int(xp, wp, **attrs), scale, bias)
