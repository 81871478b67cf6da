"""The one table of training methods: name → quantizers, callbacks and defaults.

Everything that depends on the method reads :data:`REGISTRY`: the quantizer settings
(:func:`method_spec`, used by ``quantize_model``), the callbacks the loop runs
(:func:`make_callbacks`), the default optimizer and whether latent weights are clipped. A new
method is one :class:`Method` row here (plus its callback in :mod:`.methods`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from torch import nn

from . import methods as M
from .layers import QuantSpec
from .quantizers import FP_BITS

if TYPE_CHECKING:
    from .trainer import TrainConfig


@dataclass(frozen=True)
class SpecOptions:
    """Quantizer options every method may read (TrainConfig's quantizer fields)."""

    aqe_alpha: float = 0.5
    per_channel: bool | None = None
    act_delta: float = 0.5
    delta_factor: float = 0.7
    zero_threshold: str = "log"
    bcgd_alpha: float | None = None
    pow2_scale: str = "layer"


@dataclass(frozen=True)
class CallbackContext:
    """What a method's callbacks may need beyond the config: a full-precision twin of the
    student (the KD teacher), built on demand."""

    fp_model: Callable[[], nn.Module]


@dataclass(frozen=True)
class Method:
    """One training method: its quantizers, its callbacks, its defaults."""

    name: str
    summary: str
    quantizers: Callable[[int, int, SpecOptions], QuantSpec]
    callbacks: Callable[[TrainConfig, CallbackContext], list[M.Callback]] = lambda cfg, ctx: []
    optimizer: str = "adam"       # the paper's optimizer family: "adam" or "sgd"
    clip_weights: bool = False    # latent weights clipped to [−1, 1] after each step
    keep_first_last_fp: bool = True  # first conv and last linear stay full precision


# ---------------------------------------------------------------------------------------------
# quantizer settings
# ---------------------------------------------------------------------------------------------
def _h_act(abits: int, o: SpecOptions, estimator: str = "ste") -> dict[str, Any]:
    return {"scheme": "h", "bits": abits, "estimator": estimator, "act_delta": o.act_delta,
            "zero_threshold": o.zero_threshold}


def _common(wbits: int, o: SpecOptions) -> dict[str, Any]:
    return {"bits": wbits, "delta_factor": o.delta_factor, "zero_threshold": o.zero_threshold}


def _no_weights_at_fp(spec: QuantSpec, wbits: int) -> QuantSpec:
    return QuantSpec(None, spec.act) if wbits >= FP_BITS else spec


def _fp32(wbits: int, abits: int, o: SpecOptions) -> QuantSpec:
    return QuantSpec(None, None)


def _aqe_h(estimator: str) -> Callable[[int, int, SpecOptions], QuantSpec]:
    def spec(wbits: int, abits: int, o: SpecOptions) -> QuantSpec:
        w = {"scheme": "h", "estimator": estimator, "alpha": o.aqe_alpha,
             "pow2_scale": o.pow2_scale, **_common(wbits, o)}
        if o.per_channel is not None:
            w["per_channel"] = o.per_channel
        a = {**_h_act(abits, o, estimator), "alpha": o.aqe_alpha}
        return _no_weights_at_fp(QuantSpec(w, a), wbits)
    return spec


def _xnor(wbits: int, abits: int, o: SpecOptions) -> QuantSpec:
    if wbits != 1:
        raise ValueError(f"xnor has binary weights: expected --wbits 1, got {wbits}")
    w = {"scheme": "bwn", "per_channel": True if o.per_channel is None else o.per_channel,
         **_common(wbits, o)}
    return QuantSpec(w, _h_act(abits, o))


def _twn(wbits: int, abits: int, o: SpecOptions) -> QuantSpec:
    w = {"scheme": "twn", "per_channel": bool(o.per_channel), **{**_common(wbits, o), "bits": 2}}
    return _no_weights_at_fp(QuantSpec(w, _h_act(abits, o)), wbits)


def _sq(wbits: int, abits: int, o: SpecOptions) -> QuantSpec:
    w = {"scheme": "bwn" if wbits == 1 else "twn",
         "per_channel": True if o.per_channel is None else o.per_channel,
         **{**_common(wbits, o), "bits": 1 if wbits == 1 else 2}}
    return _no_weights_at_fp(QuantSpec(w, _h_act(abits, o)), wbits)


def _bcgd(wbits: int, abits: int, o: SpecOptions) -> QuantSpec:
    w = {"scheme": "bcgd", **_common(wbits, o)}
    a = {"scheme": "bcgd", "bits": abits, "bcgd_alpha": o.bcgd_alpha}
    return _no_weights_at_fp(QuantSpec(w, a), wbits)


def _dorefa(wbits: int, abits: int, o: SpecOptions) -> QuantSpec:
    w = {"scheme": "dorefa", **_common(wbits, o)}
    return _no_weights_at_fp(QuantSpec(w, {"scheme": "dorefa", "bits": abits}), wbits)


# ---------------------------------------------------------------------------------------------
# callbacks
# ---------------------------------------------------------------------------------------------
def _aqe_callbacks(cfg: TrainConfig, ctx: CallbackContext) -> list[M.Callback]:
    return [M.AQESharpness(cfg.aqe_k_start, cfg.aqe_k_end)]


def _aqe_blend_callbacks(cfg: TrainConfig, ctx: CallbackContext) -> list[M.Callback]:
    return [M.AQESchedule(cfg.aqe_alpha, cfg.aqe_anneal_to)]


def _sq_callbacks(cfg: TrainConfig, ctx: CallbackContext) -> list[M.Callback]:
    return [M.StochasticQuantization(cfg.sq_ratios, cfg.sq_eps, cfg.sq_stochastic)]


def _bcgd_callbacks(cfg: TrainConfig, ctx: CallbackContext) -> list[M.Callback]:
    return [M.BlendedCoarseGradient(cfg.bcgd_rho, cfg.bcgd_blend), M.ClampAlpha()]


def _prog1_callbacks(cfg: TrainConfig, ctx: CallbackContext) -> list[M.Callback]:
    return [M.ProgressiveScheme1(cfg.prog1_weight_fraction)]


def _prog2_callbacks(cfg: TrainConfig, ctx: CallbackContext) -> list[M.Callback]:
    return [M.ProgressiveScheme2(cfg.wbits, cfg.abits, cfg.prog2_stages)]


def _sp_callbacks(cfg: TrainConfig, ctx: CallbackContext) -> list[M.Callback]:
    return [M.StochasticPrecision(cfg.sp_p_start, cfg.sp_p_end, cfg.sp_final_fraction)]


def _kd_callbacks(cfg: TrainConfig, ctx: CallbackContext) -> list[M.Callback]:
    return [M.JointKD(ctx.fp_model(), cfg.kd_T, cfg.kd_lambda_t, cfg.kd_lambda_s,
                      cfg.kd_lambda_kd, cfg.kd_lambda_kd_teacher)]


# ---------------------------------------------------------------------------------------------
# the table
# ---------------------------------------------------------------------------------------------
_DOREFA = "DoReFa weights and activations"
REGISTRY: dict[str, Method] = {m.name: m for m in (
    Method("fp32", "nothing quantized (HardTanh activations)", _fp32),
    Method("ste", "AQE's h (1: sign, 2: ternary, ≥3: powers of two), straight-through "
           "estimator", _aqe_h("ste"), clip_weights=True),
    Method("xnor", "BWN weights α_c·sign(W_c) (wbits 1); activations h with STE", _xnor,
           clip_weights=True),
    Method("twn", "TWN ternary weights; activations h with STE", _twn, clip_weights=True),
    Method("dorefa", f"{_DOREFA}, direct training", _dorefa),
    Method("aqe", "AQE's h with the AQE estimator: smooth ĥ_k (sum of tanh steps), its true "
           "derivative, sharpness k raised over the run", _aqe_h("aqe"), _aqe_callbacks,
           clip_weights=True),
    Method("aqe-blend", "ablation: AQE read as the blend α·h(x) + (1−α)·x with backward "
           "2α·g·1{|x| ≤ 1}", _aqe_h("aqe-blend"), _aqe_blend_callbacks, clip_weights=True),
    Method("sq", "stochastic quantization of BWN (wbits 1) or TWN rows, channel-wise α; all "
           "layers quantized, as in the paper", _sq, _sq_callbacks, clip_weights=True,
           keep_first_last_fp=False),
    Method("bcgd", "BCGD weights and adaptive quantized-ReLU activations, blended update",
           _bcgd, _bcgd_callbacks, optimizer="sgd"),
    Method("progressive1", f"{_DOREFA}; activations quantized from part-way", _dorefa,
           _prog1_callbacks),
    Method("progressive2", f"{_DOREFA}; bit width stepped down in stages", _dorefa,
           _prog2_callbacks),
    Method("stochastic-precision", f"{_DOREFA}; random layers full precision per step",
           _dorefa, _sp_callbacks),
    Method("kd", f"{_DOREFA}; a full-precision teacher trained jointly", _dorefa,
           _kd_callbacks, optimizer="sgd"),
)}

METHODS: tuple[str, ...] = tuple(REGISTRY)


def get_method(name: str) -> Method:
    """The registry row of ``name``; ValueError naming the choices otherwise."""
    if name not in REGISTRY:
        raise ValueError(f"expected method in {METHODS}, got {name!r}")
    return REGISTRY[name]


def method_spec(method: str, wbits: int, abits: int, **options: Any) -> QuantSpec:
    """The weight and activation quantizer settings for ``method`` at ``wbits``/``abits``
    (``options``: the fields of :class:`SpecOptions`)."""
    return get_method(method).quantizers(wbits, abits, SpecOptions(**options))


def make_callbacks(cfg: TrainConfig, ctx: CallbackContext) -> list[M.Callback]:
    """The callbacks that make up ``cfg.method``, then weight clipping where it applies."""
    m = get_method(cfg.method)
    cbs = list(m.callbacks(cfg, ctx))
    clip = cfg.clip_weights if cfg.clip_weights is not None else m.clip_weights
    if clip:
        cbs.append(M.ClipWeights())
    return cbs
