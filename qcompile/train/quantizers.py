"""Quantizers with exact forward values and the backward rules of ALGORITHMS.md.

Every quantizer computes its forward *value* under ``no_grad`` and attaches a gradient with one
small autograd Function (:class:`AttachGrad`), so the value a layer sees in training, in eval and
in the exported ONNX graph is the same float32 tensor, bit for bit. Backward rules:

=========================  ==========================================================
binary STE (BNN)           g · 1{|x| ≤ 1}
XNOR / BWN (α_c·sign)      g · 1{|W| ≤ 1}                       (α treated as constant)
TWN ternary                g                                    (identity STE)
DoReFa k-bit weights       g · (1 − tanh²W) / max|tanh W|      (STE through round; max const)
DoReFa k-bit activations   g · 1{0 ≤ x ≤ 1}
AQE (smooth)               the true derivative of ĥ_k (sum of tanh steps, below)
AQE blend (ablation)       2α · g · 1{|x| ≤ 1}
BCGD quantized ReLU        x: g · 1{0 < x ≤ Lα};  α: 0.01·Σ g·∂σ/∂α, clipped to [−1, 1]
BCGD weights (coarse)      g                                    (gradient at Q(w) applied to w)
=========================  ==========================================================
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import pairwise

import torch
from torch import Tensor, nn

FP_BITS = 32  # a bit width at or above this means "not quantized"

#: BCGD initial α by activation bit width (published values).
BCGD_ALPHA_INIT = {1: 1.2221, 2: 0.6511, 4: 0.1946}


def bcgd_alpha_init(bits: int) -> float:
    """Initial BCGD resolution α for ``bits``-bit activations.

    1, 2 and 4 bits use the published values. Others are an unpublished default: log α is
    interpolated linearly in the bit width through the published points (3 bits →
    sqrt(0.6511·0.1946) ≈ 0.356) and extrapolated from the 2- and 4-bit points beyond 4 bits.
    """
    if bits in BCGD_ALPHA_INIT:
        return BCGD_ALPHA_INIT[bits]
    if bits < 1:
        raise ValueError(f"expected an activation bit width >= 1, got {bits}")
    lo, hi = (2, 4)
    la, lb = math.log(BCGD_ALPHA_INIT[lo]), math.log(BCGD_ALPHA_INIT[hi])
    return float(math.exp(la + (lb - la) * (bits - lo) / (hi - lo)))


# ---------------------------------------------------------------------------------------------
# Gradient plumbing
# ---------------------------------------------------------------------------------------------
class AttachGrad(torch.autograd.Function):
    """Forward: return ``value`` (already computed). Backward: ∂L/∂x = g · ``grad_scale``."""

    @staticmethod
    def forward(ctx, x: Tensor, value: Tensor, grad_scale: Tensor) -> Tensor:
        ctx.save_for_backward(grad_scale)
        return value.clone()

    @staticmethod
    def backward(ctx, g: Tensor):
        (grad_scale,) = ctx.saved_tensors
        return g * grad_scale, None, None


def attach(x: Tensor, value: Tensor, grad_scale: Tensor | float) -> Tensor:
    """``value`` in the forward pass, ``g · grad_scale`` to ``x`` in the backward pass."""
    if not torch.is_tensor(grad_scale):
        grad_scale = torch.full((), float(grad_scale), dtype=x.dtype, device=x.device)
    return AttachGrad.apply(x, value.detach(), grad_scale.detach().to(x.dtype))


def in_unit(x: Tensor) -> Tensor:
    """1{|x| ≤ 1} as a float mask (the clip boundaries ±1 are inside)."""
    return (x.abs() <= 1).to(x.dtype)


# ---------------------------------------------------------------------------------------------
# The quantizer functions h (values only)
# ---------------------------------------------------------------------------------------------
def sign_pm1(x: Tensor) -> Tensor:
    """+1 where x ≥ 0 (−0.0 included), −1 elsewhere (NaN → −1), like QONNX BipolarQuant."""
    one = torch.ones((), dtype=x.dtype, device=x.device)
    return torch.where(x >= 0, one, -one)


def ternary_h(x: Tensor, delta: Tensor | float) -> Tensor:
    """AQE 2-bit h: 0 where |x| ≤ Δ, sign(x) elsewhere."""
    zero = torch.zeros((), dtype=x.dtype, device=x.device)
    return torch.where(x.abs() <= delta, zero, sign_pm1(x))


def twn_delta(w: Tensor, per_channel: bool, factor: float = 0.7) -> Tensor:
    """TWN threshold Δ = factor · mean|W| (per output channel → shape [M,1,...], else scalar)."""
    if per_channel:
        return factor * w.abs().reshape(w.shape[0], -1).mean(dim=1).reshape(_chan_shape(w))
    return factor * w.abs().mean()


def _chan_shape(w: Tensor) -> tuple[int, ...]:
    return (w.shape[0],) + (1,) * (w.dim() - 1)


def pow2_levels(bits: int) -> tuple[int, list[float]]:
    """q and the positive levels 2^-p, p = 0..q-1, of the AQE n-bit (n ≥ 3) quantizer."""
    if bits < 3:
        raise ValueError(f"expected >= 3 bits for the power-of-two quantizer, got {bits}")
    q = 2 ** (bits - 1) - 1
    return q, [2.0**-p for p in range(q)]


def pow2_h(x: Tensor, bits: int, zero_threshold: str = "log") -> Tensor:
    """AQE n ≥ 3-bit h: 0 or sign(x)·2^-p, p ∈ {0..q-1}, q = 2^(n-1) − 1.

    Thresholds between neighbouring levels 2^-p and 2^-(p+1) are their log-domain midpoint
    2^-(p+½); |x| at a threshold goes to the larger level. Between the smallest level 2^-(q-1)
    and 0 the paper gives nothing and 0 has no logarithm: ``zero_threshold="log"`` (default)
    uses 2^-(q-½) (as if a level 2^-q followed), ``"linear"`` uses half the smallest level.

    Computed as a staircase sum of exact powers of two, so the result has no rounding at all and
    the same standard ONNX ops (Abs, GreaterOrEqual, Cast, Mul, Add, Where) reproduce it exactly.
    """
    q, _ = pow2_levels(bits)
    a = x.abs()
    smallest = 2.0 ** -(q - 1)
    t_zero = pow2_thresholds(bits, zero_threshold)[0]
    mag = (a >= _f32(t_zero, x)).to(x.dtype) * smallest
    for p in range(q - 1):  # step from 2^-(p+1) up to 2^-p at 2^-(p+1/2)
        mag = mag + (a >= _f32(2.0 ** -(p + 0.5), x)).to(x.dtype) * (2.0**-p - 2.0 ** -(p + 1))
    return mag * sign_pm1(x)


def pow2_thresholds(bits: int, zero_threshold: str = "log") -> list[float]:
    """pow2_h's |x| thresholds, ascending: 0 → 2^-(q-1), then 2^-(p+1) → 2^-p for p = q-2 … 0.

    The same list is qcompile::Pow2Quant's ``thresholds`` attribute (custom_ops/SPEC.md).
    """
    q, _ = pow2_levels(bits)
    if zero_threshold == "log":
        t_zero = 2.0 ** -(q - 0.5)
    elif zero_threshold == "linear":
        t_zero = 2.0 ** -(q - 1) / 2
    else:
        raise ValueError(f"expected zero_threshold 'log' or 'linear', got {zero_threshold!r}")
    return [t_zero] + [2.0 ** -(p + 0.5) for p in range(q - 2, -1, -1)]


def _f32(v: float, like: Tensor) -> Tensor:
    return torch.tensor(v, dtype=like.dtype, device=like.device)


def aqe_h(x: Tensor, bits: int, delta: Tensor | float, zero_threshold: str = "log") -> Tensor:
    """The AQE quantizer h for ``bits`` (1: sign, 2: ternary with threshold Δ, ≥3: powers of 2)."""
    if bits == 1:
        return sign_pm1(x)
    if bits == 2:
        return ternary_h(x, delta)
    return pow2_h(x, bits, zero_threshold)


def h_steps(bits: int, delta: Tensor | float, zero_threshold: str = "log"
            ) -> tuple[list[Tensor | float], list[float]]:
    """h's positive |x| thresholds t_j and the jump d_j of |h| at each (1 bit: one step of 2
    at 0). h(x) = Σ_j d_j·(H(x − t_j) + H(x + t_j) − 1) for x ≠ ±t_j (H the unit step)."""
    if bits == 1:
        return [0.0], [1.0]  # sign = H(x) + H(x) − 1: two half-steps at 0
    if bits == 2:
        return [delta], [1.0]
    _, levels = pow2_levels(bits)
    mags = [0.0, *sorted(levels)]
    return list(pow2_thresholds(bits, zero_threshold)), [b - a for a, b in pairwise(mags)]


def aqe_smooth(x: Tensor, bits: int, delta: Tensor | float, sharpness: float,
               zero_threshold: str = "log") -> Tensor:
    """AQE's smooth surrogate ĥ_k of h (differentiable; autograd gives its true derivative):

        ĥ_k(x) = Σ_j d_j/2 · (tanh(k(x − t_j)) + tanh(k(x + t_j)))

    with h's thresholds t_j and jumps d_j (:func:`h_steps`); ĥ_k → h pointwise as k → ∞ (at
    a threshold itself to the midpoint of the two levels), so raising k over training ends it
    on the quantizer. 1 bit: tanh(kx); 2 bits: ½(tanh(k(x − Δ)) + tanh(k(x + Δ))).
    """
    ts, ds = h_steps(bits, delta, zero_threshold)
    out = torch.zeros_like(x)
    for t, d in zip(ts, ds, strict=True):
        out = out + (d / 2) * (torch.tanh(sharpness * (x - t)) + torch.tanh(sharpness * (x + t)))
    return out


def pow2_unit(w: Tensor) -> Tensor:
    """MINW-Net's per-layer power-of-two weight scale S = 2^round(log2(2·mean|W|)).

    The paper names no scale; with h's fixed thresholds (3 bits: 0.177, 0.354, 0.707) and a
    standard initialisation (|w| ≲ 0.08) every weight would quantize to 0. 2·mean|W| is the
    half-range of a uniform initialisation (and ≈ 1.6σ of a Gaussian), so the levels S·{¼, ½, 1}
    cover the weights; a power of two keeps S·h(W/S) on the grid S·{0, ±2^−p} (SHIFT lowering)
    and the division by S exact.
    """
    m = w.detach().abs().mean().clamp_min(2.0 ** -60)
    return torch.exp2(torch.round(torch.log2(2 * m)))


def qonnx_quant(x: Tensor, scale: Tensor, zeropt: float, bits: int, signed: bool,
                narrow: bool, rounding_mode: str = "ROUND") -> Tensor:
    """QONNX Quant in float32, in SPEC.md's order: divide, add, round, clamp, subtract, multiply.

    ROUND is round-half-to-even (torch.round), as in the op library's kernel.
    """
    if signed:
        qmin, qmax = -(2 ** (bits - 1)) + int(narrow), 2 ** (bits - 1) - 1
    else:
        qmin, qmax = 0, 2**bits - 1 - int(narrow)
    v = x / scale + zeropt
    rnd = {"ROUND": torch.round, "CEIL": torch.ceil, "FLOOR": torch.floor,
           "ROUND_TO_ZERO": torch.trunc}.get(rounding_mode)
    if rnd is None:
        raise ValueError(f"expected rounding_mode ROUND, CEIL, FLOOR or ROUND_TO_ZERO, "
                         f"got {rounding_mode!r}")
    q = torch.clamp(rnd(v), qmin, qmax)
    return (q - zeropt) * scale


# ---------------------------------------------------------------------------------------------
# Weight quantizer
# ---------------------------------------------------------------------------------------------
@dataclass
class ExportForm:
    """How a quantized weight appears in the QONNX graph.

    ``op`` is "BipolarQuant" (``values`` hold ±1, output = sign(values)·scale), "Quant"
    (``values`` hold the exact quantized weights, ``Quant(values, scale, 0, bits, signed=1,
    narrow=1)`` reproduces them exactly), "Pow2Quant" (``values`` hold AQE's power-of-two levels,
    ``qcompile::Pow2Quant(values; pow2_thresholds(bits))`` reproduces them exactly), or None
    (full precision: values are the weights).
    """

    op: str | None
    values: Tensor
    scale: Tensor | None = None
    bits: int = 0


WEIGHT_SCHEMES = ("h", "bwn", "twn", "dorefa", "bcgd")
ESTIMATORS = ("ste", "aqe", "aqe-blend")


class WeightQuantizer(nn.Module):
    """Quantizes a weight tensor (output channel first).

    scheme:
      * ``h``      – AQE/STE quantizer h (1: sign, 2: ternary Δ = ``delta_factor``·mean|W|,
                     ≥3: S·h(W/S) with the per-layer power-of-two scale S of :func:`pow2_unit`
                     when ``pow2_scale`` is "layer" (default), no scale when "none");
                     ``estimator`` "ste", "aqe" (smooth ĥ_k at ``sharpness`` k, in units of
                     mean|W| for 1–2 bits and of S for ≥3) or "aqe-blend" (the ablation).
      * ``bwn``    – XNOR-Net/BWN α_c·sign(W_c), α_c = mean|W_c| (``per_channel``, default on).
      * ``twn``    – TWN α·T, Δ = 0.7·mean|W|, α = mean of |W| above Δ (``per_channel`` option).
      * ``dorefa`` – DoReFa k-bit (1 bit: mean|W|·sign(W), per layer, as in DoReFa-Net).
      * ``bcgd``   – BCGD: 1 bit mean|w|·sign(w) per layer, 2 bits TWN, ≥3 bits uniform
                     symmetric (scale = max|w| / (2^(b−1) − 1)); coarse (identity) gradient.

    ``sq_mask`` (bool per output channel), when set in training, selects the rows that are
    quantized; the others pass through in full precision (stochastic quantization).
    """

    def __init__(self, scheme: str = "h", bits: int = 1, estimator: str = "ste",
                 alpha: float = 0.5, per_channel: bool | None = None,
                 delta_factor: float = 0.7, zero_threshold: str = "log",
                 pow2_scale: str = "layer", sharpness: float = 1.0) -> None:
        super().__init__()
        if scheme not in WEIGHT_SCHEMES:
            raise ValueError(f"expected weight scheme in {WEIGHT_SCHEMES}, got {scheme!r}")
        if estimator not in ESTIMATORS:
            raise ValueError(f"expected estimator in {ESTIMATORS}, got {estimator!r}")
        if pow2_scale not in ("layer", "none"):
            raise ValueError(f"expected pow2_scale 'layer' or 'none', got {pow2_scale!r}")
        if scheme == "bwn" and bits != 1:
            raise ValueError(f"XNOR/BWN weights are binary: expected wbits=1, got {bits}")
        self.scheme = scheme
        self.bits = int(bits)
        self.estimator = estimator
        self.alpha = float(alpha)
        self.per_channel = (scheme == "bwn") if per_channel is None else bool(per_channel)
        self.delta_factor = float(delta_factor)
        self.zero_threshold = zero_threshold
        self.pow2_scale = pow2_scale
        self.sharpness = float(sharpness)
        self.enabled = True
        self.sq_mask: Tensor | None = None

    @property
    def active(self) -> bool:
        return self.enabled and self.bits < FP_BITS

    def extra_repr(self) -> str:
        return (f"scheme={self.scheme}, bits={self.bits}, estimator={self.estimator}, "
                f"per_channel={self.per_channel}")

    # -- values --------------------------------------------------------------------------------
    @torch.no_grad()
    def export_form(self, w: Tensor) -> ExportForm:
        """The exact eval-mode quantized weight and its QONNX form."""
        w = w.detach()
        if not self.active:
            return ExportForm(None, w.clone())
        s, b = self.scheme, self.bits
        if s == "h":
            if b == 1:
                return ExportForm("BipolarQuant", sign_pm1(w), torch.ones((), dtype=w.dtype))
            if b == 2:
                t = ternary_h(w, twn_delta(w, self.per_channel, self.delta_factor))
                return ExportForm("Quant", t, torch.ones((), dtype=w.dtype), 2)
            if self.pow2_scale == "none":
                # qcompile::Pow2Quant over the exact levels (h is idempotent on them): the graph
                # declares the b-bit power-of-two grid, whichever levels the weights use
                return ExportForm("Pow2Quant", pow2_h(w, b, self.zero_threshold), None, b)
            # S·{0, ±2^−p} = (S·2^−(q−1))·{0, ±1, ±2, …, ±2^(q−1)}: a (q+1)-bit narrow Quant
            # with a power-of-two scale reproduces the values exactly
            unit = pow2_unit(w)
            q, _ = pow2_levels(b)
            values = unit * pow2_h(w / unit, b, self.zero_threshold)
            return ExportForm("Quant", values, unit * 2.0 ** -(q - 1), q + 1)
        if s == "bwn" or (s in ("dorefa", "bcgd") and b == 1):
            alpha = self._mean_abs(w, self.per_channel if s == "bwn" else False)
            return ExportForm("BipolarQuant", sign_pm1(w), alpha)
        if s == "twn" or (s == "bcgd" and b == 2):
            per_channel = self.per_channel if s == "twn" else False
            delta = twn_delta(w, per_channel, self.delta_factor)
            above = (w.abs() > delta).to(w.dtype)
            if per_channel:
                num = (w.abs() * above).reshape(w.shape[0], -1).sum(1)
                cnt = above.reshape(w.shape[0], -1).sum(1)
            else:
                num, cnt = (w.abs() * above).sum(), above.sum()
            # A row with nothing above Δ is all zero after quantization; α = 1 keeps Quant's
            # scale nonzero without changing any value.
            alpha = torch.where(cnt > 0, num / cnt.clamp_min(1), torch.ones_like(num))
            if per_channel:
                alpha = alpha.reshape(_chan_shape(w))
            return ExportForm("Quant", ternary_h(w, delta) * alpha, alpha, 2)
        if s == "dorefa":
            n = 2**b - 1
            t = torch.tanh(w)
            z = t / (2 * t.abs().max().clamp_min(1e-12)) + 0.5
            m = 2 * torch.round(n * z) - n  # odd integers in [-n, n]
            scale = _f32(1.0 / n, w)
            return ExportForm("Quant", m * scale, scale, b + 1)
        # bcgd, b >= 3: uniform symmetric, narrow range
        qmax = 2 ** (b - 1) - 1
        scale = (w.abs().max() / qmax).clamp_min(1e-12)
        return ExportForm("Quant", qonnx_quant(w, scale, 0.0, b, True, True), scale, b)

    @staticmethod
    def _mean_abs(w: Tensor, per_channel: bool) -> Tensor:
        if per_channel:
            return w.abs().reshape(w.shape[0], -1).mean(1).reshape(_chan_shape(w))
        return w.abs().mean()

    @torch.no_grad()
    def quantized_value(self, w: Tensor) -> Tensor:
        """Q(w) as the layer uses it in eval (ExportForm applied)."""
        f = self.export_form(w)
        if f.op == "BipolarQuant":
            return sign_pm1(f.values) * f.scale
        return f.values

    @torch.no_grad()
    def _grad_scale(self, w: Tensor) -> Tensor | float:
        s = self.scheme
        if s in ("h", "bwn"):
            return in_unit(w)
        if s == "dorefa" and self.bits > 1:
            t = torch.tanh(w)
            return (1 - t * t) / t.abs().max().clamp_min(1e-12)
        if s == "dorefa":
            return in_unit(w)
        return 1.0  # twn, bcgd: identity (coarse) gradient

    def _smooth(self, w: Tensor) -> Tensor:
        """ĥ_k(W) in the units of the layer (k in units of mean|W|, or of S at ≥ 3 bits)."""
        b = self.bits
        if b >= 3:
            unit = pow2_unit(w) if self.pow2_scale == "layer" else torch.ones((), dtype=w.dtype)
            return unit * aqe_smooth(w / unit, b, 0.0, self.sharpness, self.zero_threshold)
        unit = w.detach().abs().mean().clamp_min(1e-12)
        delta = twn_delta(w.detach(), self.per_channel, self.delta_factor) / unit
        return aqe_smooth(w / unit, b, delta, self.sharpness, self.zero_threshold)

    def forward(self, w: Tensor) -> Tensor:
        if not self.active:
            return w
        qv = self.quantized_value(w)
        if self.training and self.scheme == "h" and self.estimator == "aqe":
            out = self._smooth(w)
        elif self.training and self.scheme == "h" and self.estimator == "aqe-blend":
            # AQE blend (ablation): forward α·h + (1−α)·x, backward 2α·g·1{|x| ≤ 1}
            with torch.no_grad():
                val = self.alpha * qv + (1 - self.alpha) * w
            out = attach(w, val, 2 * self.alpha * in_unit(w))
        else:
            out = attach(w, qv, self._grad_scale(w))
        if self.training and self.sq_mask is not None:
            rows = self.sq_mask.reshape(_chan_shape(w)).to(w.device)
            out = torch.where(rows, out, w)
        return out


# ---------------------------------------------------------------------------------------------
# Activation quantizer
# ---------------------------------------------------------------------------------------------
ACT_SCHEMES = ("h", "dorefa", "bcgd")


class BCGDActFn(torch.autograd.Function):
    """BCGD adaptive quantized ReLU σ(x; α) with L = 2^b − 1 levels.

    Forward (equal to QONNX Quant(x, α, 0, b, signed=0, rounding_mode=CEIL)):
    0 for x ≤ 0; α⌈x/α⌉ for 0 < x ≤ (L−1)α; Lα above.
    Backward: ∂/∂x ≈ 1{0 < x ≤ Lα} (clipped-ReLU proxy); ∂σ/∂α = ⌈x/α⌉ in (0, Lα], L above, 0
    below, summed with g, scaled by ``alpha_grad_scale`` and clipped to [−1, 1].
    """

    @staticmethod
    def forward(ctx, x: Tensor, alpha: Tensor, levels: int, alpha_grad_scale: float) -> Tensor:
        q = torch.clamp(torch.ceil(x / alpha), 0, levels)
        y = q * alpha
        ctx.save_for_backward(x, alpha, q)
        ctx.levels, ctx.gs = levels, alpha_grad_scale
        return y

    @staticmethod
    def backward(ctx, g: Tensor):
        x, alpha, q = ctx.saved_tensors
        gx = g * ((x > 0) & (x <= ctx.levels * alpha)).to(g.dtype)
        # a.e. derivative of α·clamp(ceil(x/α), 0, L) w.r.t. α is exactly q
        ga = (g * q).sum() * ctx.gs
        ga = ga.clamp(-1.0, 1.0).reshape(alpha.shape)
        return gx, ga, None, None


class ActQuantizer(nn.Module):
    """Activation nonlinearity plus quantizer (the "→ HardTanh → quantize" end of a block).

    scheme:
      * ``h``      – HardTanh (clip to [−1, 1]) then AQE h: 1 bit sign, 2 bits ternary with a
                     fixed threshold ``act_delta`` (default ½; activations have no weight
                     statistics to take TWN's Δ from), ≥3 bits powers of two. ``estimator``
                     "ste" (g·1{|x| ≤ 1}), "aqe" (ĥ_k of the HardTanh output at ``sharpness``
                     k in training) or "aqe-blend" (the ablation); h alone in eval.
      * ``dorefa`` – clip to [0, 1] then round((2^k−1)·x)/(2^k−1) (as Quant with scale 1/(2^k−1)).
      * ``bcgd``   – adaptive quantized ReLU with a learned α (one per layer).
    Disabled or ≥32 bits: the nonlinearity alone (HardTanh, clip [0,1], ReLU respectively).
    """

    def __init__(self, scheme: str = "h", bits: int = 1, estimator: str = "ste",
                 alpha: float = 0.5, act_delta: float = 0.5, zero_threshold: str = "log",
                 bcgd_alpha: float | None = None, bcgd_alpha_grad_scale: float = 0.01,
                 bcgd_alpha_range: tuple[float, float] = (1e-3, 5.0),
                 sharpness: float = 1.0) -> None:
        super().__init__()
        if scheme not in ACT_SCHEMES:
            raise ValueError(f"expected activation scheme in {ACT_SCHEMES}, got {scheme!r}")
        if estimator not in ESTIMATORS:
            raise ValueError(f"expected estimator in {ESTIMATORS}, got {estimator!r}")
        self.sharpness = float(sharpness)
        self.scheme = scheme
        self.bits = int(bits)
        self.estimator = estimator
        self.alpha = float(alpha)
        self.act_delta = float(act_delta)
        self.zero_threshold = zero_threshold
        self.enabled = True
        self.bcgd_alpha_grad_scale = bcgd_alpha_grad_scale
        self.bcgd_alpha_range = bcgd_alpha_range
        if scheme == "bcgd":
            a0 = bcgd_alpha_init(min(self.bits, 16)) if bcgd_alpha is None else bcgd_alpha
            self.bcgd_alpha = nn.Parameter(torch.tensor(float(a0)))

    @property
    def active(self) -> bool:
        return self.enabled and self.bits < FP_BITS

    def extra_repr(self) -> str:
        return f"scheme={self.scheme}, bits={self.bits}, estimator={self.estimator}"

    @property
    def levels(self) -> int:
        return 2**self.bits - 1

    def clamp_alpha_(self) -> None:
        """Keep the BCGD α inside its range (called after each optimizer step)."""
        if self.scheme == "bcgd":
            with torch.no_grad():
                self.bcgd_alpha.clamp_(*self.bcgd_alpha_range)

    def dorefa_scale(self, like: Tensor) -> Tensor:
        return _f32(1.0 / self.levels, like)

    @torch.no_grad()
    def eval_value(self, x: Tensor) -> Tensor:
        """The eval-mode output (also what the exported graph computes)."""
        if self.scheme == "h":
            y = torch.clamp(x, -1.0, 1.0)
            return aqe_h(y, self.bits, self.act_delta, self.zero_threshold) if self.active else y
        if self.scheme == "dorefa":
            y = torch.clamp(x, 0.0, 1.0)
            if not self.active:
                return y
            return qonnx_quant(y, self.dorefa_scale(y), 0.0, self.bits, False, False)
        if not self.active:
            return torch.relu(x)
        a = self.bcgd_alpha.detach()
        return torch.clamp(torch.ceil(x / a), 0, self.levels) * a

    def forward(self, x: Tensor) -> Tensor:
        if self.scheme == "bcgd":
            if not self.active:
                return torch.relu(x)
            return BCGDActFn.apply(x, self.bcgd_alpha, self.levels, self.bcgd_alpha_grad_scale)
        val = self.eval_value(x)
        if self.scheme == "dorefa":
            return attach(x, val, ((x >= 0) & (x <= 1)).to(x.dtype))
        mask = in_unit(x)  # HardTanh's pass-band, boundaries ±1 included
        if self.active and self.training and self.estimator == "aqe":
            y = torch.clamp(x, -1.0, 1.0)  # HardTanh, differentiated by autograd
            return aqe_smooth(y, self.bits, self.act_delta, self.sharpness, self.zero_threshold)
        if self.active and self.training and self.estimator == "aqe-blend":
            with torch.no_grad():
                y = torch.clamp(x, -1.0, 1.0)
                val = self.alpha * val + (1 - self.alpha) * y
            return attach(x, val, 2 * self.alpha * mask)
        return attach(x, val, mask)
