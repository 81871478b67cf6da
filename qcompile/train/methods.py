"""Training methods as callbacks of the one training loop (:class:`qcompile.train.Trainer`).

Hooks, in the order the loop calls them: ``on_train_begin`` → per epoch ``on_epoch_begin`` → per
batch ``on_batch_begin`` → ``compute_loss`` (the first callback returning a result wins; else
cross-entropy) → backward, gradient all-reduce → ``before_step`` → ``optimizer.step()`` →
``after_step`` → … ``on_eval_begin`` → ``on_epoch_end``. Random choices draw from
``trainer.gen`` (seeded, identical on every rank, saved in checkpoints).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .layers import QuantConv2d, QuantLinear, act_quantizers, weight_quantizers
from .quantizers import ActQuantizer, WeightQuantizer

if TYPE_CHECKING:
    from .trainer import Trainer


class Callback:
    """Base class: every hook does nothing."""

    def on_train_begin(self, t: Trainer) -> None: ...
    def on_epoch_begin(self, t: Trainer, epoch: int) -> None: ...
    def on_batch_begin(self, t: Trainer, step: int) -> None: ...

    def compute_loss(self, t: Trainer, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor] | None:
        """Return (loss, student logits) to replace the plain cross-entropy, or None."""
        return None

    def before_step(self, t: Trainer) -> None: ...
    def after_step(self, t: Trainer) -> None: ...
    def on_eval_begin(self, t: Trainer) -> None: ...
    def on_epoch_end(self, t: Trainer, epoch: int, metrics: dict[str, Any]) -> None: ...

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def stage_of(step: int, total_steps: int, n_stages: int) -> int:
    """Equal-length stages over the run: the stage index of global ``step``."""
    return min(n_stages - 1, step * n_stages // max(1, total_steps))


def equal_stage_starts(total_steps: int, n_stages: int) -> list[int]:
    """The first step of each of :func:`stage_of`'s stages."""
    starts: list[int] = []
    for step in range(total_steps):
        if stage_of(step, total_steps, n_stages) == len(starts):
            starts.append(step)
    return starts or [0]


# ---------------------------------------------------------------------------------------------
class ClipWeights(Callback):
    """Latent weights of quantized layers clipped to [−1, 1] after each step (BNN, AQE)."""

    def __init__(self, bound: float = 1.0) -> None:
        self.bound = bound

    def after_step(self, t: Trainer) -> None:
        with torch.no_grad():
            for _, m in weight_quantizers(t.model):
                m.weight.clamp_(-self.bound, self.bound)


class ClampAlpha(Callback):
    """BCGD: the learned activation resolutions α stay in [1e-3, 5] after each step."""

    def after_step(self, t: Trainer) -> None:
        for _, a in act_quantizers(t.model):
            a.clamp_alpha_()


# ---------------------------------------------------------------------------------------------
class AQESchedule(Callback):
    """The AQE-blend ablation's weight α: fixed (default ½), or annealed linearly from
    ``start`` to ``end`` over the run when ``end`` is given (the paper publishes no schedule)."""

    def __init__(self, start: float = 0.5, end: float | None = None) -> None:
        if not 0 < start < 1 or (end is not None and not 0 < end <= 1):
            raise ValueError(f"expected AQE α in (0, 1), got start={start}, end={end}")
        self.start, self.end = start, end

    def alpha_at(self, step: int, total: int) -> float:
        if self.end is None:
            return self.start
        return self.start + (self.end - self.start) * step / max(1, total - 1)

    def on_batch_begin(self, t: Trainer, step: int) -> None:
        a = self.alpha_at(step, t.total_steps)
        for m in t.model.modules():
            if isinstance(m, (WeightQuantizer, ActQuantizer)) and m.estimator == "aqe-blend":
                m.alpha = a


class AQESharpness(Callback):
    """AQE's sharpness k of the smooth surrogate ĥ_k, raised geometrically from ``start`` to
    ``end`` over the run (k_t = start·(end/start)^(t/(T−1))), so training ends close to the
    quantizer h that evaluation and the exported model use. The paper publishes neither the
    surrogate nor its schedule; this one is a choice (docs/training.md)."""

    def __init__(self, start: float = 1.0, end: float = 100.0) -> None:
        if not 0 < start <= end:
            raise ValueError(f"expected 0 < AQE sharpness start <= end, got {start}, {end}")
        self.start, self.end = start, end

    def sharpness_at(self, step: int, total: int) -> float:
        return self.start * (self.end / self.start) ** (step / max(1, total - 1))

    def on_batch_begin(self, t: Trainer, step: int) -> None:
        k = self.sharpness_at(step, t.total_steps)
        for m in t.model.modules():
            if isinstance(m, (WeightQuantizer, ActQuantizer)) and m.estimator == "aqe":
                m.sharpness = k


