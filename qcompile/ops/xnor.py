"""Reference XnorConv / XnorGemm (custom_ops/SPEC.md).

Derivation: with s(b) = 1 - 2b mapping bit b to +-1, s(a)*s(b) = 1 - 2*(a xor b). Summed over the
Cg channels of one in-bounds kernel position that is Cg - 2*popcount(x xor w); out-of-bounds
(zero-padded) positions contribute 0 because the reference pads with 0, not with +-1. The reference
below never packs: it unpacks to +-1 integers and runs a plain integer convolution, so it checks the
popcount identity rather than restating it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from qcompile.ops.packing import unpack_activations, unpack_last_axis


def conv_output_size(size: int, k: int, stride: int, dilation: int, pad_begin: int, pad_end: int) -> int:
    return (size + pad_begin + pad_end - dilation * (k - 1) - 1) // stride + 1


def _signs(bits: np.ndarray) -> np.ndarray:
    return 1 - 2 * bits.astype(np.int32)


def int_conv2d(
    x: np.ndarray,
    w: np.ndarray,
    *,
    strides: Sequence[int] = (1, 1),
    pads: Sequence[int] = (0, 0, 0, 0),
    dilations: Sequence[int] = (1, 1),
    group: int = 1,
) -> np.ndarray:
    """Exact integer conv: x int [N, C, H, W], w int [M, Cg, KH, KW], zero padding -> int64 [N, M, OH, OW]."""
    n, c, h, wd = x.shape
    m, cg, kh, kw = w.shape
    pt, pl, pb, pr = pads
    sh, sw = strides
    dh, dw = dilations
    oh = conv_output_size(h, kh, sh, dh, pt, pb)
    ow = conv_output_size(wd, kw, sw, dw, pl, pr)
    xpad = np.zeros((n, c, h + pt + pb, wd + pl + pr), dtype=np.int64)
    xpad[:, :, pt : pt + h, pl : pl + wd] = x
    mg = m // group
    out = np.zeros((n, m, oh, ow), dtype=np.int64)
    for g in range(group):
        xg = xpad[:, g * cg : (g + 1) * cg]
        wg = w[g * mg : (g + 1) * mg].astype(np.int64)
        for i in range(kh):
            for j in range(kw):
                patch = xg[:, :, i * dh : i * dh + sh * (oh - 1) + 1 : sh, j * dw : j * dw + sw * (ow - 1) + 1 : sw]
                out[:, g * mg : (g + 1) * mg] += np.einsum("nchw,mc->nmhw", patch, wg[:, :, i, j])
    return out


def xnor_conv_int(
    xp: np.ndarray,
    wp: np.ndarray,
    *,
    in_channels: int,
    kernel_shape: Sequence[int],
    strides: Sequence[int] = (1, 1),
    pads: Sequence[int] = (0, 0, 0, 0),
    dilations: Sequence[int] = (1, 1),
    group: int = 1,
) -> np.ndarray:
    """The integer dot product D of XnorConv, int32 [N, M, OH, OW]."""
    cg = in_channels // group
    x = _signs(unpack_activations(xp, in_channels, group))
    w = _signs(unpack_last_axis(wp, cg)).transpose(0, 3, 1, 2)  # [M, Cg, KH, KW]
    if tuple(w.shape[2:]) != tuple(kernel_shape):
        raise ValueError(f"expected kernel_shape {tuple(w.shape[2:])}, got {tuple(kernel_shape)}")
    d = int_conv2d(x, w, strides=strides, pads=pads, dilations=dilations, group=group)
    return d.astype(np.int32)


def affine(d: np.ndarray, scale: np.ndarray, bias: np.ndarray, channel_axis: int = 1) -> np.ndarray:
    """Y = float(D) * scale + bias, one float32 multiply then one add (no FMA)."""
    shape = [1] * d.ndim
    shape[channel_axis] = -1
    s = np.asarray(scale, dtype=np.float32).reshape(shape)
    b = np.asarray(bias, dtype=np.float32).reshape(shape)
    return (d.astype(np.float32) * s + b).astype(np.float32)


def xnor_conv(xp, wp, scale, bias, **attrs) -> np.ndarray:
    """XnorConv: float32 [N, M, OH, OW]."""
    return affine(xnor_conv_int(xp, wp, **attrs), scale, bias)


def xnor_gemm_int(xp: np.ndarray, wp: np.ndarray, *, in_features: int) -> np.ndarray:
    """The integer dot product D of XnorGemm, int32 [N, M]."""
    x = _signs(unpack_last_axis(xp, in_features)).astype(np.int64)
    w = _signs(unpack_last_axis(wp, in_features)).astype(np.int64)
    return (x @ w.T).astype(np.int32)


def xnor_gemm(xp, wp, scale, bias, *, in_features: int) -> np.ndarray:
    """XnorGemm: float32 [N, M]."""
    return affine(xnor_gemm_int(xp, wp, in_features=in_features), scale, bias)


def threshold_bits(d: np.ndarray, threshold: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """{0,1} bits of XnorConvThreshold: 0 (+1) where D passes channel m's threshold. d: [N, M, ...]."""
    shape = (1, -1) + (1,) * (d.ndim - 2)
    t = np.asarray(threshold, np.int64).reshape(shape)
    up = np.asarray(direction, np.int64).reshape(shape) > 0
    positive = np.where(up, d >= t, d <= t)
    return (~positive).astype(np.uint8)


