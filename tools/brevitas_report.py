"""The closing table of issue 11: every Brevitas example model, compiled, per model:

- the layers lowered, counted by the op they became, and the integer pools (TruncAvgPool2d);
- the layers left float and why (and any Trunc pool left float, with the node and attribute);
- max |error| and top-1 agreement against qonnx's executor (the ImageNet models at 224x224
  against the reference in onnxruntime unless --qonnx-imagenet: qonnx's numpy convs take minutes);
- file size compiled / reference; latency compiled vs the float twin (batch 1, 1 thread,
  alternating rounds in one process: tools.bench_models.race).

Random weights with non-degenerate BatchNorm statistics (nothing is downloaded). Usage, from the
repository root:   python -m tools.brevitas_report [--json runs/brevitas.json] [--models a,b]
"""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from pathlib import Path

import click
import numpy as np
import onnx

BNN_PYNQ = ("cnv_1w1a", "cnv_1w2a", "cnv_2w2a", "lfc_1w1a", "lfc_1w2a", "sfc_1w1a", "sfc_1w2a", "sfc_2w2a",
            "tfc_1w1a", "tfc_1w2a", "tfc_2w2a", "resnet18_4w4a")
IMAGENET = ("quant_mobilenet_v1_4b", "quant_proxylessnas_mobile14_4b")
MODELS = BNN_PYNQ + IMAGENET


def example_model(name: str):
    """The Brevitas example `name` with random weights, BatchNorm statistics and per-channel
    activation scales as after training."""
    import torch

    if name in IMAGENET:
        from brevitas_examples.imagenet_classification import models
    else:
        from brevitas_examples.bnn_pynq import models
    torch.manual_seed(0)
    model = getattr(models, name)(pretrained=False).eval()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d | torch.nn.BatchNorm1d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.normal_(0, 0.1)
    with torch.no_grad():  # per-channel activation scales as after training: not all equal
        for pname, p in model.named_parameters():
            if "act_quant" in pname and pname.endswith("scaling_impl.value") and p.numel() > 1:
                p.uniform_(0.5, 2.0)
    return model


def input_shape(name: str) -> tuple[int, ...]:
    """The smallest input each model takes: the ImageNet models' final 7x7 pool needs 224x224."""
    if name in IMAGENET:
        return (1, 3, 224, 224)
    return (1, 3, 32, 32) if name.startswith(("cnv", "resnet")) else (1, 1, 28, 28)


def export_example(name: str, path, dynamo: bool = False) -> tuple[str, np.ndarray]:
    """Export `name` to QONNX at `path`; (the path, the input the export traced)."""
    import torch
    from brevitas.export import export_qonnx

    model = example_model(name)
    x = torch.rand(input_shape(name)) * 2 - 1
    with torch.no_grad():
        export_qonnx(model, x, export_path=str(path), dynamo=dynamo)
    return str(path), x.numpy()


def qonnx_run(path: str, x: np.ndarray) -> np.ndarray:
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.util.cleanup import cleanup_model

    wrapper = cleanup_model(ModelWrapper(path))  # qonnx's executor wants every shape inferred
    return execute_onnx(wrapper, {wrapper.graph.input[0].name: x})[wrapper.graph.output[0].name]


