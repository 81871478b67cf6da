"""Speed benchmark (issue #5): qcompile vs onnxruntime fp32 and int8, side by side in one process.

Per layer (ResNet-18's 3x3 shapes at 224 and the AQE ConvNet's), batch 1, 1 and 2 threads:
  fp32  onnxruntime Conv
  int8  onnxruntime QDQ model from onnxruntime.quantization (per-channel s8 weights, u8 activations),
        which onnxruntime runs as QLinearConv
  ours  XnorConv reading packed activations (as between binary layers), per kernel variant
Runs alternate between the contenders in rounds; each figure is the median per-run time.
The machine's popcount ceiling (binary multiply-adds per second per core, per kernel variant) is
measured by the library's own microbenchmark, and each layer's achieved fraction of it reported.
Whole models: binary ResNet-18 and the AQE ConvNet compiled vs their float twins vs int8 twins.
Writes JSON and a PNG chart. Usage: python tools/bench.py [--out runs/bench] [--quick]
"""

from __future__ import annotations

import ctypes
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import click
import numpy as np
import onnx
from onnx import TensorProto, helper

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_models
from machine_info import cpu_model

from qcompile import runtime
from qcompile.compiler import compile as compile_model
from qcompile.ops.packing import pack_activations, pack_conv_weights

RESNET_LAYERS = [("resnet18 conv2_x", 64, 56), ("resnet18 conv3_x", 128, 28), ("resnet18 conv4_x", 256, 14),
                 ("resnet18 conv5_x", 512, 7)]
CONVNET_LAYERS = [("convnet conv2", 32, 28), ("convnet conv4", 64, 14), ("convnet conv6", 128, 7)]




