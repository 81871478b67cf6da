"""Reference BitSerialConvThreshold / BitSerialGemmThreshold / PlaneMaxPool (custom_ops/SPEC.md).

A multi-bit layer that writes the next layer's packed codes: D is BitSerialConv's exact integer
dot product; per output channel m, L = 2^B - 1 monotone thresholds T[m] count how many levels D
reaches,

    count = #{k : D >= T[m, k]}   (direction +1)      count = #{k : D <= T[m, k]}   (direction -1)

and the code v = out_base + count is what QuantizePack would have written for the next layer
(v = q - zero_point with q in [qmin, qmax], so out_base = qmin - zero_point): P planes, two's
complement when out_base < 0. The reference counts in int64 and encodes with bitserial.to_planes;
it does not use the kernels' branch-free compare.

PlaneMaxPool decodes the codes to integers, takes the max (the min for channels of or_mask) over
the in-bounds window and encodes again; the kernel's bit-sliced max is checked against that.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from qcompile.ops.bitserial import (
    bitserial_conv_int,
    bitserial_gemm_int,
    from_planes,
    plane_coeffs,
    to_planes,
)
from qcompile.ops.packing import WORD_BITS, pack_last_axis, unpack_last_axis, words_for
from qcompile.ops.xnor import conv_output_size


def threshold_codes(d: np.ndarray, thresholds: np.ndarray, direction: np.ndarray, out_base: int) -> np.ndarray:
    """int64 codes out_base + count for D [N, M, ...] (module docstring)."""
    t = np.asarray(thresholds, np.int64)  # [M, L]
    up = np.asarray(direction, np.int64) > 0  # [M]
    tail = (1,) * (d.ndim - 2)
    d = np.asarray(d, np.int64)[:, :, None]  # [N, M, 1, ...]
    t = t.reshape(1, *t.shape, *tail)  # [1, M, L, 1...]
    up = up.reshape(1, -1, 1, *tail)
    reached = np.where(up, d >= t, d <= t)
    return int(out_base) + reached.sum(axis=2, dtype=np.int64)


def pack_code_planes(v: np.ndarray, planes: int, signed: bool, group: int = 1) -> np.ndarray:
    """int codes [N, M, H, W] -> uint64 [N, H, W, G*P*Wg] (or [N, M] -> [N, P*Kw])."""
    bits = to_planes(v, planes, signed)  # [P, N, M, ...]
    if v.ndim == 2:
        return np.concatenate([pack_last_axis(bits[p]) for p in range(planes)], axis=-1)
    n, m, h, w = v.shape
    mg = m // group
    per = bits.transpose(1, 3, 4, 0, 2).reshape(n, h, w, planes, group, mg).transpose(0, 1, 2, 4, 3, 5)
    return pack_last_axis(per).reshape(n, h, w, group * planes * words_for(mg))


def _check_codes(out_base: int, levels: int, planes: int) -> bool:
    signed = out_base < 0
    lo, hi = (-(1 << (planes - 1)), (1 << (planes - 1)) - 1) if signed else (0, (1 << planes) - 1)
    if out_base < lo or out_base + levels > hi:
        raise ValueError(f"expected codes [{out_base}, {out_base + levels}] to fit {planes} planes [{lo}, {hi}]")
    return signed


def bitserial_conv_threshold(xp, wp, thresholds, direction, *, out_base: int, out_planes: int, out_group: int = 1,
                             **conv) -> np.ndarray:
    """BitSerialConvThreshold: packed uint64 [N, OH, OW, out_group * P * Wg_out]."""
    signed = _check_codes(int(out_base), np.asarray(thresholds).shape[1], int(out_planes))
    d = bitserial_conv_int(xp, wp, **conv)
    return pack_code_planes(threshold_codes(d, thresholds, direction, out_base), int(out_planes), signed, out_group)


def bitserial_gemm_threshold(xp, wp, thresholds, direction, *, out_base: int, out_planes: int, **dense) -> np.ndarray:
    """BitSerialGemmThreshold: packed uint64 [N, P * Kw_out]."""
    signed = _check_codes(int(out_base), np.asarray(thresholds).shape[1], int(out_planes))
    d = bitserial_gemm_int(xp, wp, **dense)
    return pack_code_planes(threshold_codes(d, thresholds, direction, out_base), int(out_planes), signed)


def bitserial_mlp(x, w, thresholds, direction, out_scale, out_bias, *, features, act_coeffs, act_planes, weight_coeffs,
                  weight_planes, weight_offset, levels=(), out_base=(), **quant) -> np.ndarray:
    """BitSerialMlp: QuantizePack(x; quant), then each layer l of the chain on the concatenated
    W / thresholds / direction (BitSerialGemmThreshold but the last, BitSerialGemm with out_scale
    and out_bias, the op's inputs 4 and 5, for the last); float32 [N, features[-1]]."""
    from qcompile.ops.bitserial import bitserial_gemm, quantize_pack
    from qcompile.ops.packing import words_for

    h = quantize_pack(np.asarray(x, np.float32), **quant)
    w, thresholds, direction = np.asarray(w).reshape(-1), np.asarray(thresholds).reshape(-1), np.asarray(direction).reshape(-1)
    layers = len(features) - 1
    a_at = q_at = w_at = t_at = d_at = 0
    for lyr in range(layers):
        k, m = int(features[lyr]), int(features[lyr + 1])
        p, q = int(act_planes[lyr]), int(weight_planes[lyr])
        dense = dict(in_features=k, act_coeffs=list(act_coeffs[a_at:a_at + p]),
                     weight_coeffs=list(weight_coeffs[q_at:q_at + q]), weight_offset=int(weight_offset[lyr]))
        a_at, q_at = a_at + p, q_at + q
        words = m * q * words_for(k)
        wl = w[w_at:w_at + words].reshape(m, q * words_for(k))
        w_at += words
        if lyr + 1 == layers:
            return bitserial_gemm(h, wl, np.asarray(out_scale, np.float32), np.asarray(out_bias, np.float32), **dense)
        lv = int(levels[lyr])
        tl = thresholds[t_at:t_at + m * lv].reshape(m, lv)
        dl = direction[d_at:d_at + m]
        t_at, d_at = t_at + m * lv, d_at + m
        h = bitserial_gemm_threshold(h, wl, tl, dl, out_base=int(out_base[lyr]), out_planes=int(act_planes[lyr + 1]),
                                     **dense)
    raise ValueError("BitSerialMlp needs at least one layer (two feature counts)")


def plane_maxpool(xp: np.ndarray, or_mask: np.ndarray, *, planes: int, group: int = 1, signed: int = 0,
                  kernel_shape: Sequence[int], strides: Sequence[int] = (1, 1), pads: Sequence[int] = (0, 0, 0, 0),
                  dilations: Sequence[int] = (1, 1)) -> np.ndarray:
    """PlaneMaxPool on [N, H, W, G*P*Wg]; every bit position of a word is a channel (pad bits too)."""
    n, h, w, words = xp.shape
    wg = words // (group * planes)
    cg = wg * WORD_BITS
    coeffs = plane_coeffs(planes, bool(signed))
    bits = unpack_last_axis(xp.reshape(n, h, w, group, planes, wg), cg)  # [N,H,W,G,P,Cg]
    v = from_planes(bits.transpose(4, 0, 1, 2, 3, 5), coeffs)  # [N,H,W,G,Cg]
    use_min = unpack_last_axis(np.asarray(or_mask, np.uint64).reshape(group, wg), cg).astype(bool)  # [G, Cg]
    lo, hi = (-(1 << (planes - 1)), (1 << (planes - 1)) - 1) if signed else (0, (1 << planes) - 1)
    kh, kw = kernel_shape
    sh, sw = strides
    pt, pl, pb, pr = pads
    dh, dw = dilations
    oh, ow = conv_output_size(h, kh, sh, dh, pt, pb), conv_output_size(w, kw, sw, dw, pl, pr)
    # the empty window gives the identity: the smallest code for a max, the largest for a min
    out = np.where(use_min, hi, lo) + np.zeros((n, oh, ow, group, cg), np.int64)
    for y in range(oh):
        for x in range(ow):
            for i in range(kh):
                for j in range(kw):
                    iy, ix = y * sh - pt + i * dh, x * sw - pl + j * dw
                    if 0 <= iy < h and 0 <= ix < w:
                        tap = v[:, iy, ix]
                        out[:, y, x] = np.where(use_min, np.minimum(out[:, y, x], tap), np.maximum(out[:, y, x], tap))
    planes_bits = to_planes(out, planes, bool(signed))  # [P, N, OH, OW, G, Cg]
    per = planes_bits.transpose(1, 2, 3, 4, 0, 5)  # [N, OH, OW, G, P, Cg]
    return pack_last_axis(per).reshape(n, oh, ow, group * planes * wg)
