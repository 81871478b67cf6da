"""The experiments catalogue: what is trained (Experiment), which claims compare them (Group,
Claim), the notes the report prints, and selecting experiments by name or group."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import click


@dataclass(frozen=True)
class Experiment:
    """One trained configuration; ``groups`` are the comparisons it takes part in."""

    name: str
    groups: tuple[str, ...]
    method: str
    wbits: int
    abits: int
    series: str                       # the line it belongs to in the plot
    overrides: tuple[tuple[str, Any], ...] = ()
    note: str = ""
    init_from: str | None = None      # start from this experiment's trained weights (same seed)

    @property
    def bits(self) -> str:
        return f"W{self.wbits}/A{self.abits}"

    def train_overrides(self) -> dict[str, Any]:
        return dict(self.overrides)


#: Fair arms: the two sides of a claim differ only in the method. SQ quantizes every layer (as
#: the paper), so its BWN/TWN baselines do too, and TWN takes SQ's per-channel scales; the
#: training-scheme arms all use the KD authors' optimizer (SGD) and the same schedule.
ALL_LAYERS = (("keep_first_last_fp", False),)
SGD = (("optimizer", "sgd"),)

EXPERIMENTS: tuple[Experiment, ...] = (
    # baselines
    Experiment("fp32", ("baselines",), "fp32", 32, 32, "FP32",
               note="full precision (HardTanh activations); not compiled"),
    Experiment("ste-w1a1", ("baselines",), "ste", 1, 1, "STE",
               note="AQE's h (sign) for weights and activations, straight-through estimator"),
    Experiment("aqe-w1a1", ("baselines", "minw"), "aqe", 1, 1, "AQE (MINW-Net)",
               note="AQE: smooth tanh-step surrogate, sharpness 1 → 100"),
    # SQ (weight-only: activations full precision, A32)
    Experiment("bwn-w1a32", ("sq",), "xnor", 1, 32, "BWN / SQ-BWN", ALL_LAYERS,
               note="BWN weights α_c·sign(W_c), full-precision activations, all layers"),
    Experiment("sq-bwn-w1a32", ("sq",), "sq", 1, 32, "BWN / SQ-BWN (SQ)",
               note="SQ on BWN (channel-wise α), ratio 50→75→87.5→100 %, LR restarted per "
                    "stage, all layers"),
    Experiment("twn-w2a32", ("sq",), "twn", 2, 32, "TWN / SQ-TWN",
               (*ALL_LAYERS, ("per_channel", True)),
               note="TWN ternary weights, per-channel Δ = 0.7·mean|W_c| and α_c, all layers"),
    Experiment("sq-twn-w2a32", ("sq",), "sq", 2, 32, "TWN / SQ-TWN (SQ)",
               note="SQ on TWN (wbits 2 → ternary, channel-wise α), all layers"),
    # BCGD (binary weights, 4-bit activations)
    Experiment("cg-w1a4", ("bcgd",), "bcgd", 1, 4, "coarse gradient", (("bcgd_rho", 0.0),),
               note="coarse gradient without blending (BCGD with ρ = 0), from the FP32 run",
               init_from="fp32"),
    Experiment("bcgd-w1a4", ("bcgd",), "bcgd", 1, 4, "BCGD",
               note="blended coarse gradient, ρ = 0.8 / total steps (cumulative blend 0.8), "
                    "from the FP32 run", init_from="fp32"),
    # 2/2 training schemes (all with DoReFa quantizers, first/last layer full precision)
    Experiment("direct-w2a2", ("schemes",), "dorefa", 2, 2, "direct (DoReFa)", SGD,
               note="direct training: DoReFa weights and activations from the start"),
    Experiment("progressive1-w2a2", ("schemes",), "progressive1", 2, 2, "progressive 1", SGD,
               note="weights quantized first, activations from half-way"),
    Experiment("progressive2-w2a2", ("schemes",), "progressive2", 2, 2, "progressive 2", SGD,
               note="bit width 32 → 8 → 4 → 2 in equal stages"),
    Experiment("stochastic-precision-w2a2", ("schemes",), "stochastic-precision", 2, 2,
               "stochastic precision", SGD,
               note="per-layer Bernoulli, p 0.5 → 1 over 75 % of the run, then all quantized"),
    Experiment("kd-w2a2", ("schemes",), "kd", 2, 2, "joint KD", SGD,
               note="FP teacher trained jointly in the student's optimizer and schedule"),
    # MINW-Net (AQE) at more bit widths; aqe-w1a1 above is the 1/1 point
    Experiment("aqe-w1a2", ("minw",), "aqe", 1, 2, "AQE (MINW-Net)",
               note="binary weights, ternary activations"),
    Experiment("aqe-w2a2", ("minw",), "aqe", 2, 2, "AQE (MINW-Net)",
               note="ternary weights and activations"),
    Experiment("aqe-w3a3", ("minw",), "aqe", 3, 3, "AQE (MINW-Net)",
               note="power-of-two weights S·{0, ±¼, ±½, ±1} (per-layer S = 2^e) and "
                    "activations {0, ±¼, ±½, ±1}"),
)


@dataclass(frozen=True)
class Claim:
    """``better`` beats ``worse`` on test accuracy, as the paper says."""

    text: str
    better: str
    worse: str


@dataclass(frozen=True)
class Group:
    key: str
    title: str
    paper: str
    claims: tuple[Claim, ...]
    published: str = ""


GROUPS: tuple[Group, ...] = (
    Group("baselines", "Baselines: FP32, STE and AQE at W1/A1", "AQE paper (seed 000)",
          (Claim("AQE > STE at 1/1", "aqe-w1a1", "ste-w1a1"),
           Claim("FP32 > AQE 1/1", "fp32", "aqe-w1a1")),
          "CIFAR-100 Model D 1/1: AQE 53.0 % vs STE 51.5 %; CIFAR-10 FP32 91.8 %"),
    Group("sq", "SQ: BWN vs SQ-BWN, TWN vs SQ-TWN (weight-only, activations full precision)",
          "SQ paper (seed 002)",
          (Claim("SQ-BWN > BWN", "sq-bwn-w1a32", "bwn-w1a32"),
           Claim("SQ-TWN > TWN", "sq-twn-w2a32", "twn-w2a32")),
          "CIFAR-10 ResNet-56 error: BWN 16.42 → SQ-BWN 7.15 %, TWN 7.64 → SQ-TWN 6.20 %"),
    Group("bcgd", "BCGD vs coarse gradient without blending (binary weights, 4-bit activations)",
          "BCGD paper (seed 003)",
          (Claim("BCGD > coarse gradient without blending", "bcgd-w1a4", "cg-w1a4"),),
          "ImageNet ResNet-18 W1/A4: BCGD 64.36 % vs coarse gradient 62.98 % top-1"),
    Group("schemes", "Training schemes at W2/A2: direct vs progressive, stochastic precision, "
          "joint KD", "progressive quantization / guided training paper (seed 001)",
          (Claim("progressive (scheme 1) > direct", "progressive1-w2a2", "direct-w2a2"),
           Claim("progressive (scheme 2) > direct", "progressive2-w2a2", "direct-w2a2"),
           Claim("stochastic precision > direct", "stochastic-precision-w2a2", "direct-w2a2"),
           Claim("joint KD > direct", "kd-w2a2", "direct-w2a2")),
          "each scheme improves on direct low-bit training"),
    Group("minw", "MINW-Net (AQE) at W1/A1, W1/A2, W2/A2, W3/A3", "AQE paper (seed 000)",
          (Claim("2/2 > 1/1", "aqe-w2a2", "aqe-w1a1"),
           Claim("3/3 > 2/2", "aqe-w3a3", "aqe-w2a2"),
           Claim("1/2 > 1/1", "aqe-w1a2", "aqe-w1a1")),
          "CIFAR-10 Model A: 1/1 88.4 %, 2/2 89.8 %, 3/3 90.6 %, FP32 91.8 %"),
)

BY_NAME = {e.name: e for e in EXPERIMENTS}
BY_GROUP = {g.key: g for g in GROUPS}

NOTES = (
    ("AQE is the smooth surrogate ĥ_k (a sum of tanh steps at h's thresholds) with its true "
    "derivative; its sharpness k rises geometrically from 1 to 100 over the run, and "
    "evaluation and the exported model use h. MINW-Net's ≥ 3-bit weights carry a per-layer "
    "power-of-two scale (docs/training.md)."),
    ("Every run's learning rate decays exponentially, step by step, to 1 % of its start by the "
    "end; SQ and the progressive schemes restart it at each stage. Arms of one claim share "
    "optimizer, schedule, quantized layers and scale granularity (see the overrides)."),
    ("`W/A` is weight bits / activation bits; A32 means full-precision activations (the SQ "
    "paper's weight-only setting). MINW-Net 1/2 is read as 1-bit weights, 2-bit activations."),
    ("Quantized models keep their first conv and last linear layer in full precision "
    "(`keep_first_last_fp`), except the SQ group (SQ and its BWN/TWN baselines quantize all "
    "layers, as the SQ paper)."),
    ("The direct W2/A2 baseline is DoReFa (`method=dorefa`): progressive, stochastic precision "
    "and KD use the same DoReFa quantizers, so direct differs from them only in the schedule."),
    ("Models without a lowerable layer are not compiled and are deployed as the reference ONNX: "
    "FP32 and the A32 (weight-only) SQ/BWN/TWN models (the op library needs quantized inputs). "
    "Their compiled accuracy is the reference's and their differing-prediction count vs "
    "reference is n/a. AQE W3/A3 compiles to ShiftConv/ShiftGemm (power-of-two weights and "
    "activations, `qcompile::Pow2Quant` in the export)."),
    ("Compiled and reference models can differ in a prediction although every integer dot "
    "product is exact: the reference computes conv + BatchNorm in float (onnxruntime's summation "
    "order), the compiled op folds BatchNorm into one float multiply-add after the exact integer "
    "sum, and a value within a float rounding of a quantizer's step (e.g. BCGD's CEIL) can land "
    "on the other side of it; `qcompile verify` on such an input names the first tensor that "
    "differs."),
    ("Latency is the median of interleaved runs at batch 1, 1 onnxruntime thread "
    "(`qcompile.bench.bench_models`), deployed model vs a float (FP32) ConvNet of the same width; "
    "< 1 is faster. At width 0.5 (16–64 channels, 28×28) the compiled models are not faster than "
    "float: per-op overheads, a 64-bit word holding 16–32 channels, and the float BatchNorm / "
    "Clip / MaxPool between quantized layers weigh more than on wide layers (docs/perf/). "
    "Sizes are the ONNX files on disk."),
    "Seeds also pick the training subset (`subset` is drawn with the run's seed).",
)


def select(only: tuple[str, ...]) -> list[Experiment]:
    """The experiments named (by experiment name or group key) in ``only``; all if empty."""
    if not only:
        return list(EXPERIMENTS)
    chosen: set[str] = set()
    for key in only:
        if key in BY_NAME:
            chosen.add(key)
        elif key in BY_GROUP:
            chosen.update(e.name for e in EXPERIMENTS if key in e.groups)
        else:
            raise click.BadParameter(
                f"expected an experiment ({', '.join(BY_NAME)}) or a group "
                f"({', '.join(BY_GROUP)}), got {key!r}", param_hint="--only")
    for e in EXPERIMENTS:  # an experiment that starts from another one needs it trained
        if e.name in chosen and e.init_from:
            chosen.add(e.init_from)
    return [e for e in EXPERIMENTS if e.name in chosen]


def settings_tag(s: dict[str, Any]) -> str:
    n = "all" if s["subset"] is None else str(s["subset"])
    return f"{s['data']}-e{s['epochs']}-n{n}-w{s['width']:g}"