# ---------------------------------------------------------------------------------------------
class StochasticQuantization(Callback):
    """SQ: each iteration, per layer, quantize N_q = r·m rows chosen by roulette selection.

    e_i = ‖W_i − Q(W_i)‖₁ / ‖W_i‖₁, f_i = 1/(e_i + ε), p_i = f_i / Σf (the "linear" variant);
    N_q = floor(r·m + ½) rows drawn without replacement with probabilities p (torch.multinomial:
    sequential roulette wheel, renormalised after each draw); the rest stay full precision.
    The ratio r steps through ``ratios`` in equal stages (each initialised from the last, as the
    run simply continues). ``stochastic=False`` is the ablation: the N_q rows of lowest error.
    """

    def __init__(self, ratios: Sequence[float] = (0.5, 0.75, 0.875, 1.0), eps: float = 1e-8,
                 stochastic: bool = True) -> None:
        self.ratios = tuple(ratios)
        self.eps = eps
        self.stochastic = stochastic
        self.last_selection: dict[str, Tensor] = {}

    def ratio_at(self, step: int, total: int) -> float:
        return self.ratios[stage_of(step, total, len(self.ratios))]

    def stage_starts(self, total: int) -> list[int]:
        return equal_stage_starts(total, len(self.ratios))

    @staticmethod
    @torch.no_grad()
    def row_errors(layer: nn.Module) -> Tensor:
        w = layer.weight.detach()
        q = layer.wq.quantized_value(w)
        m = w.shape[0]
        num = (w - q).abs().reshape(m, -1).sum(1)
        den = w.abs().reshape(m, -1).sum(1).clamp_min(1e-12)
        return num / den

    def select(self, errors: Tensor, ratio: float, gen: torch.Generator) -> Tensor:
        """Boolean mask of the rows to quantize."""
        m = errors.numel()
        n_q = math.floor(ratio * m + 0.5)
        mask = torch.zeros(m, dtype=torch.bool)
        if n_q >= m:
            return mask.fill_(True)
        if n_q <= 0:
            return mask
        if self.stochastic:
            f = 1.0 / (errors.double().cpu() + self.eps)
            idx = torch.multinomial(f / f.sum(), n_q, replacement=False, generator=gen)
        else:
            idx = torch.argsort(errors.cpu(), stable=True)[:n_q]
        mask[idx] = True
        return mask

    def on_batch_begin(self, t: Trainer, step: int) -> None:
        r = self.ratio_at(step, t.total_steps)
        for name, layer in weight_quantizers(t.model):
            if r >= 1.0:
                layer.wq.sq_mask = None
                continue
            mask = self.select(self.row_errors(layer), r, t.gen)
            layer.wq.sq_mask = mask.to(layer.weight.device)
            self.last_selection[name] = mask

    def on_eval_begin(self, t: Trainer) -> None:
        for _, layer in weight_quantizers(t.model):
            layer.wq.sq_mask = None


# ---------------------------------------------------------------------------------------------
class BlendedCoarseGradient(Callback):
    """BCGD's blended update inside the optimizer step (SGD with momentum / weight decay):

        w ← (1 − ρ)·w + ρ·Q(w) − η·d,   d = SGD's step direction from the coarse gradient g
                                         computed at Q(w)

    implemented as w_sgd = w − η·d by the optimizer, then w_sgd + ρ·(Q(w) − w) with Q(w) and
    w taken before the step. ρ = 0 gives plain coarse gradient descent (the ablation). Without
    an explicit ``rho``, ρ = ``blend`` / (total steps): the cumulative blend ρ·T is what matters.
    """

    def __init__(self, rho: float | None = None, blend: float = 0.8) -> None:
        if rho is None and not blend >= 0:
            raise ValueError(f"expected a cumulative BCGD blend >= 0, got {blend}")
        self.rho_option, self.blend = rho, blend
        self.rho = 0.0 if rho is None else rho
        self._delta: list[tuple[Tensor, Tensor]] = []

    def on_train_begin(self, t: Trainer) -> None:
        # ρ from the cumulative blend ρ·T unless given: 1e-5 over the paper's ~80k CIFAR steps
        # blends ~0.8 in all; the same ρ over a short run would blend next to nothing
        if self.rho_option is None:
            self.rho = self.blend / max(1, t.total_steps)

    def before_step(self, t: Trainer) -> None:
        self._delta = []
        if self.rho == 0:
            return
        with torch.no_grad():
            for _, layer in weight_quantizers(t.model):
                w = layer.weight
                self._delta.append((w, self.rho * (layer.wq.quantized_value(w) - w)))

    def after_step(self, t: Trainer) -> None:
        with torch.no_grad():
            for w, d in self._delta:
                w.add_(d)
        self._delta = []


