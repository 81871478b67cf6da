"""The main job end to end, on data that is here and nothing from the user.

1. train a small binary (W1/A1) ConvNet with AQE (smooth estimator) on Fashion-MNIST
(scikit-learn's digits when Fashion-MNIST is not installed), 2. export it to QONNX, 3. compile it
with qcompile, 4. verify the compiled model against the reference on real test images (accuracy
of both, number of differing predictions, max error), 5. time both side by side in onnxruntime.
Writes runs/demo/{model.onnx, model.q.onnx, summary.json}.
Usage, from the repository root: python -m tools.demo [--quick]
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import click
import numpy as np
from rich.console import Console

console = Console()


@click.command()
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("runs/demo"),
    show_default=True,
)
@click.option("--epochs", type=click.IntRange(1), default=2, show_default=True)
@click.option(
    "--subset",
    type=click.IntRange(100),
    default=10000,
    show_default=True,
    help="Training images used (Fashion-MNIST has 60000).",
)
@click.option("--quick", is_flag=True, help="A tiny run (one short epoch) to check the pipeline.")
def main(out: Path, epochs: int, subset: int, quick: bool) -> None:
    from qcompile.bench import bench_models
    from qcompile.cli import print_layer_table, print_parity
    from qcompile.compiler import compile as compile_model
    from qcompile.runtime import InferenceSession
    from qcompile.train import TrainConfig, load_dataset, train
    from qcompile.train.data import DatasetNotFoundError
    from qcompile.verify import verify

    try:
        load_dataset("fashion-mnist", test_subset=1)
        data = "fashion-mnist"
    except DatasetNotFoundError as exc:
        console.print(f"[yellow]{exc}[/]\nusing scikit-learn's digits instead")
        data = "digits"
    if quick:
        epochs, subset = 1, 2000
    t0 = time.perf_counter()
    console.rule(f"1-2. train a binary ConvNet (AQE, W1/A1) on {data}, export to QONNX")
    # AQE: the smooth surrogate sharpens over the run, so training ends close to the hard
    # quantizer that the test and the exported model use (docs/training.md)
    cfg = TrainConfig(
        model="convnet",
        data=data,
        method="aqe",
        wbits=1,
        abits=1,
        epochs=epochs,
        subset=subset if data == "fashion-mnist" else None,
        width=0.5,
        seed=0,
        out=str(out),
    )
    result = train(cfg)
    train_s = time.perf_counter() - t0
    console.print(
        f"PyTorch test accuracy {result.test_acc:.4f} after {epochs} epoch(s), {train_s:.0f} s"
    )

    console.rule("3. compile")
    compiled = compile_model(result.onnx_path, out / "model.q.onnx", wbits=1, abits=1)
    print_layer_table(compiled.rows, str(result.onnx_path))
    console.print(
        f"file size {compiled.input_bytes / 1024:.1f} KiB -> {compiled.output_bytes / 1024:.1f} KiB"
    )
    print_parity(compiled.parity)

    console.rule("4. verify on the test set")
    ds = load_dataset(data, test_subset=2000 if data == "fashion-mnist" else None)
    x, y = ds.x_test.numpy().astype(np.float32), ds.y_test.numpy()
    ref_sess = InferenceSession(str(result.onnx_path))
    comp_sess = InferenceSession(str(compiled.output_path))
    ref_pred = np.concatenate(
        [ref_sess.run(None, {"input": x[i : i + 256]})[0].argmax(1) for i in range(0, len(x), 256)]
    )
    comp_pred = np.concatenate(
        [comp_sess.run(None, {"input": x[i : i + 256]})[0].argmax(1) for i in range(0, len(x), 256)]
    )
    report = verify(result.onnx_path, compiled.output_path, {"input": x[:256]})
    print_parity(report)
    acc_ref, acc_comp = float((ref_pred == y).mean()), float((comp_pred == y).mean())
    differ = int((ref_pred != comp_pred).sum())
    console.print(
        f"test accuracy on {len(y)} images: reference {acc_ref:.4f}, compiled {acc_comp:.4f}; "
        f"{differ} predictions differ"
    )

    console.rule("5. benchmark (batch 1, medians of alternating runs)")
    timings = bench_models(compiled.output_path, result.onnx_path, threads=(1, 2), repeats=50)
    for r in timings:
        console.print(
            f"{r['threads']} thread(s): compiled {r['compiled_ms']:.3f} ms vs reference (float) "
            f"{r['reference_ms']:.3f} ms -> {r['speedup']:.2f}x"
        )
    summary = {
        "data": data,
        "epochs": epochs,
        "train_seconds": train_s,
        "pytorch_test_accuracy": result.test_acc,
        "reference_accuracy": acc_ref,
        "compiled_accuracy": acc_comp,
        "differing_predictions": differ,
        "test_images": len(y),
        "parity_passed": bool(report.passed),
        "max_abs_error": max(o.max_abs_error for o in report.outputs),
        "reference_bytes": compiled.input_bytes,
        "compiled_bytes": compiled.output_bytes,
        "bench": timings,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    console.print(f"wrote {out / 'summary.json'}")
    if not report.passed or differ:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
