"""The command line of ``python -m tools.reproduce``."""

from __future__ import annotations

import shlex
import sys
import time
import traceback
from pathlib import Path

import click

from .experiments import EXPERIMENTS, GROUPS, select, settings_tag
from .report import write_outputs
from .runner import log, run_one


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--epochs", type=click.IntRange(1), default=4, show_default=True)
@click.option("--subset", type=click.IntRange(0), default=0, show_default=True,
              help="Training images per run (drawn with the run's seed; 0: all); the test set is "
                   "always complete.")
@click.option("--width", type=float, default=0.5, show_default=True,
              help="ConvNet width multiplier (1.0 = the AQE paper's Model A).")
@click.option("--seeds", type=click.IntRange(1), default=3, show_default=True,
              help="Seeds 0 … N−1 per experiment.")
@click.option("--only", multiple=True, metavar="NAME",
              help="Run only this experiment or group (repeatable); see --list.")
@click.option("--data", type=click.Choice(["fashion-mnist", "digits", "synthetic"]),
              default="fashion-mnist", show_default=True,
              help="digits / synthetic are for smoke tests.")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="Fashion-MNIST IDX directory (default /usr/share/datasets/fashion-mnist).")
@click.option("--out", type=click.Path(file_okay=False), default="docs/reproduce",
              show_default=True, help="Where results.md / results.json / the PNG go.")
@click.option("--runs", "runs_dir", type=click.Path(file_okay=False), default="runs/reproduce",
              show_default=True, help="Run directories: RUNS/<settings>/<experiment>/seed<k>.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True,
              help="Training device (cuda: the fast way where there is a GPU).")
@click.option("--threads", type=click.IntRange(1), default=2, show_default=True,
              help="torch threads for training.")
@click.option("--ort-threads", type=click.IntRange(1), default=2, show_default=True,
              help="onnxruntime threads for the test-set evaluation (latency is always 1).")
@click.option("--eval-batch", type=click.IntRange(1), default=500, show_default=True)
@click.option("--bench-repeats", type=click.IntRange(1), default=30, show_default=True)
@click.option("--readme", type=click.Path(dir_okay=False), default=None,
              help="Also refresh the claims table between '<!-- reproduce:begin -->' and "
                   "'<!-- reproduce:end -->' in this file (e.g. README.md).")
@click.option("--progress/--no-progress", default=None,
              help="Trainer progress bars (default: when stdout is a terminal).")
@click.option("--list", "list_only", is_flag=True, help="List the experiments and exit.")
@click.option("--report-only", is_flag=True,
              help="Only rebuild the outputs from the finished runs.")
@click.option("--reevaluate", is_flag=True,
              help="Redo export, compile, evaluation and timing of finished runs from their "
                   "trained checkpoints (no retraining): after a compiler or kernel change.")
def main(epochs: int, subset: int, width: float, seeds: int, only: tuple[str, ...], data: str,
         data_dir: str | None, out: str, runs_dir: str, device: str, threads: int,
         ort_threads: int,
         eval_batch: int, bench_repeats: int, readme: str | None, progress: bool | None,
         list_only: bool, report_only: bool, reevaluate: bool) -> None:
    """Train, compile, evaluate and time every experiment × seed; write tables, plot, JSON."""
    t_start = time.time()
    s = {"data": data, "data_dir": data_dir, "epochs": epochs, "subset": subset or None,
         "width": width, "seeds": seeds, "device": device, "threads": threads,
         "ort_threads": ort_threads,
         "eval_batch": eval_batch, "bench_repeats": bench_repeats,
         "progress": sys.stdout.isatty() if progress is None else progress}
    tag = settings_tag(s)
    root = Path(runs_dir) / tag
    chosen = select(only)
    if list_only:
        log(f"{'experiment':27} {'groups':18} {'method':21} {'W/A':8} status ({root})")
        for e in EXPERIMENTS:
            n = sum((root / e.name / f"seed{k}" / "result.json").is_file() for k in range(seeds))
            ov = " ".join([f"{k}={v}" for k, v in e.overrides]
                          + ([f"init_from={e.init_from}"] if e.init_from else []))
            log(f"{e.name:27} {','.join(e.groups):18} {e.method:21} {e.bits:8} "
                f"{n}/{seeds} done  {ov}")
        log("groups: " + "; ".join(f"{g.key} ({g.title})" for g in GROUPS))
        return
    command = "python -m tools.reproduce " + " ".join(
        [f"--epochs {epochs}", f"--subset {subset}", f"--width {width:g}", f"--seeds {seeds}",
         f"--data {data}"] + [f"--only {shlex.quote(o)}" for o in only]
        + ([f"--data-dir {shlex.quote(data_dir)}"] if data_dir else [])
        + [f"--threads {threads}"])
    argv = " ".join(shlex.quote(a) for a in sys.argv)
    import torch

    torch.set_num_threads(threads)
    failures: list[str] = []
    if not report_only:
        # seed-major: an interrupted run still leaves every experiment with its first seeds
        todo = [(e, k) for k in range(seeds) for e in chosen]
        log(f"reproduce: {len(chosen)} experiment(s) × {seeds} seed(s) = {len(todo)} runs "
            f"in {root}")
        for i, (e, k) in enumerate(todo, 1):
            done = root / e.name / f"seed{k}" / "result.json"
            if done.is_file() and not reevaluate:
                log(f"[{i}/{len(todo)}] {e.name} seed {k}: finished earlier, skipping")
                continue
            log(f"[{i}/{len(todo)}] {e.name} seed {k}")
            try:
                run_one(e, k, s, root, tag)
            except KeyboardInterrupt:
                log(f"interrupted during {e.name} seed {k}; its last checkpoint is kept: run "
                    f"the same command again to resume")
                raise SystemExit(130) from None
            except click.ClickException:
                raise
            except Exception as ex:
                traceback.print_exc()
                failures.append(f"{e.name} seed {k}: {type(ex).__name__}: {ex}")
                log(f"  {e.name} seed {k}: FAILED ({type(ex).__name__}: {ex})")
    summary = write_outputs(root, Path(out), s, command, argv, time.time() - t_start,
                            Path(readme) if readme else None)
    log(f"wrote {Path(out) / 'results.md'}, {Path(out) / 'results.json'}"
        + (f", {Path(out) / 'accuracy_vs_bits.png'}" if summary["n_runs"] else "")
        + f" ({summary['n_runs']} finished runs; {time.time() - t_start:.0f} s)")
    for c in summary["claims"]:
        if c["held"] is not None:
            log(f"  {c['claim']}: {c['verdict']}")
    if failures:
        log(f"{len(failures)} run(s) failed:\n  " + "\n  ".join(failures))
        raise SystemExit(1)