# ---------------------------------------------------------------------------------------------
class ProgressiveScheme1(Callback):
    """Progressive quantization, scheme 1: quantized weights with full-precision activations for
    the first ``weight_fraction`` of the steps, then activations quantized too."""

    def __init__(self, weight_fraction: float = 0.5) -> None:
        self.weight_fraction = weight_fraction

    def acts_on(self, step: int, total: int) -> bool:
        return step >= round(self.weight_fraction * total)

    def stage_starts(self, total: int) -> list[int]:
        switch = round(self.weight_fraction * total)
        return [0, switch] if 0 < switch < total else [0]

    def on_batch_begin(self, t: Trainer, step: int) -> None:
        on = self.acts_on(step, t.total_steps)
        for _, a in act_quantizers(t.model):
            a.enabled = on


class ProgressiveScheme2(Callback):
    """Progressive quantization, scheme 2: the bit width steps down over equal stages,
    ``stages`` (default 32 → 8 → 4 → 2) followed by the target, stage widths above the target
    only; each stage starts from the previous one's weights."""

    def __init__(self, wbits: int, abits: int, stages: Sequence[int] = (32, 8, 4, 2)) -> None:
        self.wbits, self.abits = wbits, abits
        target = min(wbits, abits)
        self.schedule = [b for b in stages if b > target] + [target]

    def bits_at(self, step: int, total: int) -> tuple[int, int]:
        b = self.schedule[stage_of(step, total, len(self.schedule))]
        return max(b, self.wbits), max(b, self.abits)

    def stage_starts(self, total: int) -> list[int]:
        return equal_stage_starts(total, len(self.schedule))

    def on_batch_begin(self, t: Trainer, step: int) -> None:
        wb, ab = self.bits_at(step, t.total_steps)
        for _, layer in weight_quantizers(t.model):
            layer.wq.bits = wb
        for _, a in act_quantizers(t.model):
            a.bits = ab


class StochasticPrecision(Callback):
    """Each iteration every quantized layer (each weight layer and each activation quantizer)
    is quantized with probability p, else full precision; p rises linearly from ``p_start`` to
    ``p_end`` over the first 1 − ``final_fraction`` of the run, and the last ``final_fraction``
    is fully quantized (p = 1), so training ends on the network that is evaluated. Evaluation
    quantizes everything."""

    def __init__(self, p_start: float = 0.5, p_end: float = 1.0,
                 final_fraction: float = 0.25) -> None:
        if not 0 <= final_fraction < 1:
            raise ValueError(f"expected a final fully quantized fraction in [0, 1), got "
                             f"{final_fraction}")
        self.p_start, self.p_end, self.final_fraction = p_start, p_end, final_fraction
        self.last: list[bool] = []

    def p_at(self, step: int, total: int) -> float:
        ramp = max(1, round((1 - self.final_fraction) * total))
        if step >= ramp:
            return 1.0
        return self.p_start + (self.p_end - self.p_start) * step / max(1, ramp - 1)

    def _units(self, model: nn.Module) -> list[Any]:
        return [layer.wq for _, layer in weight_quantizers(model)] + \
               [a for _, a in act_quantizers(model)]

    def on_batch_begin(self, t: Trainer, step: int) -> None:
        p = self.p_at(step, t.total_steps)
        units = self._units(t.model)
        draws = torch.rand(len(units), generator=t.gen)
        self.last = [bool(d < p) for d in draws]
        for u, on in zip(units, self.last, strict=False):
            u.enabled = on

    def on_eval_begin(self, t: Trainer) -> None:
        for u in self._units(t.model):
            u.enabled = True


