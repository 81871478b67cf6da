"""The one training loop (:class:`Trainer`), its configuration and ``train(config)``.

Methods plug in as callbacks (:mod:`qcompile.train.methods`). Under ``torchrun`` the loop trains
data-parallel: a DistributedSampler shards each epoch, gradients are averaged with one
all-reduce per step, BatchNorm running statistics are averaged at each epoch end, and rank 0
alone writes outputs.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler, TensorDataset

from ..errors import QCompileError
from ..fileio import atomic_path, write_bytes_atomic
from . import methods as M
from .data import Dataset, load_dataset
from .export import export_onnx
from .layers import QuantReport, act_quantizers
from .models import build_fp_model, build_model
from .registry import METHODS, CallbackContext, get_method, make_callbacks


@dataclass
class TrainConfig:
    """Everything a run needs; defaults follow ALGORITHMS.md, all overridable."""

    model: str = "convnet"
    data: str = "fashion-mnist"
    data_dir: str | None = None
    wbits: int = 1
    abits: int = 1
    method: str = "ste"
    epochs: int = 1
    batch_size: int = 128
    lr: float | None = None          # None: 0.01 for Adam (AQE paper), 0.05 for SGD
    optimizer: str | None = None     # "adam" | "sgd"; None: the method's default (registry)
    momentum: float = 0.9
    weight_decay: float | None = None  # None: 1e-4 with SGD, 0 with Adam
    lr_final: float = 0.01           # per-step exponential decay to lr·lr_final by the end
    lr_gamma: float | None = None    # per-epoch exponential decay instead (the old schedule)
    stage_lr_restart: bool = True    # multi-stage methods: the schedule restarts each stage
    init_from: str | None = None     # a checkpoint.pt (or state dict) to start the weights from
    seed: int = 0
    subset: int | None = None
    test_subset: int | None = None
    width: float = 1.0
    out: str | None = None
    device: str = "cpu"
    resume: bool = False
    keep_first_last_fp: bool | None = None  # None: the method's default (registry)
    export: bool = True
    progress: bool = True
    max_steps_per_epoch: int | None = None
    clip_weights: bool | None = None  # None: the method's default (registry)
    # quantizer options
    per_channel: bool | None = None
    act_delta: float = 0.5
    delta_factor: float = 0.7
    zero_threshold: str = "log"
    pow2_scale: str = "layer"        # ≥3-bit h weights: per-layer power-of-two scale, or "none"
    # AQE (smooth surrogate): sharpness k raised geometrically from start to end
    aqe_k_start: float = 1.0
    aqe_k_end: float = 100.0
    # AQE blend (ablation)
    aqe_alpha: float = 0.5
    aqe_anneal_to: float | None = None
    # SQ
    sq_ratios: Sequence[float] = (0.5, 0.75, 0.875, 1.0)
    sq_eps: float = 1e-8
    sq_stochastic: bool = True
    # BCGD
    bcgd_rho: float | None = None    # None: bcgd_blend / total steps
    bcgd_blend: float = 0.8          # cumulative blend ρ·T (the paper's CIFAR setting ≈ 0.8)
    bcgd_alpha: float | None = None
    # progressive / stochastic precision
    prog1_weight_fraction: float = 0.5
    prog2_stages: Sequence[int] = (32, 8, 4, 2)
    sp_p_start: float = 0.5
    sp_p_end: float = 1.0
    sp_final_fraction: float = 0.25  # the last part of the run fully quantized
    # joint KD
    kd_T: float = 1.0
    kd_lambda_t: float = 1.0
    kd_lambda_s: float = 0.7
    kd_lambda_kd: float = 0.7
    kd_lambda_kd_teacher: float = 0.5
    teacher_lr: float | None = None  # None: the student's learning rate (same schedule)

    def validate(self) -> None:
        if self.method not in METHODS:
            raise QCompileError(f"expected method in {METHODS}, got {self.method!r}")
        for k in ("wbits", "abits"):
            v = getattr(self, k)
            if not 1 <= v <= 32:
                raise QCompileError(f"expected --{k} between 1 and 32, got {v}")
        if not 0 < self.lr_final <= 1:
            raise QCompileError(f"expected --lr-final in (0, 1], got {self.lr_final}")
        if self.epochs < 1 or self.batch_size < 1:
            raise QCompileError(f"expected epochs and batch size >= 1, got {self.epochs}, "
                                f"{self.batch_size}")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}


@dataclass
class TrainResult:
    """What ``train`` returns."""

    model: nn.Module
    history: list[dict[str, Any]]
    report: QuantReport
    test_acc: float
    out_dir: Path | None = None
    onnx_path: Path | None = None
    teacher: nn.Module | None = None
    extra: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
def _dist_info() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_distributed(device: str) -> tuple[int, int]:
    """Join the process group when started by torchrun (WORLD_SIZE > 1); else single process."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return _dist_info()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    write_bytes_atomic(path, data)


