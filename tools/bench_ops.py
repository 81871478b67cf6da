"""Per-layer benchmark: XnorConv (each kernel variant this CPU runs) vs onnxruntime's float Conv.

Shapes are ResNet-18's 3x3 layers at 224x224, batch 1. Each (layer, threads) pair builds one
session per variant (the node attribute `kernel`) and one float Conv session,
then times them in alternating rounds so drift hits all alike; the median of the rounds is kept.
Writes JSON (times in ms and float-Conv / XnorConv speed ratios) to --out, with each XnorConv
variant's measured microkernel ceiling (qcompile_popcount_ceiling: the inner loop on L1- or
register-resident data) and the fraction of it each 1-thread XnorConv layer reaches.

Also times BitSerialConv 2/2 (2 unsigned activation planes, 2 two's-complement weight planes) on
a 3x3 128->128 28x28 layer against float Conv the same way (--bitserial, on by default), and with
--baseline-lib OLD.so every XnorConv/BitSerialConv variant a second time from another build of
the library ("<variant>@baseline"), in the same alternating rounds: before/after side by side.
ShiftConv 3/3 (AQE's power-of-two activations and weights, quantized inside the op from the
float input) on the same 128->128 28x28 layer (--shift, on by default), each shift kernel this
CPU runs (portable shift-and-add, avx2 int8 multiply-add; the `kernel` attribute again).

    python tools/bench_ops.py --out runs/bench_ops.json
    python tools/bench_ops.py --threads 1 --baseline-lib /tmp/base/libqcompile_ops.so
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from machine_info import cpu_model  # tools/ is on sys.path when run as a script
from onnx import TensorProto, helper

from qcompile import runtime
from qcompile.ops import bitserial, packing, shift

# name, channels, spatial size (ResNet-18 3x3 convolutions at 224x224 input)
LAYERS = [
    ("conv2_x 56x56x64", 64, 56),
    ("conv3_x 28x28x128", 128, 28),
    ("conv4_x 14x14x256", 256, 14),
    ("conv5_x 7x7x512", 512, 7),
]


def _model(nodes, inputs, inits, opsets) -> bytes:
    graph = helper.make_graph(
        nodes,
        "bench",
        [helper.make_tensor_value_info(n, t, None) for n, t in inputs],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets])
    model.ir_version = 8
    return model.SerializeToString()


def float_conv_model(w: np.ndarray) -> bytes:
    node = helper.make_node("Conv", ["X", "W"], ["Y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    inits = [onnx.numpy_helper.from_array(w, "W")]
    return _model([node], [("X", TensorProto.FLOAT)], inits, [("", 17)])


def qcompile_conv_model(op: str, w_packed: np.ndarray, c: int, x_type: int, **attrs) -> bytes:
    """One qcompile 3x3 conv op (X, packed W, scale 1, bias 0), pads 1, as a model."""
    m = w_packed.shape[0]
    inits = [
        onnx.numpy_helper.from_array(w_packed, "W"),
        onnx.numpy_helper.from_array(np.ones(m, np.float32), "scale"),
        onnx.numpy_helper.from_array(np.zeros(m, np.float32), "bias"),
    ]
    node = helper.make_node(
        op, ["X", "W", "scale", "bias"], ["Y"], domain="qcompile",
        in_channels=c, kernel_shape=[3, 3], pads=[1, 1, 1, 1], **attrs,
    )
    return _model([node], [("X", x_type)], inits, [("", 17), ("qcompile", 1)])


def xnor_conv_model(w: np.ndarray) -> bytes:
    return qcompile_conv_model("XnorConv", packing.pack_conv_weights(w), w.shape[1], TensorProto.UINT64)


def bitserial_conv_model(wp: np.ndarray, c: int, act_coeffs, weight_coeffs) -> bytes:
    return qcompile_conv_model("BitSerialConv", wp, c, TensorProto.UINT64, act_coeffs=list(act_coeffs),
                               weight_coeffs=list(weight_coeffs), weight_offset=0)


def shift_conv_model(w_packed: np.ndarray, c: int, thresholds) -> bytes:
    return qcompile_conv_model("ShiftConv", w_packed, c, TensorProto.FLOAT, act_mode="pow2",
                               act_thresholds=[float(t) for t in thresholds])


# AQE 3-bit: |x| thresholds 2^-2.5, 2^-1.5, 2^-0.5 -> {0, ±¼, ±½, ±1}
AQE3_THRESHOLDS = [2.0**-2.5, 2.0**-1.5, 2.0**-0.5]

BASELINE = "@baseline"


def _session(
    model: bytes, threads: int, variant: str | None, library: str | None = None,
    env: str = "QCOMPILE_KERNEL",
) -> ort.InferenceSession:
    """A session whose qcompile nodes run kernel variant `variant` (their `kernel` attribute).
    A "@baseline" suffix: from `library`, an older build that may predate the attribute, so the
    variant is forced there through its override variable `env` instead."""
    old = os.environ.get(env)
    try:
        if variant and variant.endswith(BASELINE):
            so = ort.SessionOptions()
            so.register_custom_ops_library(library)
            so.intra_op_num_threads = threads
            os.environ[env] = variant[: -len(BASELINE)]
        else:
            so = runtime.session_options(threads)
            model = runtime.with_kernel(model, variant)
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        return ort.InferenceSession(model, sess_options=so, providers=["CPUExecutionProvider"])
    finally:
        if old is None:
            os.environ.pop(env, None)
        else:
            os.environ[env] = old


def _time_once(sess: ort.InferenceSession, feeds: dict, inner: int) -> float:
    t0 = time.perf_counter()
    for _ in range(inner):
        sess.run(None, feeds)
    return (time.perf_counter() - t0) / inner * 1e3


def bench_layer(
    name: str, c: int, hw: int, threads: int, variants: list[str], rounds: int, min_ms: float,
    library: str | None = None, op: str = "XnorConv",
) -> dict:
    """Times float Conv and `op` (each variant) on one layer shape; alternating rounds."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, c, hw, hw)).astype(np.float32)
    w = rng.standard_normal((c, c, 3, 3)).astype(np.float32)
    if op == "XnorConv":
        model, xp = xnor_conv_model(w), packing.pack_activations(x)
    elif op == "ShiftConv":  # AQE W3/A3: weights {0, ±1, ±2, ±4} (units of ¼), float input
        ints = np.left_shift(1, rng.integers(0, 3, w.shape)) * rng.choice([-1, 0, 1], w.shape)
        model = shift_conv_model(shift.encode_weights(ints.reshape(c, -1)), c, AQE3_THRESHOLDS)
        xp = x
    else:  # BitSerialConv 2/2: unsigned 2-bit activations, two's complement 2-bit weights
        codes = rng.integers(-2, 2, size=w.shape)
        wp = bitserial.pack_weight_planes(codes, 2, True)
        model = bitserial_conv_model(wp, c, [1, 2], bitserial.plane_coeffs(2, True))
        acts = rng.integers(0, 4, size=x.shape).astype(np.float32)
        xp = bitserial.quantize_pack(acts, scale=1.0, bitwidth=2, signed=0)
    cases = {"float_conv": (_session(float_conv_model(w), threads, None), {"X": x})}
    for v in variants:
        # ShiftConv's kernels are forced with QCOMPILE_SHIFT_KERNEL
        env = "QCOMPILE_SHIFT_KERNEL" if op == "ShiftConv" else "QCOMPILE_KERNEL"
        cases[v] = (_session(model, threads, v, library, env), {"X": xp})
    inner = {}
    for key, (sess, feeds) in cases.items():
        for _ in range(3):
            sess.run(None, feeds)  # warm-up
        once = _time_once(sess, feeds, 1)
        inner[key] = max(1, int(min_ms / max(once, 1e-3)))
    samples: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(rounds):  # alternate: every case once per round
        for key, (sess, feeds) in cases.items():
            samples[key].append(_time_once(sess, feeds, inner[key]))
    med = {k: statistics.median(v) for k, v in samples.items()}
    best = {k: min(v) for k, v in samples.items()}
    return {
        "layer": name,
        "op": op,
        "shape": {"N": 1, "C": c, "M": c, "H": hw, "W": hw, "kernel": [3, 3], "pads": [1, 1, 1, 1]},
        "threads": threads,
        "median_ms": med,
        "speedup_vs_float_conv": {v: med["float_conv"] / med[v] for v in variants},
        # min over rounds: less sensitive to other load on a shared machine
        "min_ms": best,
        "speedup_vs_float_conv_min": {v: best["float_conv"] / best[v] for v in variants},
        "loadavg_1min_after": os.getloadavg()[0],
        "rounds": rounds,
        "runs_per_round": inner,
    }