# ---------------------------------------------------------------------------------------------
def kd_losses(s: Tensor, tl: Tensor, y: Tensor, T: float = 1.0, lambda_t: float = 1.0,
              lambda_s: float = 0.7, lambda_kd: float = 0.7, lambda_kd_teacher: float = 0.5
              ) -> tuple[Tensor, Tensor]:
    """Joint KD losses (ALGORITHMS.md §2), KL(P‖Q) = Σ P (log P − log Q), batch mean:

    student: λ_s·CE(s, y) + λ_kd·T²·KL(softmax(t/T) ‖ softmax(s/T)), teacher detached;
    teacher: λ_t·CE(t, y) + λ_kd'·T²·KL(softmax(s/T) ‖ softmax(t/T)), student detached.
    """
    kl_s = F.kl_div(F.log_softmax(s / T, 1), F.log_softmax(tl.detach() / T, 1),
                    reduction="batchmean", log_target=True)
    kl_t = F.kl_div(F.log_softmax(tl / T, 1), F.log_softmax(s.detach() / T, 1),
                    reduction="batchmean", log_target=True)
    loss_s = lambda_s * F.cross_entropy(s, y) + lambda_kd * T * T * kl_s
    loss_t = lambda_t * F.cross_entropy(tl, y) + lambda_kd_teacher * T * T * kl_t
    return loss_s, loss_t


class JointKD(Callback):
    """Guided training: a full-precision teacher trained alongside the student.

    By default (``teacher_optimizer`` None) the teacher's parameters are in the loop's own
    optimizer, so teacher and student share the optimizer and its learning-rate schedule (the
    authors train both with the same SGD schedule); ``train`` puts them there
    (:meth:`extra_parameters`). The loss returned to the loop is loss_s + loss_t (the graphs
    are disjoint, so one backward gives each network its own gradient).
    """

    def __init__(self, teacher: nn.Module, T: float = 1.0, lambda_t: float = 1.0,
                 lambda_s: float = 0.7, lambda_kd: float = 0.7, lambda_kd_teacher: float = 0.5,
                 teacher_optimizer: torch.optim.Optimizer | None = None) -> None:
        self.teacher = teacher
        self.kw = dict(T=T, lambda_t=lambda_t, lambda_s=lambda_s, lambda_kd=lambda_kd,
                       lambda_kd_teacher=lambda_kd_teacher)
        self.opt = teacher_optimizer
        self.teacher_acc: float | None = None

    def extra_parameters(self) -> list[nn.Parameter]:
        """Parameters the loop's optimizer must also update (the teacher's, when shared)."""
        return list(self.teacher.parameters()) if self.opt is None else []

    def on_train_begin(self, t: Trainer) -> None:
        self.teacher.to(t.device)
        t.grad_modules.append(self.teacher)
        if self.opt is None:
            shared = {id(p) for g in t.optimizer.param_groups for p in g["params"]}
            if any(id(p) not in shared for p in self.teacher.parameters()):
                raise ValueError("JointKD without a teacher optimizer: the loop's optimizer "
                                 "must hold the teacher's parameters (extra_parameters())")

    def on_batch_begin(self, t: Trainer, step: int) -> None:
        self.teacher.train()
        if self.opt is not None:
            self.opt.zero_grad(set_to_none=True)

    def compute_loss(self, t: Trainer, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        s = t.model(x)
        tl = self.teacher(x)
        loss_s, loss_t = kd_losses(s, tl, y, **self.kw)
        return loss_s + loss_t, s

    def after_step(self, t: Trainer) -> None:
        if self.opt is not None:
            self.opt.step()

    def on_epoch_end(self, t: Trainer, epoch: int, metrics: dict[str, Any]) -> None:
        _, acc = t.evaluate(self.teacher)
        metrics["teacher_test_acc"] = acc

    def state_dict(self) -> dict[str, Any]:
        return {"teacher": self.teacher.state_dict(),
                "opt": None if self.opt is None else self.opt.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.teacher.load_state_dict(state["teacher"])
        if self.opt is not None and state.get("opt") is not None:
            self.opt.load_state_dict(state["opt"])


__all__ = [
    "AQESchedule",
    "AQESharpness",
    "BlendedCoarseGradient",
    "Callback",
    "ClampAlpha",
    "ClipWeights",
    "JointKD",
    "ProgressiveScheme1",
    "ProgressiveScheme2",
    "QuantConv2d",
    "QuantLinear",
    "StochasticPrecision",
    "StochasticQuantization",
    "kd_losses",
    "stage_of",
]
