"""Depthwise 3x3 layers at MobileNet v1's shapes (224x224 input, batch 1): qcompile's
DepthwiseConvInteger (each kernel variant this CPU runs) and DepthwiseConvRequantize (sums ->
next layer's 4-bit codes) against onnxruntime's depthwise ConvInteger and its float depthwise
Conv, in alternating rounds (medians); JSON, a PNG and the table.

    python -m tools.bench_depthwise --out runs/bench_depthwise.json
"""

from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from qcompile import runtime
from tools.machine_info import cpu_model

# channels, input size, stride: MobileNet v1's depthwise layers (repeated shapes once)
SHAPES = [(32, 112, 1), (64, 112, 2), (128, 56, 1), (128, 56, 2), (256, 28, 1), (256, 28, 2), (512, 14, 1),
          (512, 14, 2), (1024, 7, 1)]


def _model(node, x_type, shape, inits, out_type) -> bytes:
    graph = helper.make_graph([node], "dw", [helper.make_tensor_value_info("x", x_type, shape)],
                              [helper.make_tensor_value_info("y", out_type, None)],
                              [numpy_helper.from_array(v, k) for k, v in inits.items()])
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("qcompile", 1)]
    return helper.make_model(graph, opset_imports=opsets).SerializeToString()


def contenders(c: int, hw: int, stride: int, rng) -> dict[str, tuple[bytes, np.ndarray]]:
    shape = [1, c, hw, hw]
    attrs = dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[stride, stride], group=c)
    ints = {"w": rng.integers(0, 16, (c, 1, 3, 3)).astype(np.uint8), "xzp": np.zeros(1, np.int8),
            "wzp": np.array([7], np.uint8)}
    rq = {"s": rng.uniform(0.01, 0.05, c).astype(np.float32), "b": rng.uniform(-1, 1, c).astype(np.float32),
          "ys": np.array([0.5], np.float32), "yzp": np.zeros(1, np.int8)}
    x8 = rng.integers(0, 16, shape).astype(np.int8)
    xf = rng.standard_normal(shape).astype(np.float32)
    out = {"float Conv": (_model(helper.make_node("Conv", ["x", "w"], ["y"], **attrs), TensorProto.FLOAT, shape,
                                 {"w": rng.standard_normal((c, 1, 3, 3)).astype(np.float32)}, TensorProto.FLOAT), xf),
           "ConvInteger": (_model(helper.make_node("ConvInteger", ["x", "w", "xzp", "wzp"], ["y"], **attrs),
                                  TensorProto.INT8, shape, ints, TensorProto.INT32), x8)}
    for kernel in runtime.kernel_variants("DepthwiseConvInteger"):
        node = helper.make_node("DepthwiseConvInteger", ["x", "w", "xzp", "wzp"], ["y"], domain="qcompile",
                                kernel=kernel, **attrs)
        out[f"DepthwiseConvInteger {kernel}"] = (_model(node, TensorProto.INT8, shape, ints, TensorProto.INT32), x8)
    node = helper.make_node("DepthwiseConvRequantize", ["x", "w", "xzp", "wzp", "s", "b", "ys", "yzp"], ["y"],
                            domain="qcompile", lo=0, hi=15, **attrs)
    out["DepthwiseConvRequantize"] = (_model(node, TensorProto.INT8, shape, {**ints, **rq}, TensorProto.INT8), x8)
    return out


def race_us(models: dict, threads: int, rounds: int, budget: float) -> dict[str, float]:
    """Median microseconds per run of each (model, input), by tools.bench_models.race."""
    from tools.bench_models import race

    sessions = {}
    for name, (model, x) in models.items():
        so = runtime.session_options()
        so.intra_op_num_threads = threads
        sessions[name] = (ort.InferenceSession(model, so, providers=["CPUExecutionProvider"]), {"x": x})
    return {k: v["median_ms"] * 1e3 for k, v in race(sessions, rounds, budget).items()}


def plot_us_rows(rows: list[dict], path: Path, threads: int) -> None:
    """A grouped bar chart (log scale) of rows [{"layer": name, "us": {contender: us}}] to path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(rows[0]["us"])
    fig, ax = plt.subplots(figsize=(11, 4))
    xs = np.arange(len(rows))
    for i, name in enumerate(names):
        ax.bar(xs + (i - len(names) / 2) * 0.8 / len(names), [r["us"][name] for r in rows], 0.8 / len(names), label=name)
    ax.set_xticks(xs, [r["layer"] for r in rows], rotation=20, fontsize=8)
    ax.set_ylabel(f"us per layer (batch 1, {threads} thread)")
    ax.set_yscale("log")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


@click.command()
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=Path("runs/bench_depthwise.json"))
@click.option("--threads", type=click.IntRange(1), default=1, show_default=True)
@click.option("--rounds", type=click.IntRange(1), default=7, show_default=True)
@click.option("--budget", type=click.FloatRange(0.001), default=0.1, show_default=True, help="Seconds per contender per round.")
def main(out: Path, threads: int, rounds: int, budget: float) -> None:
    """Depthwise int8 kernels vs onnxruntime's ConvInteger and float Conv: JSON, PNG, table."""
    rng = np.random.default_rng(0)
    rows = []
    for c, hw, stride in SHAPES:
        us = race_us(contenders(c, hw, stride, rng), threads, rounds, budget)
        rows.append({"layer": f"{c}x{hw}x{hw} s{stride}", "us": us})
        best = min((k for k in us if k.startswith("DepthwiseConvInteger")), key=us.get)
        print(f"{rows[-1]['layer']:>18}  " + "  ".join(f"{k} {v:8.1f} us" for k, v in us.items()) +
              f"  | ConvInteger/{best.split()[-1]} {us['ConvInteger'] / us[best]:.2f}x"
              f"  float/Requantize-fused {us['float Conv'] / us['DepthwiseConvRequantize']:.2f}x")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"cpu": cpu_model(), "threads": threads, "rounds": rounds, "rows": rows}, indent=1))
    plot_us_rows(rows, out.with_suffix(".png"), threads)
    print(f"wrote {out} and {out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
