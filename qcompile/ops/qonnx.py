"""Reference QONNX quantizers (domain qonnx.custom_op.general), as in custom_ops/SPEC.md."""

from __future__ import annotations

import numpy as np

ROUNDING = {
    "ROUND": np.round,  # half to even, as C's nearbyintf in the default rounding mode
    "CEIL": np.ceil,
    "FLOOR": np.floor,
    "ROUND_TO_ZERO": np.trunc,
}


def broadcast_to_x(param: np.ndarray, x_shape: tuple[int, ...], name: str = "scale") -> np.ndarray:
    """`param` broadcast to X's shape as SPEC says (numpy broadcasting, the output keeps X's shape):
    extra leading dims must be 1 and are dropped, as the C++ op does."""
    a = np.asarray(param, dtype=np.float32)
    extra = a.ndim - len(x_shape)
    if extra > 0:
        if any(d != 1 for d in a.shape[:extra]):
            raise ValueError(f"input {name}: shape {list(a.shape)} does not broadcast to X's shape {list(x_shape)}")
        a = a.reshape(a.shape[extra:])
    try:
        return np.broadcast_to(a, x_shape)
    except ValueError:
        raise ValueError(f"input {name}: shape {list(a.shape)} does not broadcast to X's shape {list(x_shape)}") from None


def bipolar_quant(x: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """+scale where x >= 0 (-0.0 included), -scale elsewhere (NaN included); X's shape."""
    x = np.asarray(x, dtype=np.float32)
    sign = np.where(x >= 0, np.float32(1), np.float32(-1))
    return (sign * broadcast_to_x(scale, x.shape)).astype(np.float32)


def int_range(bitwidth: float, signed: int, narrow: int) -> tuple[float, float]:
    """(qmin, qmax) of a `bitwidth`-bit integer grid."""
    b = float(bitwidth)
    if signed:
        return -(2.0 ** (b - 1)) + narrow, 2.0 ** (b - 1) - 1
    return 0.0, 2.0**b - 1 - narrow


def quant_int(x, scale, zeropt, bitwidth, *, signed: int = 1, narrow: int = 0, rounding_mode: str = "ROUND"):
    """The integer code q = clamp(round(x / scale + zeropt), qmin, qmax), as float32."""
    if rounding_mode not in ROUNDING:
        raise ValueError(f"expected rounding_mode in {sorted(ROUNDING)}, got {rounding_mode!r}")
    f32 = np.float32
    x = np.asarray(x, dtype=f32)
    scale, zeropt = broadcast_to_x(scale, x.shape), broadcast_to_x(zeropt, x.shape, "zeropt")
    q = ROUNDING[rounding_mode](x / scale + zeropt).astype(f32)
    qmin, qmax = int_range(float(np.asarray(bitwidth).reshape(-1)[0]), signed, narrow)
    return np.clip(q, f32(qmin), f32(qmax)).astype(f32)


def quant(x, scale, zeropt, bitwidth, *, signed: int = 1, narrow: int = 0, rounding_mode: str = "ROUND"):
    """QONNX Quant / IntQuant: Y = (q - zeropt) * scale in float32."""
    q = quant_int(x, scale, zeropt, bitwidth, signed=signed, narrow=narrow, rounding_mode=rounding_mode)
    shape = q.shape
    return ((q - broadcast_to_x(zeropt, shape, "zeropt")) * broadcast_to_x(scale, shape)).astype(np.float32)
