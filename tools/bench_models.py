"""Whole models for tools/bench.py, built as QONNX graphs, each with a float twin; run as a script,
the fixed whole-model benchmark set (qcompile vs float twin vs onnxruntime int8 QDQ).

- binary ResNet-18 at 224x224 (ImageNet layout; float 7x7 stem and classifier; every 3x3 conv binary
  with a float residual around it, Bi-Real style; float 1x1 downsampling shortcuts);
- the AQE paper's ConvNet (6 conv + 3 FC) at 28x28, conv -> pool -> BN -> HardTanh -> sign blocks.
The float twin has the same layers with float weights (the quantized values) and no quantizers.
"""

from __future__ import annotations

import numpy as np
import onnx

from qcompile.onnx_builder import GraphBuilder


class TwinBuilder(GraphBuilder):
    """A GraphBuilder whose quantizers vanish when `binary` is False (the float twin)."""

    def __init__(self, binary: bool, seed: int = 0):
        super().__init__(seed)
        self.binary = binary

    def act(self, x: str) -> str:
        return self.bipolar(x) if self.binary else x

    def conv(
        self, x: str, cin: int, cout: int, k: int, stride: int = 1, binary: bool = True
    ) -> str:
        w = (self.rng.standard_normal((cout, cin, k, k)) * np.sqrt(2 / (cin * k * k))).astype(
            np.float32
        )
        if binary:
            alpha = np.abs(w).reshape(cout, -1).mean(1).reshape(cout, 1, 1, 1).astype(np.float32)
            wq = np.where(w >= 0, alpha, -alpha).astype(np.float32)
            weight = self.bipolar(self.const(w, "w"), alpha) if self.binary else self.const(wq, "w")
            x = self.act(x)
        else:
            weight = self.const(w, "w")
        p = k // 2
        return self.op(
            "Conv", [x, weight], kernel_shape=[k, k], strides=[stride, stride], pads=[p, p, p, p]
        )