def atomic_torch_save(obj: Any, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


class Trainer:
    """One training loop; methods are callbacks.

    ``model`` and ``optimizer`` are ordinary torch objects; ``gen`` is the seeded generator
    methods draw their random choices from (same on every rank).
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, data: Dataset,
                 *, epochs: int = 1, batch_size: int = 128, device: str | torch.device = "cpu",
                 callbacks: Sequence[M.Callback] = (), scheduler: Any = None,
                 step_scheduler: Any = None, seed: int = 0,
                 progress: bool = True, max_steps_per_epoch: int | None = None) -> None:
        self.rank, self.world_size = _dist_info()
        self.device = torch.device(device)
        self.model = model.to(self.device)
        self.optimizer = optimizer
        self.scheduler = scheduler            # stepped once per epoch
        self.step_scheduler = step_scheduler  # stepped after every optimizer step
        self.data = data
        self.epochs = epochs
        self.batch_size = batch_size
        self.callbacks = list(callbacks)
        self.seed = seed
        self.progress = progress and self.rank == 0
        self.gen = torch.Generator().manual_seed(seed + 7919)
        self.grad_modules: list[nn.Module] = [self.model]
        self.history: list[dict[str, Any]] = []
        self.start_epoch = 0
        self.global_step = 0
        ds = TensorDataset(data.x_train, data.y_train)
        self._train_ds = ds
        n_per_rank = math.ceil(len(ds) / self.world_size)
        self.steps_per_epoch = math.ceil(n_per_rank / batch_size)
        if max_steps_per_epoch is not None:
            self.steps_per_epoch = min(self.steps_per_epoch, max_steps_per_epoch)
        self.max_steps_per_epoch = max_steps_per_epoch
        self.total_steps = self.steps_per_epoch * epochs

    # -- data ----------------------------------------------------------------------------------
    def _loader(self, epoch: int) -> DataLoader:
        if self.world_size > 1:
            sampler: Any = DistributedSampler(self._train_ds, self.world_size, self.rank,
                                              shuffle=True, seed=self.seed)
            sampler.set_epoch(epoch)
        else:
            g = torch.Generator().manual_seed(self.seed * 1000 + epoch)
            sampler = RandomSampler(self._train_ds, generator=g)
        return DataLoader(self._train_ds, batch_size=self.batch_size, sampler=sampler)

    # -- distributed helpers -------------------------------------------------------------------
    def _allreduce_grads(self) -> None:
        if self.world_size == 1:
            return
        params = [p for m in self.grad_modules for p in m.parameters() if p.requires_grad]
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= self.world_size
        off = 0
        for p, g in zip(params, grads, strict=False):
            n = g.numel()
            p.grad = flat[off:off + n].view_as(p).clone()
            off += n

    def _sync_buffers(self) -> None:
        if self.world_size == 1:
            return
        for m in self.grad_modules:
            for b in m.buffers():
                if b.dtype.is_floating_point:
                    dist.all_reduce(b)
                    b /= self.world_size
                else:
                    dist.broadcast(b, 0)

    def _sum(self, *vals: float) -> list[float]:
        if self.world_size == 1:
            return list(vals)
        t = torch.tensor(vals, dtype=torch.float64)
        dist.all_reduce(t)
        return t.tolist()

    # -- loop ----------------------------------------------------------------------------------
    def _cb(self, hook: str, *args: Any) -> None:
        for cb in self.callbacks:
            getattr(cb, hook)(self, *args)

    def train_step(self, x: Tensor, y: Tensor) -> tuple[float, int]:
        self._cb("on_batch_begin", self.global_step)
        self.model.train()
        out = None
        for cb in self.callbacks:
            out = cb.compute_loss(self, x, y)
            if out is not None:
                break
        if out is None:
            logits = self.model(x)
            out = (F.cross_entropy(logits, y), logits)
        loss, logits = out
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self._allreduce_grads()
        self._cb("before_step")
        self.optimizer.step()
        self._cb("after_step")
        if self.step_scheduler is not None:
            self.step_scheduler.step()
        self.global_step += 1
        correct = int((logits.detach().argmax(1) == y).sum())
        return float(loss.detach()) * len(y), correct

    @torch.no_grad()
    def evaluate(self, model: nn.Module | None = None, batch_size: int = 512
                 ) -> tuple[float, float]:
        """(mean loss, accuracy) on the test set, eval mode, everything quantized."""
        model = model if model is not None else self.model
        self._cb("on_eval_begin")
        was = model.training
        model.eval()
        tot_loss, correct, n = 0.0, 0, 0
        for i in range(0, len(self.data.y_test), batch_size):
            x = self.data.x_test[i:i + batch_size].to(self.device)
            y = self.data.y_test[i:i + batch_size].to(self.device)
            logits = model(x)
            tot_loss += float(F.cross_entropy(logits, y, reduction="sum"))
            correct += int((logits.argmax(1) == y).sum())
            n += len(y)
        model.train(was)
        return tot_loss / max(1, n), correct / max(1, n)

    def fit(self, on_epoch_end: Any = None) -> list[dict[str, Any]]:
        """Train from ``start_epoch`` to ``epochs``; ``on_epoch_end(trainer, epoch)`` after
        each epoch's metrics are in ``history`` (used for checkpoints)."""
        if self.start_epoch == 0:
            self._cb("on_train_begin")
        for epoch in range(self.start_epoch, self.epochs):
            t0 = time.time()
            self._cb("on_epoch_begin", epoch)
            loss_sum, correct, seen = 0.0, 0, 0
            bar = None
            if self.progress:
                from tqdm import tqdm

                bar = tqdm(total=self.steps_per_epoch, desc=f"epoch {epoch + 1}/{self.epochs}",
                           unit="step", leave=True, dynamic_ncols=True)
            for i, (x, y) in enumerate(self._loader(epoch)):
                if i >= self.steps_per_epoch:
                    break
                x, y = x.to(self.device), y.to(self.device)
                ls, c = self.train_step(x, y)
                loss_sum, correct, seen = loss_sum + ls, correct + c, seen + len(y)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}")
            if bar is not None:
                bar.close()
            self._sync_buffers()
            loss_sum, correct, seen = self._sum(loss_sum, correct, seen)
            lr = self.optimizer.param_groups[0]["lr"]
            if self.scheduler is not None:
                self.scheduler.step()
            test_loss, test_acc = self.evaluate()
            rec: dict[str, Any] = {"epoch": epoch + 1, "train_loss": loss_sum / max(1, seen),
                                   "train_acc": correct / max(1, seen), "test_loss": test_loss,
                                   "test_acc": test_acc, "lr": lr, "steps": self.global_step,
                                   "seconds": round(time.time() - t0, 3)}
            self._cb("on_epoch_end", epoch, rec)
            self.history.append(rec)
            if self.progress:
                print(f"epoch {epoch + 1}: train loss {rec['train_loss']:.4f} "
                      f"acc {rec['train_acc']:.4f} | test loss {test_loss:.4f} "
                      f"acc {test_acc:.4f}", flush=True)
            if on_epoch_end is not None:
                on_epoch_end(self, epoch)
        return self.history

    # -- checkpoints ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"epoch": len(self.history), "global_step": self.global_step,
                "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict() if self.scheduler else None,
                "step_scheduler": (self.step_scheduler.state_dict() if self.step_scheduler
                                   else None),
                "gen": self.gen.get_state(), "torch_rng": torch.get_rng_state(),
                "history": self.history,
                "callbacks": [cb.state_dict() for cb in self.callbacks]}

    def load_state_dict(self, s: dict[str, Any]) -> None:
        self.model.load_state_dict(s["model"])
        self.optimizer.load_state_dict(s["optimizer"])
        if self.scheduler is not None and s.get("scheduler"):
            self.scheduler.load_state_dict(s["scheduler"])
        if self.step_scheduler is not None and s.get("step_scheduler"):
            self.step_scheduler.load_state_dict(s["step_scheduler"])
        self.gen.set_state(s["gen"])
        torch.set_rng_state(s["torch_rng"])
        self.history = list(s["history"])
        self.start_epoch = int(s["epoch"])
        self.global_step = int(s["global_step"])
        for cb, st in zip(self.callbacks, s["callbacks"], strict=False):
            cb.load_state_dict(st)
        if self.start_epoch > 0:
            self._cb("on_train_begin")


