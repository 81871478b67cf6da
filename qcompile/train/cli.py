"""``qcompile train``: the click command (the lead wires ``train`` into the ``qcompile`` group).

Also runnable alone: ``python -m qcompile.train.cli --data digits --epochs 1 --out runs/x``, and
data-parallel with ``torchrun --nproc_per_node N -m qcompile.train.cli ...``.
"""

from __future__ import annotations

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
@click.option("--keep-first-last-fp/--quantize-first-last", default=True, show_default=True,
              help="Keep the first conv and the last linear layer in full precision.")
@click.option("--aqe-alpha", type=float, default=0.5, show_default=True)
@click.option("--aqe-anneal-to", type=float, default=None,
              help="Anneal the AQE α linearly to this value over the run.")
@click.option("--bcgd-rho", type=float, default=1e-5, show_default=True)
@click.option("--out", type=click.Path(file_okay=False), default="runs/train", show_default=True)
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--resume", is_flag=True, help="Continue from OUT/checkpoint.pt.")
@click.option("--no-export", is_flag=True, help="Do not write model.onnx.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def train(model: str, data: str, data_dir: str | None, wbits: int, abits: int, method: str,
          epochs: int, batch_size: int, lr: float | None, optimizer: str | None, seed: int,
          subset: int | None, test_subset: int | None, width: float, keep_first_last_fp: bool,
          aqe_alpha: float, aqe_anneal_to: float | None, bcgd_rho: float, out: str,
          device: str, resume: bool, no_export: bool, quiet: bool) -> None:
    """Train a low-bit network and export it to QONNX (OUT/model.onnx)."""
    from .trainer import TrainConfig
    from .trainer import train as run_train

    cfg = TrainConfig(model=model, data=data, data_dir=data_dir, wbits=wbits, abits=abits,
                      method=method, epochs=epochs, batch_size=batch_size, lr=lr,
                      optimizer=optimizer, seed=seed, subset=subset, test_subset=test_subset,
                      width=width, keep_first_last_fp=keep_first_last_fp, aqe_alpha=aqe_alpha,
                      aqe_anneal_to=aqe_anneal_to, bcgd_rho=bcgd_rho, out=out, device=device,
                      resume=resume, export=not no_export, progress=not quiet)
    try:
        result = run_train(cfg)
    except (QCompileError, ValueError) as e:
        raise click.ClickException(str(e)) from None
    if result.out_dir is not None and result.extra["trainer"].rank == 0:
        click.echo(f"test accuracy {result.test_acc:.4f}; outputs in {result.out_dir}"
                   + (f"; ONNX {result.onnx_path}" if result.onnx_path else ""))


if __name__ == "__main__":
    train()
