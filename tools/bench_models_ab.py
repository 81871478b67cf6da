"""Compiled-vs-float latency with two builds of the op library, interleaved in one process.

For each compiled model: `qcompile.bench.bench_models(compiled, float twin)` (batch 1, 1 thread)
with the old library and with this checkout's, alternating, --rounds times; writes the
compiled/float ratios (and the raw timings) to --out. Before/after evidence for a kernel change.
When the compiler changed too, `--old-model NAME=PATH` gives the model the previous compiler wrote
(run on the old library; NAME's --model runs on this checkout's).

    python -m tools.bench_models_ab --old-lib /tmp/old/libqcompile_ops.so \
        --float RUN/float_reference.onnx --model w1a1=RUN/ste-w1a1/seed0/model.q.onnx --out ab.json
"""

from __future__ import annotations

import json
from pathlib import Path

import click

import qcompile.runtime as rt
from qcompile.bench import bench_models


@click.command()
@click.option("--old-lib", required=True, type=click.Path(exists=True, dir_okay=False),
              help="libqcompile_ops.so of the build to compare against")
@click.option("--float", "float_model", required=True, type=click.Path(exists=True, dir_okay=False),
              help="the float twin (plain onnxruntime)")
@click.option("--model", "models", multiple=True, required=True, metavar="NAME=PATH",
              help="a compiled model (repeatable)")
@click.option("--old-model", "old_models", multiple=True, metavar="NAME=PATH",
              help="the model NAME as the previous compiler wrote it, for the old library (repeatable)")
@click.option("--rounds", type=click.IntRange(1), default=3, show_default=True)
@click.option("--repeats", type=click.IntRange(1), default=300, show_default=True)
@click.option("--out", required=True, type=click.Path(dir_okay=False))
def main(old_lib: str, float_model: str, models: tuple[str, ...], old_models: tuple[str, ...], rounds: int,
         repeats: int, out: str) -> None:
    libs = {"before": old_lib, "after": rt.get_library_path()}
    before_paths = {}
    for spec in old_models:
        name, _, path = spec.partition("=")
        if not path or not Path(path).is_file():
            raise click.BadParameter(f"expected NAME=PATH of an existing file, got {spec!r}", param_hint="--old-model")
        before_paths[name] = path
    current = rt.get_library_path
    report: dict = {"libraries": libs, "float": float_model, "models": {}}
    try:
        for spec in models:
            name, _, path = spec.partition("=")
            if not path:
                raise click.BadParameter(f"expected NAME=PATH, got {spec!r}", param_hint="--model")
            runs: dict[str, list[dict]] = {k: [] for k in libs}
            for _ in range(rounds):
                for key, lib in libs.items():
                    rt.get_library_path = lambda lib=lib: lib  # sessions load this build
                    rt._library.cache_clear()  # and the variant queries ask it, not the last one
                    model = before_paths.get(name, path) if key == "before" else path
                    b = bench_models(model, float_model, threads=(1,), repeats=repeats)[0]
                    runs[key].append(b)
                    click.echo(f"{key:6} {name}: compiled/float {b['compiled_ms'] / b['reference_ms']:.3f}")
            report["models"][name] = {
                k: {"compiled_over_float": [b["compiled_ms"] / b["reference_ms"] for b in rs], "runs": rs}
                for k, rs in runs.items()
            }
    finally:
        rt.get_library_path = current
        rt._library.cache_clear()
    Path(out).write_text(json.dumps(report, indent=2) + "\n")
    click.echo(f"wrote {out}")


if __name__ == "__main__":
    main()
