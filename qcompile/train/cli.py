"""``qcompile train``: the click command (the lead wires ``train`` into the ``qcompile`` group).

Also runnable alone: ``python -m qcompile.train.cli --data digits --epochs 1 --out runs/x``, and
data-parallel with ``torchrun --nproc_per_node N -m qcompile.train.cli ...``.
"""

from __future__ import annotations

from typing import Any

import click

from ..errors import QCompileError
from .data import DATASETS
from .models import MODELS
from .registry import METHODS


@click.command("train")
@click.option("--model", type=click.Choice((*MODELS, "convnet_a", "convnet_b", "convnet_c",
                                            "convnet_d")),
              default="convnet", show_default=True, help="Model family.")
@click.option("--data", type=click.Choice(DATASETS), default="fashion-mnist", show_default=True)
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="Directory of the Fashion-MNIST IDX files "
                   "(default /usr/share/datasets/fashion-mnist).")
@click.option("--wbits", type=int, default=1, show_default=True, help="Weight bit width.")
@click.option("--abits", type=int, default=1, show_default=True, help="Activation bit width.")
@click.option("--method", type=click.Choice(METHODS), default="ste", show_default=True)
@click.option("--epochs", type=int, default=1, show_default=True)
@click.option("--batch-size", type=int, default=128, show_default=True,
              help="Per-process batch size.")
@click.option("--lr", type=float, default=None,
              help="Learning rate (default 0.01 with Adam, 0.05 with SGD).")
@click.option("--optimizer", type=click.Choice(["adam", "sgd"]), default=None,
              help="Default: sgd for bcgd and kd, adam otherwise.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--subset", type=int, default=None, help="Use only this many training samples.")
@click.option("--test-subset", type=int, default=None, help="Use only this many test samples.")
@click.option("--width", type=float, default=1.0, show_default=True, help="Width multiplier.")
@click.option("--keep-first-last-fp/--quantize-first-last", default=None,
              help="Keep the first conv and the last linear layer in full precision "
                   "(default: the method's; SQ quantizes all layers, the others keep them).")
@click.option("--per-channel/--per-layer", "per_channel", default=None,
              help="Weight scale granularity (default: the method's; BWN and SQ per channel, "
                   "TWN per layer).")
@click.option("--lr-final", type=float, default=0.01, show_default=True,
              help="The learning rate decays exponentially, step by step, to this fraction "
                   "of --lr by the end of the run (of each stage with --stage-lr-restart).")
@click.option("--lr-gamma", type=float, default=None,
              help="Per-epoch exponential decay factor instead of --lr-final.")
@click.option("--stage-lr-restart/--no-stage-lr-restart", default=True, show_default=True,
              help="Multi-stage methods (sq, progressive1/2) restart the learning-rate "
                   "schedule at each stage, as the papers' multi-round training does.")
@click.option("--weight-decay", type=float, default=None,
              help="Default 1e-4 with SGD, 0 with Adam.")
@click.option("--init-from", type=click.Path(dir_okay=False), default=None,
              help="Start from the weights of this checkpoint.pt (e.g. a float run's; BCGD's "
                   "paper starts from a pretrained float model).")
@click.option("--pow2-scale", type=click.Choice(["layer", "none"]), default="layer",
              show_default=True,
              help=">=3-bit AQE/STE weights: per-layer power-of-two scale, or none (paper).")
@click.option("--aqe-k-start", type=float, default=1.0, show_default=True,
              help="AQE: sharpness k of the smooth surrogate at the start.")
@click.option("--aqe-k-end", type=float, default=100.0, show_default=True,
              help="AQE: sharpness k at the end (raised geometrically).")
@click.option("--aqe-alpha", type=float, default=0.5, show_default=True,
              help="aqe-blend ablation: blend weight α.")
@click.option("--aqe-anneal-to", type=float, default=None,
              help="aqe-blend ablation: anneal α linearly to this value over the run.")
@click.option("--bcgd-blend", type=float, default=0.8, show_default=True,
              help="BCGD: cumulative blend ρ·T over the run; ρ = this / total steps.")
@click.option("--bcgd-rho", type=float, default=None,
              help="BCGD: the blend ρ per step, overriding --bcgd-blend (0: coarse gradient).")
@click.option("--sp-final-fraction", type=float, default=0.25, show_default=True,
              help="Stochastic precision: the last fraction of the run fully quantized.")
@click.option("--teacher-lr", type=float, default=None,
              help="KD: the teacher's learning rate (default the student's; same optimizer "
                   "and schedule).")
@click.option("--out", type=click.Path(file_okay=False), default="runs/train", show_default=True)
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--resume", is_flag=True, help="Continue from OUT/checkpoint.pt.")
@click.option("--no-export", is_flag=True, help="Do not write model.onnx.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def train(no_export: bool, quiet: bool, **options: Any) -> None:
    """Train a low-bit network and export it to QONNX (OUT/model.onnx)."""
    from .trainer import TrainConfig
    from .trainer import train as run_train

    cfg = TrainConfig(**options, export=not no_export, progress=not quiet)
    try:
        result = run_train(cfg)
    except (QCompileError, ValueError) as e:
        raise click.ClickException(str(e)) from None
    if result.out_dir is not None and result.extra["trainer"].rank == 0:
        click.echo(f"test accuracy {result.test_acc:.4f}; outputs in {result.out_dir}"
                   + (f"; ONNX {result.onnx_path}" if result.onnx_path else ""))


if __name__ == "__main__":
    train()