def resnet18(binary: bool, size: int = 224, classes: int = 1000) -> onnx.ModelProto:
    g = TwinBuilder(binary)
    x = g.conv("input", 3, 64, 7, stride=2, binary=False)
    x = g.op("Relu", [g.bn(x, 64)])
    x = g.op("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    cin = 64
    for stage, cout in enumerate((64, 128, 256, 512)):
        for block in range(2):
            stride = 2 if stage > 0 and block == 0 else 1
            shortcut = x
            if stride != 1 or cin != cout:
                shortcut = g.op("AveragePool", [x], kernel_shape=[2, 2], strides=[2, 2])
                shortcut = g.bn(g.conv(shortcut, cin, cout, 1, binary=False), cout)
            y = g.op("Add", [g.bn(g.conv(x, cin, cout, 3, stride), cout), shortcut])
            y = g.op("Add", [g.bn(g.conv(y, cout, cout, 3), cout), y])
            x, cin = y, cout
    x = g.op("GlobalAveragePool", [x])
    x = g.op("Flatten", [x])
    fc = g.const(g.rng.standard_normal((classes, 512)).astype(np.float32) * 0.05)
    x = g.op("Gemm", [x, fc, g.const(np.zeros(classes, np.float32))], transB=1)
    return g.model({"input": [1, 3, size, size]}, [x])


def aqe_convnet(
    binary: bool, size: int = 28, classes: int = 10, width: float = 1.0
) -> onnx.ModelProto:
    g = TwinBuilder(binary, seed=1)
    chans = [max(1, round(c * width)) for c in (32, 32, 64, 64, 128, 128)]
    x, cin = "input", 1
    for i, c in enumerate(chans):
        x = g.conv(x, cin, c, 3, binary=i > 0)  # raw image into the first conv: not quantized
        if i % 2 == 1:
            x = g.op("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2])
        x = g.bn(x, c)
        x = g.op("Clip", [x, g.const(np.float32(-1)), g.const(np.float32(1))])
        cin = c
    x = g.op("Flatten", [x])
    flat = cin * (size // 8) ** 2
    hidden = max(1, round(384 * width))
    for k_in, k_out, last in (
        (flat, hidden, False),
        (hidden, hidden, False),
        (hidden, classes, True),
    ):
        w = (g.rng.standard_normal((k_out, k_in)) * np.sqrt(1 / k_in)).astype(np.float32)
        if last:
            x = g.op("Gemm", [x, g.const(w), g.const(np.zeros(k_out, np.float32))], transB=1)
        else:
            alpha = np.abs(w).mean(1, keepdims=True).astype(np.float32)
            weight = (
                g.bipolar(g.const(w), alpha)
                if binary
                else g.const(np.where(w >= 0, alpha, -alpha).astype(np.float32))
            )
            x = g.op("Gemm", [g.act(x), weight], transB=1)
            x = g.op("Clip", [g.bn(x, k_out), g.const(np.float32(-1)), g.const(np.float32(1))])
    return g.model({"input": [1, 1, size, size]}, [x])


MODELS = {"binary ResNet-18 (224)": resnet18, "AQE ConvNet (28)": aqe_convnet}


# ---- the fixed whole-model benchmark set (issue #13): python tools/bench_models.py --out runs/models ----

BNN_PYNQ = ("cnv_1w1a", "cnv_1w2a", "cnv_2w2a", "lfc_1w1a", "sfc_2w2a", "tfc_2w2a", "resnet18_4w4a")
CONVNET_WIDTHS = ((1, 1), (1, 2), (2, 2), (1, 4), (3, 3))


def _export_brevitas(model, shape, path) -> onnx.ModelProto:
    import torch
    from brevitas.export import export_qonnx

    with torch.no_grad():
        export_qonnx(model.eval(), torch.randn(*shape), export_path=str(path), dynamo=False)
    return onnx.load(path)


def brevitas_bnn(cfg: str, workdir) -> onnx.ModelProto:
    """A Brevitas BNN-PYNQ example model, random weights (pretrained=False), exported to QONNX."""
    import brevitas_examples.bnn_pynq.models as bnn

    shape = (1, 1, 28, 28) if "fc" in cfg else (1, 3, 32, 32)
    return _export_brevitas(getattr(bnn, cfg)(pretrained=False), shape, workdir / f"{cfg}.onnx")


def brevitas_mobilenet(workdir) -> onnx.ModelProto:
    from brevitas_examples.imagenet_classification.models import quant_mobilenet_v1_4b

    return _export_brevitas(quant_mobilenet_v1_4b(pretrained=False), (1, 3, 224, 224), workdir / "mobilenet.onnx")


def trainer_convnet(wbits: int, abits: int, workdir) -> onnx.ModelProto:
    """The trainer's Fashion-MNIST ConvNet, untrained, quantized by STE at wbits/abits, exported."""
    from qcompile.train.export import export_onnx
    from qcompile.train.models import build_model

    model, _ = build_model("convnet", (1, 28, 28), 10, wbits=wbits, abits=abits, method="ste")
    return onnx.load(export_onnx(model.eval(), workdir / f"convnet_w{wbits}a{abits}.onnx", (1, 28, 28)))


def bench_set(workdir) -> dict:
    """name -> a function returning the reference (QONNX) model."""
    sets = {"binary ResNet-18 (224)": lambda: resnet18(True)}
    sets.update({cfg: (lambda cfg=cfg: brevitas_bnn(cfg, workdir)) for cfg in BNN_PYNQ})
    sets["quant_mobilenet_v1_4b"] = lambda: brevitas_mobilenet(workdir)
    sets.update({f"convnet W{w}A{a}": (lambda w=w, a=a: trainer_convnet(w, a, workdir)) for w, a in CONVNET_WIDTHS})
    return sets


def _prepare(proto: onnx.ModelProto) -> onnx.ModelProto:
    """The model with batch 1 on its input (exports have a dynamic batch) and its initializers out
    of the graph inputs (Brevitas's TorchScript export lists them there too; onnxruntime then may
    not constant-fold them, which would slow the float and int8 twins unfairly)."""
    inits = {t.name for t in proto.graph.initializer}
    keep = [i for i in proto.graph.input if i.name not in inits]
    del proto.graph.input[:]
    proto.graph.input.extend(keep)
    for d in proto.graph.input[0].type.tensor_type.shape.dim[:1]:
        d.Clear()
        d.dim_value = 1
    return proto


def race(contenders: dict, rounds: int, budget_s: float) -> dict[str, dict[str, float]]:
    """Per contender: median ms per run over rounds, and the spread (25th-75th percentile); the
    contenders alternate, each round running every one for about budget_s."""
    import time

    for sess, feeds in contenders.values():  # warm-up
        sess.run(None, feeds)
    samples: dict[str, list[float]] = {k: [] for k in contenders}
    for _ in range(rounds):
        for name, (sess, feeds) in contenders.items():
            t0, n = time.perf_counter(), 0
            while n == 0 or time.perf_counter() - t0 < budget_s:
                sess.run(None, feeds)
                n += 1
            samples[name].append((time.perf_counter() - t0) * 1e3 / n)
    return {k: {"median_ms": float(np.median(v)), "p25_ms": float(np.percentile(v, 25)),
                "p75_ms": float(np.percentile(v, 75))} for k, v in samples.items()}


def _compiled_without_direct_conv(ref: onnx.ModelProto, tune: bool) -> onnx.ModelProto:
    """The model compiled with its int8 convs left on onnxruntime's ConvInteger (QCOMPILE_DIRECT_CONV=0)."""
    import os

    from qcompile.compiler import compile as compile_model
    from qcompile.runtime import DIRECT_CONV_ENV

    before = os.environ.get(DIRECT_CONV_ENV)
    os.environ[DIRECT_CONV_ENV] = "0"
    try:
        return compile_model(ref, None, check_parity=True, tune=tune).model
    finally:
        if before is None:
            del os.environ[DIRECT_CONV_ENV]
        else:
            os.environ[DIRECT_CONV_ENV] = before


def bench_one(name: str, build, threads_list, rounds: int, budget_s: float, tune: bool,
              direct_ab: bool = False) -> list[dict]:
    from qcompile import runtime
    from qcompile.compiler import compile as compile_model
    from qcompile.costmodel import float_twin
    from tools.bench import int8_model  # here, not at the top: tools.bench imports this module

    try:
        ref = _prepare(build())
        compiled = compile_model(ref, None, check_parity=True, tune=tune)
    except Exception as exc:  # a model the compiler cannot take yet is a result, not a crash
        return [{"model": name, "error": f"not compilable: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}"}]
    if compiled.parity is not None and not compiled.parity.passed:
        return [{"model": name, "error": "compiled model failed parity"}]
    twin = float_twin(ref)
    shape = [d.dim_value or 1 for d in twin.graph.input[0].type.tensor_type.shape.dim]
    rng = np.random.default_rng(0)
    models = {"float": twin, "qcompile": compiled.model}
    if direct_ab and any(n.op_type.startswith("DirectConv") for n in compiled.model.graph.node):
        models["qcompile ConvInteger"] = _compiled_without_direct_conv(ref, tune)
    try:
        models["int8"] = int8_model(twin, shape, rng)
    except Exception as exc:
        int8_error = f"{type(exc).__name__}: {exc}"
    else:
        int8_error = None
    x = rng.standard_normal(shape).astype(np.float32)
    impls = sorted({r.impl.split(" ")[0] for r in compiled.rows if r.impl})
    rows = []
    for threads in threads_list:
        contenders = {k: (runtime.InferenceSession(m.SerializeToString(), threads=threads),
                          {m.graph.input[0].name: x}) for k, m in models.items()}
        ms = race(contenders, rounds, budget_s)
        row = {"model": name, "threads": threads, "times": ms, "impls": impls,
               "vs_float": ms["float"]["median_ms"] / ms["qcompile"]["median_ms"]}
        if "int8" in ms:
            row["vs_int8"] = ms["int8"]["median_ms"] / ms["qcompile"]["median_ms"]
        if "qcompile ConvInteger" in ms:  # the A/B of DirectConvInteger against onnxruntime's ConvInteger
            row["direct_vs_convinteger"] = ms["qcompile ConvInteger"]["median_ms"] / ms["qcompile"]["median_ms"]
        else:
            row["int8_error"] = int8_error
        rows.append(row)
    return rows


def validate_one(name: str, build, rounds: int, budget_s: float) -> dict:
    """The cost model against measurement on one model: compiled with the estimated choice (the
    default, no cached measurements) and with --tune's measured one; how many layers with a choice
    agree, and both against the float twin in one race (1 thread)."""
    from qcompile import runtime
    from qcompile.compiler import compile as compile_model
    from qcompile.costmodel import MeasuredCosts, estimated_costs, float_twin

    try:
        ref = _prepare(build())
        estimated = compile_model(ref, None, costs=estimated_costs())
        measured_costs = MeasuredCosts(measure=True)
        measured = compile_model(ref, None, costs=measured_costs)
        measured_costs.save()
    except Exception as exc:  # a model the compiler cannot take yet is a result, not a crash
        return {"model": name, "error": f"not compilable: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}"}
    failed = [k for k, r in (("estimated", estimated), ("measured", measured)) if r.parity and not r.parity.passed]
    if failed:
        return {"model": name, "error": f"failed parity: {', '.join(failed)}"}
    layers = []
    for e, m in zip(estimated.rows, measured.rows, strict=True):
        if e.options and len(e.options) > 1:
            layers.append({"layer": e.name, "estimated": e.impl, "measured": m.impl,
                           "estimated_ms": e.time_ms, "measured_ms": m.time_ms,
                           "float_ms_estimated": e.float_ms, "float_ms_measured": m.float_ms})
    twin = float_twin(ref)
    shape = [d.dim_value or 1 for d in twin.graph.input[0].type.tensor_type.shape.dim]
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    models = {"float": twin, "estimated": estimated.model, "measured": measured.model}
    ms = race({k: (runtime.InferenceSession(m.SerializeToString(), threads=1), {m.graph.input[0].name: x})
               for k, m in models.items()}, rounds, budget_s)
    return {"model": name, "times": ms, "layers": layers,
            "agree": sum(r["estimated"] == r["measured"] for r in layers), "choices": len(layers),
            "estimated_vs_float": ms["float"]["median_ms"] / ms["estimated"]["median_ms"],
            "measured_vs_float": ms["float"]["median_ms"] / ms["measured"]["median_ms"]}


def plot(rows: list[dict], path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    one = [r for r in rows if r.get("threads") == 1]
    fig, ax = plt.subplots(figsize=(max(6, 0.8 * len(one) + 2), 4.5))
    xs = np.arange(len(one))
    ax.bar(xs - 0.2, [r["vs_float"] for r in one], 0.4, label="qcompile / float twin")
    ax.bar(xs + 0.2, [r["vs_float"] / r["vs_int8"] if "vs_int8" in r else 0 for r in one], 0.4,
           label="onnxruntime int8 QDQ / float twin")
    ax.axhline(1, color="k", lw=0.8)
    ax.set_xticks(xs, [r["model"] for r in one], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("speed-up over the float twin (batch 1, 1 thread)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _main():
    import json
    import os
    from pathlib import Path

    import click

    from tools.machine_info import cpu_model

    @click.command()
    @click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/models"),
                  show_default=True)
    @click.option("--only", multiple=True, help="Benchmark only these models (repeatable; default: the whole set).")
    @click.option("--threads", type=click.IntRange(1), multiple=True, default=(1, 2), show_default=True)
    @click.option("--rounds", type=click.IntRange(1), default=7, show_default=True)
    @click.option("--budget", type=click.FloatRange(0.001), default=0.2, show_default=True,
                  help="Seconds each contender runs per round.")
    @click.option("--tune/--no-tune", default=True, show_default=True,
                  help="Choose each layer's implementation by timing it (qcompile --tune; cached).")
    @click.option("--direct-ab", is_flag=True,
                  help="Also race each model compiled with its int8 convs on onnxruntime's ConvInteger "
                       "(QCOMPILE_DIRECT_CONV=0) instead of qcompile's DirectConvInteger.")
    @click.option("--validate-costs", is_flag=True,
                  help="Instead: each model compiled with the cost model's estimated choice and with --tune's "
                       "measured one; layers that agree, both vs the float twin (1 thread).")
    def main(out: Path, only, threads, rounds, budget, tune, direct_ab, validate_costs) -> None:
        """Whole models compiled by qcompile vs their float twin vs onnxruntime int8 QDQ: JSON, PNG, table."""
        out.mkdir(parents=True, exist_ok=True)
        work = out / "models"
        work.mkdir(exist_ok=True)
        sets = bench_set(work)
        unknown = [n for n in only if n not in sets]
        if unknown:
            raise click.UsageError(f"--only {', '.join(unknown)}: expected one of {', '.join(sets)}")
        if validate_costs:
            _validate(out, {n: b for n, b in sets.items() if not only or n in only}, rounds, budget)
            return
        result = {"machine": {"cpu": cpu_model(), "cores": os.cpu_count(),
                              "onnxruntime": __import__("onnxruntime").__version__,
                              "loadavg_before": os.getloadavg()}, "rows": []}
        for name, build in sets.items():
            if only and name not in only:
                continue
            for row in bench_one(name, build, threads, rounds, budget, tune, direct_ab):
                result["rows"].append(row)
                if "error" in row:
                    click.echo(f"{name:24s} {row['error']}")
                    continue
                t = row["times"]
                int8 = f"{row['vs_int8']:.2f}x int8" if "vs_int8" in row else "int8: n/a"
                click.echo(f"{name:24s} {row['threads']}T  float {t['float']['median_ms']:.3f} ms  qcompile "
                           f"{t['qcompile']['median_ms']:.3f} ms [{t['qcompile']['p25_ms']:.3f}-"
                           f"{t['qcompile']['p75_ms']:.3f}] -> {row['vs_float']:.2f}x float, {int8}  "
                           f"({', '.join(row['impls'])})" + (f"; DirectConv {row['direct_vs_convinteger']:.2f}x "
                           "ConvInteger" if "direct_vs_convinteger" in row else ""))
        result["machine"]["loadavg_after"] = os.getloadavg()
        (out / "bench_models.json").write_text(json.dumps(result, indent=2))
        timed = [r for r in result["rows"] if "error" not in r]
        if timed:
            plot(timed, out / "bench_models.png")
        click.echo(f"wrote {out / 'bench_models.json'}" + (f" and {out / 'bench_models.png'}" if timed else ""))

    main()


def _validate(out, sets: dict, rounds: int, budget: float) -> None:
    import json
    import os

    import click

    from tools.machine_info import cpu_model

    result = {"machine": {"cpu": cpu_model(), "loadavg_before": os.getloadavg()}, "rows": []}
    agree = total = 0
    for name, build in sets.items():
        row = validate_one(name, build, rounds, budget)
        result["rows"].append(row)
        if "error" in row:
            click.echo(f"{name:24s} {row['error']}")
            continue
        agree, total = agree + row["agree"], total + row["choices"]
        differ = "; ".join(f"{r['layer']} {r['estimated']}/{r['measured']}" for r in row["layers"]
                           if r["estimated"] != r["measured"])
        click.echo(f"{name:24s} {row['agree']}/{row['choices']} layers agree; vs float: estimated "
                   f"{row['estimated_vs_float']:.2f}x, measured {row['measured_vs_float']:.2f}x"
                   + (f"  (estimated/measured: {differ})" if differ else ""))
    result["machine"]["loadavg_after"] = os.getloadavg()
    click.echo(f"all: {agree}/{total} layers agree")
    (out / "validate_costs.json").write_text(json.dumps(result, indent=2))
    click.echo(f"wrote {out / 'validate_costs.json'}")


if __name__ == "__main__":
    _main()