def _session(model: onnx.ModelProto):
    from qcompile import runtime

    return runtime.InferenceSession(model.SerializeToString(), threads=1)


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    sess = _session(model)
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def report_one(name: str, workdir: Path, *, qonnx_imagenet: bool, rounds: int, budget_s: float) -> dict:
    from qcompile.compiler import compile as compile_model
    from qcompile.costmodel import float_twin
    from tools.bench_models import _prepare, race

    path, x = export_example(name, workdir / f"{name}.onnx")
    ref = onnx.load(path)
    result = compile_model(ref, None)
    compiled = result.model
    ours = _run(compiled, x)
    against = "qonnx" if name not in IMAGENET or qonnx_imagenet else "reference in onnxruntime"
    theirs = qonnx_run(path, x) if against == "qonnx" else _run(ref, x)
    lowered = Counter(r.op_after.split(" ")[0] for r in result.rows if r.op_after != r.op_before)
    pools_ref = sum(n.op_type == "Trunc" for n in ref.graph.node)
    pools_int = sum(n.op_type == "ReduceSum" for n in compiled.graph.node)
    float_layers = {r.name: r.note for r in result.rows if r.op_after == r.op_before}
    for refusal in result.report.refusals:  # a Trunc pool left float says why, node and attribute named
        if refusal.rule.startswith("Trunc") and refusal.rule.endswith("ToIntegerPool"):
            float_layers[refusal.node] = refusal.reason
    twin = _prepare(float_twin(ref))
    contenders = {k: (_session(m), {m.graph.input[0].name: x}) for k, m in (("compiled", compiled), ("float twin", twin))}
    ms = race(contenders, rounds, budget_s)
    return {
        "model": name, "input": list(x.shape), "widths": f"W{result.wbits}/A{result.abits}",
        "lowered": dict(sorted(lowered.items())),
        "integer_pools": f"{pools_int} of {pools_ref}" if pools_ref else "none in the model",
        "float_layers": float_layers,
        "compared_with": against,
        "max_abs_error": float(np.abs(ours - theirs).max()),
        "max_abs_reference": float(np.abs(theirs).max()),
        "top1_agreement": float(np.mean(ours.argmax(-1) == theirs.argmax(-1))),
        "parity_passed": bool(result.parity is not None and result.parity.passed),
        "size_ratio": result.output_bytes / result.input_bytes,
        "compiled_ms": ms["compiled"]["median_ms"], "float_twin_ms": ms["float twin"]["median_ms"],
        "speedup_vs_float": ms["float twin"]["median_ms"] / ms["compiled"]["median_ms"],
    }


def print_table(rows: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Brevitas example models compiled by qcompile (batch 1, 1 thread)")
    for col in ("model", "widths", "lowered", "pools", "left float (why)", "max |err| (vs)", "top-1", "size",
                "ms compiled / twin"):
        table.add_column(col, overflow="fold")
    for r in rows:
        if "error" in r:
            table.add_row(r["model"], "", f"[red]{r['error']}[/]", *[""] * 6)
            continue
        lowered = ", ".join(f"{k} {v}" for k, v in r["lowered"].items())
        left = "; ".join(f"{k}: {v}" for k, v in r["float_layers"].items()) or "none"
        vs = "qonnx" if r["compared_with"] == "qonnx" else "ORT ref"
        table.add_row(r["model"], r["widths"], lowered, r["integer_pools"], left,
                      f"{r['max_abs_error']:.2g} ({vs})", f"{r['top1_agreement']:.0%}", f"{r['size_ratio']:.2f}",
                      f"{r['compiled_ms']:.2f} / {r['float_twin_ms']:.2f} ({r['speedup_vs_float']:.2f}x)")
    Console(width=200).print(table)


@click.command()
@click.option("--models", default=",".join(MODELS), show_default=True, help="comma-separated model names")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None, help="write the rows here")
@click.option("--qonnx-imagenet", is_flag=True, help="compare the ImageNet models with qonnx's executor too (slow)")
@click.option("--rounds", default=5, show_default=True, type=click.IntRange(1, 100))
@click.option("--budget", "budget_s", default=0.2, show_default=True, type=click.FloatRange(0.01, 10.0),
              help="seconds per contender per round")
def main(models: str, json_path: str | None, qonnx_imagenet: bool, rounds: int, budget_s: float) -> None:
    """Compile every Brevitas example model and print the per-model table (JSON with --json)."""
    names = [m.strip() for m in models.split(",") if m.strip()]
    unknown = [m for m in names if m not in MODELS]
    if unknown:
        raise click.UsageError(f"expected model names from {', '.join(MODELS)}, got {', '.join(unknown)}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            try:
                rows.append(report_one(name, Path(tmp), qonnx_imagenet=qonnx_imagenet, rounds=rounds,
                                       budget_s=budget_s))
            except Exception as exc:  # a model that fails is a row of the table, not a crash of the tool
                rows.append({"model": name, "error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"})
    print_table(rows)
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps({"schema": "qcompile.brevitas_report/1", "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