def xnor_conv_threshold(xp, wp, threshold, direction, *, out_group: int = 1, **attrs) -> np.ndarray:
    """XnorConvThreshold: packed uint64 [N, OH, OW, out_group * Wg_out]."""
    d = xnor_conv_int(xp, wp, **attrs).astype(np.int64)
    return pack_threshold_bits(d, threshold, direction, out_group)


def pack_threshold_bits(d: np.ndarray, threshold, direction, out_group: int = 1) -> np.ndarray:
    """The threshold bits of integer sums D [N, M, OH, OW], packed as XnorConvThreshold writes them
    (uint64 [N, OH, OW, out_group * Wg_out]); qcompile::ThresholdPack is exactly this."""
    from qcompile.ops.packing import pack_last_axis, words_for

    bits = threshold_bits(np.asarray(d, np.int64), threshold, direction)  # [N, M, OH, OW]
    n, m, oh, ow = bits.shape
    mg = m // out_group
    grouped = bits.transpose(0, 2, 3, 1).reshape(n, oh, ow, out_group, mg)
    return pack_last_axis(grouped).reshape(n, oh, ow, out_group * words_for(mg))


def packed_maxpool(
    xp: np.ndarray,
    or_mask: np.ndarray,
    *,
    kernel_shape: Sequence[int],
    strides: Sequence[int] = (1, 1),
    pads: Sequence[int] = (0, 0, 0, 0),
    dilations: Sequence[int] = (1, 1),
) -> np.ndarray:
    """PackedMaxPool: per bit, AND over the in-bounds window (OR where or_mask is set)."""
    n, h, w, words = xp.shape
    kh, kw = kernel_shape
    sh, sw = strides
    pt, pl, pb, pr = pads
    dh, dw = dilations
    oh = conv_output_size(h, kh, sh, dh, pt, pb)
    ow = conv_output_size(w, kw, sw, dw, pl, pr)
    ones = np.uint64(0xFFFFFFFFFFFFFFFF)
    all_and = np.full((n, oh, ow, words), ones, dtype=np.uint64)
    any_or = np.zeros((n, oh, ow, words), dtype=np.uint64)
    for y in range(oh):
        for x in range(ow):
            for i in range(kh):
                for j in range(kw):
                    iy, ix = y * sh - pt + i * dh, x * sw - pl + j * dw
                    if 0 <= iy < h and 0 <= ix < w:
                        all_and[:, y, x] &= xp[:, iy, ix]
                        any_or[:, y, x] |= xp[:, iy, ix]
    mask = np.asarray(or_mask, dtype=np.uint64)
    return (all_and & ~mask) | (any_or & mask)