def float_conv_model(c: int, hw: int, rng) -> onnx.ModelProto:
    w = rng.standard_normal((c, c, 3, 3)).astype(np.float32)
    node = helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    graph = helper.make_graph([node], "conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, hw, hw])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, c, hw, hw])],
                              [onnx.numpy_helper.from_array(w, "w")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def xnor_conv_model(c: int, hw: int, rng) -> onnx.ModelProto:
    w = pack_conv_weights(rng.standard_normal((c, c, 3, 3)).astype(np.float32))
    inits = [onnx.numpy_helper.from_array(w, "w"), onnx.numpy_helper.from_array(np.ones(c, np.float32), "s"),
             onnx.numpy_helper.from_array(np.zeros(c, np.float32), "b")]
    node = helper.make_node("XnorConv", ["x", "w", "s", "b"], ["y"], domain="qcompile", in_channels=c,
                            kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    words = (c + 63) // 64
    graph = helper.make_graph([node], "xnor", [helper.make_tensor_value_info("x", TensorProto.UINT64, [1, hw, hw, words])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, c, hw, hw])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("qcompile", 1)])


def int8_model(float_model: onnx.ModelProto, input_shape, rng, samples: int = 8) -> onnx.ModelProto:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self):
            name = float_model.graph.input[0].name
            self.items = iter([{name: rng.standard_normal(input_shape).astype(np.float32)} for _ in range(samples)])

        def get_next(self):
            return next(self.items, None)

    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "f.onnx", Path(tmp) / "q.onnx"
        onnx.save(float_model, src)
        quantize_static(str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        return onnx.load(dst)


def session(model: onnx.ModelProto, threads: int, variant: str | None = None):
    """A session whose qcompile nodes run kernel variant `variant` (None: their default)."""
    return runtime.InferenceSession(runtime.with_kernel(model, variant), threads=threads)


def race(contenders: dict[str, tuple[object, dict]], rounds: int, budget_s: float = 0.05) -> dict[str, float]:
    """Median ms per run; each round runs every contender for about budget_s, in turn."""
    for sess, feeds in contenders.values():  # warm-up
        sess.run(None, feeds)
    samples: dict[str, list[float]] = {k: [] for k in contenders}
    for _ in range(rounds):
        for name, (sess, feeds) in contenders.items():
            t0 = time.perf_counter()
            n = 0
            while True:
                sess.run(None, feeds)
                n += 1
                if time.perf_counter() - t0 >= budget_s:
                    break
            samples[name].append((time.perf_counter() - t0) * 1e3 / n)
    return {k: float(np.median(v)) for k, v in samples.items()}


def popcount_ceiling(variants) -> dict[str, float]:
    """Binary multiply-adds per second on one core, per variant, from the library's microbenchmark."""
    lib = ctypes.CDLL(runtime.get_library_path())
    fn = getattr(lib, "qcompile_popcount_ceiling", None)
    if fn is None:
        return {}
    fn.restype = ctypes.c_double
    fn.argtypes = [ctypes.c_char_p, ctypes.c_double]
    # the best of several short measurements: a ceiling is a maximum, and one sample on a shared
    # machine can land in a busy moment
    return {v: max(float(fn(v.encode(), 0.4)) for _ in range(5)) for v in variants}


def bench_layers(threads_list, rounds, quick) -> list[dict]:
    rng = np.random.default_rng(0)
    variants = [v for v in runtime.kernel_variants("XnorConv") if v != "reference"]
    rows = []
    layers = RESNET_LAYERS + CONVNET_LAYERS
    if quick:
        layers = layers[:1]
    for name, c, hw in layers:
        fmodel = float_conv_model(c, hw, rng)
        qmodel = int8_model(fmodel, (1, c, hw, hw), rng)
        xmodel = xnor_conv_model(c, hw, rng)
        x = rng.standard_normal((1, c, hw, hw)).astype(np.float32)
        xp = pack_activations(x)
        for threads in threads_list:
            contenders = {"fp32": (session(fmodel, threads), {"x": x}),
                          "int8": (session(qmodel, threads), {qmodel.graph.input[0].name: x})}
            for v in variants:
                contenders[v] = (session(xmodel, threads, v), {"x": xp})
            ms = race(contenders, rounds)
            macs = c * c * 9 * hw * hw
            rows.append({"layer": name, "C": c, "M": c, "H": hw, "W": hw, "threads": threads, "median_ms": ms,
                         "binary_macs": macs,
                         "speedup_vs_fp32": {v: ms["fp32"] / ms[v] for v in variants},
                         "speedup_vs_int8": {v: ms["int8"] / ms[v] for v in variants},
                         "int8_vs_fp32": ms["fp32"] / ms["int8"]})
            click.echo(f"{name:18s} {threads}T  fp32 {ms['fp32']:.3f} ms  int8 {ms['int8']:.3f} ms  " +
                       "  ".join(f"{v} {ms[v]:.3f} ms ({ms['fp32'] / ms[v]:.1f}x fp32, {ms['int8'] / ms[v]:.1f}x int8)"
                                 for v in variants))
    return rows


def bench_models_whole(threads_list, rounds, workdir: Path) -> list[dict]:
    rng = np.random.default_rng(1)
    rows = []
    for name, build in bench_models.MODELS.items():
        ref, twin = build(True), build(False)
        shape = [d.dim_value for d in twin.graph.input[0].type.tensor_type.shape.dim]
        compiled = compile_model(ref, None, check_parity=True)
        if not compiled.parity.passed:
            raise SystemExit(f"{name}: compiled model failed parity; not benchmarking it")
        int8 = int8_model(twin, shape, rng)
        x = rng.standard_normal(shape).astype(np.float32)
        sizes = {"float": twin.ByteSize(), "int8": int8.ByteSize(), "qcompile": compiled.model.ByteSize()}
        for threads in threads_list:
            contenders = {k: (session(m, threads), {m.graph.input[0].name: x})
                          for k, m in (("float", twin), ("int8", int8), ("qcompile", compiled.model))}
            ms = race(contenders, rounds, budget_s=0.2)
            rows.append({"model": name, "threads": threads, "median_ms": ms, "bytes": sizes,
                         "speedup_vs_float": ms["float"] / ms["qcompile"], "speedup_vs_int8": ms["int8"] / ms["qcompile"],
                         "int8_vs_float": ms["float"] / ms["int8"]})
            click.echo(f"{name:24s} {threads}T  float {ms['float']:.2f} ms  int8 {ms['int8']:.2f} ms  qcompile "
                       f"{ms['qcompile']:.2f} ms -> {ms['float'] / ms['qcompile']:.2f}x float, "
                       f"{ms['int8'] / ms['qcompile']:.2f}x int8; size {sizes['float'] / sizes['qcompile']:.1f}x smaller")
    return rows


def plot(layers: list[dict], models: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5), gridspec_kw={"width_ratios": [3, 1]})
    one = [r for r in layers if r["threads"] == 1]
    variants = list(one[0]["speedup_vs_fp32"]) if one else []
    labels = [r["layer"].replace("resnet18 ", "R18 ").replace("convnet ", "CN ") for r in one]
    xs = np.arange(len(one))
    width = 0.8 / (len(variants) + 1)
    axes[0].bar(xs, [r["int8_vs_fp32"] for r in one], width, label="onnxruntime int8")
    for i, v in enumerate(variants):
        axes[0].bar(xs + (i + 1) * width, [r["speedup_vs_fp32"][v] for r in one], width, label=f"qcompile {v}")
    axes[0].axhline(1, color="k", lw=0.8)
    axes[0].set_xticks(xs + width * len(variants) / 2, labels, rotation=20, fontsize=8)
    axes[0].set_ylabel("speed-up over onnxruntime fp32 Conv (1 thread)")
    axes[0].legend(fontsize=8)
    m1 = [r for r in models if r["threads"] == 1]
    axes[1].bar(np.arange(len(m1)) - 0.2, [r["int8_vs_float"] for r in m1], 0.4, label="int8")
    axes[1].bar(np.arange(len(m1)) + 0.2, [r["speedup_vs_float"] for r in m1], 0.4, label="qcompile")
    axes[1].set_xticks(np.arange(len(m1)), [r["model"] for r in m1], rotation=15, fontsize=8)
    axes[1].set_ylabel("whole-model speed-up over float (1 thread)")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