# ---------------------------------------------------------------------------------------------
def make_optimizer(cfg: TrainConfig, params: Any) -> torch.optim.Optimizer:
    kind = cfg.optimizer or get_method(cfg.method).optimizer
    if kind == "adam":
        return torch.optim.Adam(params, lr=cfg.lr if cfg.lr is not None else 0.01,
                                weight_decay=cfg.weight_decay or 0.0)
    if kind == "sgd":
        wd = 1e-4 if cfg.weight_decay is None else cfg.weight_decay
        return torch.optim.SGD(params, lr=cfg.lr if cfg.lr is not None else 0.05,
                               momentum=cfg.momentum, weight_decay=wd)
    raise QCompileError(f"expected optimizer 'adam' or 'sgd', got {kind!r}")


def keep_first_last_fp(cfg: TrainConfig) -> bool:
    """Whether the first and last weight layers stay full precision (the method's default)."""
    if cfg.keep_first_last_fp is not None:
        return cfg.keep_first_last_fp
    return get_method(cfg.method).keep_first_last_fp


def param_groups(cfg: TrainConfig, model: nn.Module, callbacks: Sequence[M.Callback]
                 ) -> list[dict[str, Any]]:
    """The model's parameters, plus those callbacks ask the loop's optimizer to update (the KD
    teacher's: same optimizer, same schedule; its own lr only with ``teacher_lr``)."""
    groups: list[dict[str, Any]] = [{"params": list(model.parameters())}]
    for cb in callbacks:
        extra = getattr(cb, "extra_parameters", None)
        params = extra() if extra is not None else []
        if params:
            g: dict[str, Any] = {"params": params}
            if cfg.teacher_lr is not None:
                g["lr"] = cfg.teacher_lr
            groups.append(g)
    return groups


