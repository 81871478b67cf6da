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
    """AQE blend weight α: fixed (default ½), or annealed linearly from ``start`` to ``end``
    over the run when ``end`` is given (the paper publishes no schedule)."""

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
            if isinstance(m, (WeightQuantizer, ActQuantizer)) and m.estimator == "aqe":
                m.alpha = a


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
    w taken before the step. ρ = 0 gives plain coarse gradient descent (the ablation).
    """

    def __init__(self, rho: float = 1e-5) -> None:
        self.rho = rho
        self._delta: list[tuple[Tensor, Tensor]] = []

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

    def on_batch_begin(self, t: Trainer, step: int) -> None:
        wb, ab = self.bits_at(step, t.total_steps)
        for _, layer in weight_quantizers(t.model):
            layer.wq.bits = wb
        for _, a in act_quantizers(t.model):
            a.bits = ab


class StochasticPrecision(Callback):
    """Each iteration every quantized layer (each weight layer and each activation quantizer)
    is quantized with probability p, else full precision; p rises linearly from ``p_start`` to
    ``p_end`` over the run. Evaluation quantizes everything."""

    def __init__(self, p_start: float = 0.5, p_end: float = 1.0) -> None:
        self.p_start, self.p_end = p_start, p_end
        self.last: list[bool] = []

    def p_at(self, step: int, total: int) -> float:
        return self.p_start + (self.p_end - self.p_start) * step / max(1, total - 1)

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

    The teacher has its own optimizer (SGD, momentum 0.9, weight decay 1e-4 by default); the
    loss returned to the loop is loss_s + loss_t (the graphs are disjoint, so one backward
    gives each network its own gradient).
    """

    def __init__(self, teacher: nn.Module, T: float = 1.0, lambda_t: float = 1.0,
                 lambda_s: float = 0.7, lambda_kd: float = 0.7, lambda_kd_teacher: float = 0.5,
                 teacher_optimizer: torch.optim.Optimizer | None = None,
                 teacher_lr: float = 0.05) -> None:
        self.teacher = teacher
        self.kw = dict(T=T, lambda_t=lambda_t, lambda_s=lambda_s, lambda_kd=lambda_kd,
                       lambda_kd_teacher=lambda_kd_teacher)
        self.opt = teacher_optimizer or torch.optim.SGD(teacher.parameters(), lr=teacher_lr,
                                                        momentum=0.9, weight_decay=1e-4)
        self.teacher_acc: float | None = None

    def on_train_begin(self, t: Trainer) -> None:
        self.teacher.to(t.device)
        t.grad_modules.append(self.teacher)

    def on_batch_begin(self, t: Trainer, step: int) -> None:
        self.teacher.train()
        self.opt.zero_grad(set_to_none=True)

    def compute_loss(self, t: Trainer, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        s = t.model(x)
        tl = self.teacher(x)
        loss_s, loss_t = kd_losses(s, tl, y, **self.kw)
        return loss_s + loss_t, s

    def after_step(self, t: Trainer) -> None:
        self.opt.step()

    def on_epoch_end(self, t: Trainer, epoch: int, metrics: dict[str, Any]) -> None:
        _, acc = t.evaluate(self.teacher)
        metrics["teacher_test_acc"] = acc

    def state_dict(self) -> dict[str, Any]:
        return {"teacher": self.teacher.state_dict(), "opt": self.opt.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.teacher.load_state_dict(state["teacher"])
        self.opt.load_state_dict(state["opt"])


__all__ = [
    "AQESchedule",
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