@click.command()
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/bench"), show_default=True)
@click.option("--rounds", type=click.IntRange(3), default=9, show_default=True)
@click.option("--quick", is_flag=True, help="One layer, one model round: checks the script runs.")
def main(out: Path, rounds: int, quick: bool) -> None:
    out.mkdir(parents=True, exist_ok=True)
    table = runtime.kernel_table("XnorConv")
    threads_list = (1,) if quick else (1, 2)
    result = {
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
                    "onnxruntime": __import__("onnxruntime").__version__,
                    "loadavg_before": os.getloadavg()[0]},
        "variants": [vars(v) for v in table],
        "default_variant": runtime.selected_kernel("XnorConv"),
    }
    ceiling = popcount_ceiling(runtime.kernel_variants("XnorConv"))
    result["popcount_ceiling_macs_per_s"] = ceiling
    for v, c in ceiling.items():
        click.echo(f"popcount ceiling {v}: {c / 1e9:.1f} G binary MAC/s per core")
    result["layers"] = bench_layers(threads_list, 3 if quick else rounds, quick)
    for row in result["layers"]:
        row["fraction_of_ceiling"] = {
            v: row["binary_macs"] / (row["median_ms"][v] * 1e-3) / (ceiling[v] * row["threads"])
            for v in row["speedup_vs_fp32"] if v in ceiling
        }
    result["models"] = [] if quick else bench_models_whole(threads_list, rounds, out)
    result["machine"]["loadavg_after"] = os.getloadavg()[0]
    (out / "bench.json").write_text(json.dumps(result, indent=2))
    if not quick:
        plot(result["layers"], result["models"], out / "bench.png")
    click.echo(f"wrote {out / 'bench.json'}" + ("" if quick else f" and {out / 'bench.png'}"))


if __name__ == "__main__":
    main()