def stage_starts(cfg: TrainConfig, callbacks: Sequence[M.Callback], total: int) -> list[int]:
    """First step of each training stage: the staged method's stages when the schedule
    restarts per stage (``stage_lr_restart``), else one stage."""
    if cfg.stage_lr_restart:
        for cb in callbacks:
            fn = getattr(cb, "stage_starts", None)
            if fn is not None:
                return fn(total)
    return [0]


def lr_factor(step: int, total: int, starts: Sequence[int], final: float) -> float:
    """The learning rate multiplier at ``step``: exponential from 1 at the start of its stage to
    ``final`` at the stage's last step (each stage its own schedule, as the multi-round papers
    restart the learning rate)."""
    begin = max([s for s in starts if s <= step] or [0])
    later = [s for s in starts if s > begin]
    end = later[0] if later else total
    length = max(1, end - begin - 1)
    return final ** (min(step - begin, length) / length)


def load_initial_weights(model: nn.Module, path: str) -> None:
    """Start from the weights of a checkpoint (``--init-from``): every weight layer's weight
    must be there with its shape; quantizer state (e.g. BCGD's α) keeps its initialisation."""
    p = Path(path)
    if not p.is_file():
        raise QCompileError(f"--init-from: no file at {p}")
    try:
        state = torch.load(p, map_location="cpu", weights_only=False)
    except Exception as e:  # any unreadable file: the user's to fix, one line
        raise QCompileError(f"--init-from: {p} is not a torch checkpoint ({e})") from None
    state = state.get("model", state) if isinstance(state, dict) else state
    if not isinstance(state, dict):
        raise QCompileError(f"--init-from: expected a state dict or checkpoint in {p}")
    own = model.state_dict()
    wanted = [k for k in own if k.endswith(".weight")]
    bad = [k for k in wanted if k not in state or tuple(state[k].shape) != tuple(own[k].shape)]
    if bad:
        raise QCompileError(f"--init-from: {p} does not match the model: expected {bad[0]} of "
                            f"shape {tuple(own[bad[0]].shape)}")
    model.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)