def popcount_ceiling(variants: list[str], seconds: float = 0.5) -> dict[str, float]:
    """Binary MAC/s of each XnorConv variant's microkernel ceiling (qcompile_popcount_ceiling)."""
    import ctypes

    lib = ctypes.CDLL(runtime.get_library_path())
    lib.qcompile_popcount_ceiling.restype = ctypes.c_double
    lib.qcompile_popcount_ceiling.argtypes = [ctypes.c_char_p, ctypes.c_double]
    return {v: float(lib.qcompile_popcount_ceiling(v.encode(), seconds)) for v in variants}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/bench_ops.json", help="JSON output path")
    ap.add_argument("--threads", default="1,2", help="comma-separated intra-op thread counts")
    ap.add_argument("--rounds", type=int, default=9, help="alternating timing rounds (median kept)")
    ap.add_argument("--min-ms", type=float, default=30.0, help="time per sample, at least")
    ap.add_argument(
        "--variants", default=None, help="comma-separated variants (default: supported, not reference)"
    )
    ap.add_argument("--layers", default=None, help="comma-separated layer indices 0-3 (default: all)")
    ap.add_argument(
        "--bitserial", default=True, action=argparse.BooleanOptionalAction,
        help="also time BitSerialConv 2/2 on 3x3 128->128 28x28 (default: on)",
    )
    ap.add_argument(
        "--shift", default=True, action=argparse.BooleanOptionalAction,
        help="also time ShiftConv 3/3 (AQE power-of-two) on 3x3 128->128 28x28 (default: on)",
    )
    ap.add_argument(
        "--baseline-lib", default=None,
        help="another libqcompile_ops.so: its variants race too, as '<variant>@baseline'",
    )
    args = ap.parse_args(argv)

    table = runtime.kernel_table("XnorConv")
    runnable = runtime.kernel_variants("XnorConv")
    if args.variants:
        variants = args.variants.split(",")
        for v in variants:
            if v not in runnable:
                ap.error(f"expected a supported variant ({', '.join(runnable)}), got {v!r}")
    else:
        variants = [v for v in runnable if v != "reference"]
    layers = [LAYERS[int(i)] for i in args.layers.split(",")] if args.layers else LAYERS
    threads = [int(t) for t in args.threads.split(",")]

    contenders = list(variants)
    if args.baseline_lib:
        contenders += [v + BASELINE for v in variants]
    jobs = [(name, c, hw, "XnorConv") for name, c, hw in layers]
    if args.bitserial:
        jobs.append(("bitserial 2/2 28x28x128", 128, 28, "BitSerialConv"))
    if args.shift:
        jobs.append(("shift 3/3 28x28x128", 128, 28, "ShiftConv"))
    shift_kernels = runtime.kernel_variants("ShiftConv")[::-1]  # portable first, as before
    # Each XnorConv variant's measured microkernel ceiling (binary MAC/s of its inner loop on
    # one core, L1- or register-resident; avx2_lut: the vpshufb table lookup's), and below the
    # fraction of it each 1-thread XnorConv layer reaches (avx2 / avx512vpopcnt switch to the LUT
    # kernel on some layers, where the fraction is still of their own row kernel's ceiling).
    ceilings = popcount_ceiling([v for v in variants if v in runtime.kernel_variants("XnorConv")])
    load_before = os.getloadavg()[0]
    results = []
    for name, c, hw, op in jobs:
        for t in threads:
            # ShiftConv: its own kernels (a baseline library may predate them)
            variants_shown = shift_kernels if op == "ShiftConv" else [
                v for v in contenders if v.split("@")[0] in runtime.kernel_variants(op)
            ]
            r = bench_layer(
                name, c, hw, t, variants_shown, args.rounds, args.min_ms, args.baseline_lib, op
            )
            if op == "XnorConv":
                macs = c * c * 9 * hw * hw
                r["G_binary_mac_per_s"] = {v: macs / r["median_ms"][v] / 1e6 for v in variants_shown}
                r["fraction_of_ceiling"] = {
                    v: macs / (r["median_ms"][v] * 1e-3) / ceilings[v]
                    for v in variants_shown if ceilings.get(v) and t == 1
                }
            results.append(r)
            med, ratio = r["median_ms"], r["speedup_vs_float_conv"]
            ratio_min = r["speedup_vs_float_conv_min"]
            ratios = "  ".join(
                f"{v} {med[v]:.3f} ms ({ratio[v]:.1f}x, min {ratio_min[v]:.1f}x)"
                for v in variants_shown
            )
            line = f"{name:20s} threads={t}  float_conv {med['float_conv']:.3f} ms  {ratios}"
            if r.get("fraction_of_ceiling"):
                line += "  of ceiling: " + " ".join(
                    f"{v} {f:.0%}" for v, f in r["fraction_of_ceiling"].items()
                )
            print(line, flush=True)

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "tool": "tools/bench_ops.py",
        "onnxruntime": ort.__version__,
        "machine": {
            "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
            "cpu_model": cpu_model(),
        },
        "variants": [{"name": v.name, "isa": v.isa, "supported": v.supported} for v in table],
        "default_variant": runtime.selected_kernel("XnorConv"),
        "ratio": "float Conv time / op time (same shape and threads); > 1: the op is faster",
        "baseline_lib": args.baseline_lib,
        "loadavg_1min_before": load_before,
        "ceiling_binary_macs_per_s": ceilings,
        "results": results,
    }
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return 0




if __name__ == "__main__":
    sys.exit(main())
