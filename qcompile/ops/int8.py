"""Reference qcompile::Requantize (custom_ops/SPEC.md): an int8 layer's int32 sums to the next
int8 layer's codes, optionally through a 2-D MaxPool, in float32 steps in the order onnxruntime's
Cast -> Mul -> Add -> [MaxPool] -> QuantizeLinear -> Clip chain does them, which this op replaces.
The pool is MaxPool's own definition (the max of the float values, -inf outside the input); the
C++ kernel pools the int32 sums instead, which this twin checks.
"""

from __future__ import annotations

import numpy as np

from qcompile.ops.shift import pow2_int


def _maxpool(y: np.ndarray, kernel_shape, strides, pads, dilations) -> np.ndarray:
    """ONNX MaxPool (floor mode) of [N, M, H, W] float32, -inf in the padding."""
    (kh, kw), (sh, sw), (dh, dw), (pt, pl, pb, pr) = kernel_shape, strides, dilations, pads
    n, m, h, w = y.shape
    padded = np.full((n, m, h + pt + pb, w + pl + pr), -np.inf, np.float32)
    padded[:, :, pt:pt + h, pl:pl + w] = y
    oh = (h + pt + pb - dh * (kh - 1) - 1) // sh + 1
    ow = (w + pl + pr - dw * (kw - 1) - 1) // sw + 1
    out = np.full((n, m, oh, ow), -np.inf, np.float32)
    for i in range(kh):
        for j in range(kw):
            tap = padded[:, :, i * dh:i * dh + sh * (oh - 1) + 1:sh, j * dw:j * dw + sw * (ow - 1) + 1:sw]
            out = np.maximum(out, tap)
    return out


def requantize(acc: np.ndarray, scale: np.ndarray, bias: np.ndarray, y_scale, y_zero_point: np.ndarray,
               axis: int = 1, lo: int | None = None, hi: int | None = None, kernel_shape=None, strides=(1, 1),
               pads=(0, 0, 0, 0), dilations=(1, 1), thresholds=None) -> np.ndarray:
    """The codes; with `thresholds`, Pow2Quant's codes of y (+ zero point) instead of y / y_scale
    (y_scale is then Pow2Quant's 2^-(L-1), so that is QuantizeLinear(Pow2Quant(y), y_scale))."""
    dtype = np.asarray(y_zero_point).dtype
    info = np.iinfo(dtype)
    lo = int(info.min) if lo is None else int(lo)
    hi = int(info.max) if hi is None else int(hi)
    zp = int(np.asarray(y_zero_point).reshape(-1)[0])
    axis = axis % acc.ndim
    shape = [1] * acc.ndim
    shape[axis] = -1
    s = np.asarray(scale, np.float32).reshape(shape)
    b = np.asarray(bias, np.float32).reshape(shape)
    y = acc.astype(np.float32) * s + b  # two float32 roundings, as Mul then Add
    if kernel_shape is not None:
        y = _maxpool(y, tuple(kernel_shape), tuple(strides), tuple(pads), tuple(dilations))
    if thresholds is not None:
        codes = pow2_int(y, list(thresholds)).astype(np.int64) + zp
        return np.clip(codes, lo, hi).astype(dtype)
    ys = np.asarray(y_scale, np.float32).reshape(-1)
    q = y / (ys[0] if ys.size == 1 else ys.reshape(shape))  # per tensor or per channel
    q = np.where(np.isnan(q), np.float32(lo - zp), q)  # MLAS' maxps gives the bound for a NaN
    q = np.clip(q, np.float32(lo - zp), np.float32(hi - zp))
    return (np.rint(q).astype(np.int64) + zp).astype(dtype)  # rint: half to even


def conv_integer(x: np.ndarray, w: np.ndarray, x_zero_point, w_zero_point, kernel_shape, strides=(1, 1),
                 pads=(0, 0, 0, 0), dilations=(1, 1), group: int = 1) -> np.ndarray:
    """Reference qcompile::DirectConvInteger: ONNX ConvInteger, sum (x - x_zp)(w - w_zp) over the
    window of each group's channels, x_zp in the padding (0 after the shift), int32."""
    (kh, kw), (sh, sw), (dh, dw), (pt, pl, pb, pr) = kernel_shape, strides, dilations, pads
    n, c, h, wd = x.shape
    m, cg = w.shape[:2]
    xs = np.zeros((n, c, h + pt + pb, wd + pl + pr), np.int64)
    xs[:, :, pt:pt + h, pl:pl + wd] = x.astype(np.int64) - int(np.asarray(x_zero_point).reshape(-1)[0])
    ws = w.astype(np.int64) - int(np.asarray(w_zero_point).reshape(-1)[0])
    oh = (h + pt + pb - dh * (kh - 1) - 1) // sh + 1
    ow = (wd + pl + pr - dw * (kw - 1) - 1) // sw + 1
    out = np.zeros((n, m, oh, ow), np.int64)
    mg = m // group
    for g in range(group):
        xg, wg = xs[:, g * cg:(g + 1) * cg], ws[g * mg:(g + 1) * mg]
        for i in range(kh):
            for j in range(kw):
                tap = xg[:, :, i * dh:i * dh + sh * (oh - 1) + 1:sh, j * dw:j * dw + sw * (ow - 1) + 1:sw]
                out[:, g * mg:(g + 1) * mg] += np.einsum("nchw,mc->nmhw", tap, wg[:, :, i, j])
    return out.astype(np.int32)


def depthwise_conv_integer(x: np.ndarray, w: np.ndarray, x_zero_point, w_zero_point, kernel_shape, strides=(1, 1),
                           pads=(0, 0, 0, 0), dilations=(1, 1)) -> np.ndarray:
    """Reference qcompile::DepthwiseConvInteger: ONNX ConvInteger with group = C, i.e. per channel
    sum (x - x_zp)(w - w_zp) over the window, x_zp in the padding (0 after the shift), int32."""
    (kh, kw), (sh, sw), (dh, dw), (pt, pl, pb, pr) = kernel_shape, strides, dilations, pads
    n, c, h, wd = x.shape
    xs = np.zeros((n, c, h + pt + pb, wd + pl + pr), np.int64)
    xs[:, :, pt:pt + h, pl:pl + wd] = x.astype(np.int64) - int(np.asarray(x_zero_point).reshape(-1)[0])
    ws = w.astype(np.int64).reshape(c, kh, kw) - int(np.asarray(w_zero_point).reshape(-1)[0])
    oh = (h + pt + pb - dh * (kh - 1) - 1) // sh + 1
    ow = (wd + pl + pr - dw * (kw - 1) - 1) // sw + 1
    out = np.zeros((n, c, oh, ow), np.int64)
    for i in range(kh):
        for j in range(kw):
            tap = xs[:, :, i * dh:i * dh + sh * (oh - 1) + 1:sh, j * dw:j * dw + sw * (ow - 1) + 1:sw]
            out += tap * ws[None, :, i, j, None, None]
    return out.astype(np.int32)