def _plot(history: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    ep = [h["epoch"] for h in history]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.5))
    a1.plot(ep, [h["train_loss"] for h in history], "o-", label="train")
    a1.plot(ep, [h["test_loss"] for h in history], "s-", label="test")
    a1.set_xlabel("epoch"), a1.set_ylabel("loss"), a1.legend()
    a2.plot(ep, [h["train_acc"] for h in history], "o-", label="train")
    a2.plot(ep, [h["test_acc"] for h in history], "s-", label="test")
    a2.set_xlabel("epoch"), a2.set_ylabel("accuracy"), a2.legend()
    for ax in (a1, a2):  # epochs are whole numbers
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def train(config: TrainConfig | dict[str, Any] | None = None, **overrides: Any) -> TrainResult:
    """Train per ``config`` (a TrainConfig, a dict, or keyword overrides) and return the result.

    With ``config.out`` set, rank 0 writes ``checkpoint.pt`` each epoch, ``metrics.json``,
    ``learning_curve.png`` and, at the end, ``model.onnx`` (atomically). ``resume`` continues
    from ``out/checkpoint.pt``.
    """
    if config is None:
        cfg = TrainConfig()
    elif isinstance(config, dict):
        cfg = TrainConfig(**config)
    else:
        cfg = dataclasses.replace(config)
    cfg = dataclasses.replace(cfg, **overrides)
    cfg.validate()
    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        raise QCompileError("--device cuda asked for, but torch sees no CUDA device; "
                            "use --device cpu")
    rank, world = init_distributed(cfg.device)
    device = cfg.device
    if device.startswith("cuda") and world > 1:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    torch.manual_seed(cfg.seed)
    data = load_dataset(cfg.data, cfg.data_dir, cfg.subset, cfg.test_subset, cfg.seed)
    spec_opts = dict(aqe_alpha=cfg.aqe_alpha, per_channel=cfg.per_channel,
                     act_delta=cfg.act_delta, delta_factor=cfg.delta_factor,
                     zero_threshold=cfg.zero_threshold, bcgd_alpha=cfg.bcgd_alpha,
                     pow2_scale=cfg.pow2_scale)
    torch.manual_seed(cfg.seed)
    model, report = build_model(cfg.model, data.in_shape, data.num_classes, width=cfg.width,
                                wbits=cfg.wbits, abits=cfg.abits, method=cfg.method,
                                keep_first_last_fp=keep_first_last_fp(cfg), **spec_opts)
    if cfg.init_from and not cfg.resume:
        load_initial_weights(model, cfg.init_from)
    ctx = CallbackContext(lambda: build_fp_model(cfg.model, data.in_shape, data.num_classes,
                                                 cfg.width))
    callbacks = make_callbacks(cfg, ctx)
    opt = make_optimizer(cfg, param_groups(cfg, model, callbacks))
    sched = step_sched = None
    if cfg.lr_gamma is not None:
        sched = torch.optim.lr_scheduler.ExponentialLR(opt, cfg.lr_gamma)
    trainer = Trainer(model, opt, data, epochs=cfg.epochs, batch_size=cfg.batch_size,
                      device=device, callbacks=callbacks, scheduler=sched, seed=cfg.seed,
                      progress=cfg.progress, max_steps_per_epoch=cfg.max_steps_per_epoch)
    if cfg.lr_gamma is None:
        starts = stage_starts(cfg, callbacks, trainer.total_steps)
        step_sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda step: lr_factor(step, trainer.total_steps, starts, cfg.lr_final))
        trainer.step_scheduler = step_sched
    out = Path(cfg.out) if cfg.out else None
    if out is not None and rank == 0:
        out.mkdir(parents=True, exist_ok=True)
    ckpt = out / "checkpoint.pt" if out else None
    if cfg.resume:
        if ckpt is None or not ckpt.is_file():
            raise QCompileError(f"--resume: expected a checkpoint at {ckpt}, found none; "
                                f"run without --resume first")
        trainer.load_state_dict(torch.load(ckpt, map_location=trainer.device,
                                           weights_only=False))
    meta = {"method": cfg.method, "wbits": cfg.wbits, "abits": cfg.abits, "model": cfg.model,
            "data": cfg.data, **report.as_dict()}

    def write_outputs(t: Trainer, epoch: int) -> None:
        if out is None or rank != 0:
            return
        atomic_torch_save({**t.state_dict(), "config": cfg.to_dict()}, ckpt)  # type: ignore
        metrics = {"config": cfg.to_dict(), "quantization": report.as_dict(),
                   "world_size": world, "epochs": t.history}
        atomic_write_bytes(out / "metrics.json", json.dumps(metrics, indent=2).encode())
        _plot(t.history, out / "learning_curve.png",
              f"{cfg.model} {cfg.method} W{cfg.wbits}A{cfg.abits} on {cfg.data}")

    if rank == 0 and cfg.progress:
        print(str(report), flush=True)
    trainer.fit(on_epoch_end=write_outputs)
    onnx_path = None
    if out is not None and cfg.export and rank == 0:
        onnx_path = export_onnx(trainer.model, out / "model.onnx", data.in_shape,
                                {k: json.dumps(v) if isinstance(v, list) else v
                                 for k, v in meta.items()})
    if world > 1:
        dist.barrier()
    teacher = next((cb.teacher for cb in callbacks if isinstance(cb, M.JointKD)), None)
    acc = trainer.history[-1]["test_acc"] if trainer.history else float("nan")
    return TrainResult(trainer.model, trainer.history, report, acc, out, onnx_path, teacher,
                       {"trainer": trainer, "dataset": data})


__all__ = [
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "act_quantizers",
    "init_distributed",
    "make_callbacks",
    "make_optimizer",
    "train",
]
