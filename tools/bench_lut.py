"""A/B of the table-lookup (LUT) kernels at the op level, one process, alternating rounds.

For ResNet-18's 3x3 shapes and the matching 1x1 shapes (batch 1, 1 thread by default), times
onnxruntime fp32 Conv, onnxruntime int8 QDQ Conv (QuantizeLinear/DequantizeLinear around Conv,
fused by ORT), XnorConv on packed input under avx2 (its XOR-popcount kernel: QCOMPILE_LUT=0),
avx2_lut and avx512vpopcnt (when the CPU runs them), and BitSerialConv 2/2 under avx2 and
avx2_lut; prints medians and ratios, and writes them as JSON. The kernel-level figures and each
kernel's ceiling come from `bash tools/lut_check.sh bench` / `variants`.

    python tools/bench_lut.py --out runs/bench_lut.json --rounds 11
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from pathlib import Path

import numpy as np
import onnx
from bench_ops import _model, _session, _time_once  # tools/ is on sys.path as a script
from onnx import TensorProto, helper

from qcompile import runtime
from qcompile.ops import bitserial, packing

SHAPES = [(64, 3, 56), (128, 3, 28), (256, 3, 14), (512, 3, 7),
          (64, 1, 56), (128, 1, 28), (256, 1, 14), (512, 1, 7)]  # channels, kernel, size


def _init(a, name):
    return onnx.numpy_helper.from_array(np.asarray(a), name)


def _conv(op, k, inputs, domain="", **attrs):
    return helper.make_node(op, inputs, ["Y"], domain=domain, kernel_shape=[k, k],
                            pads=[k // 2] * 4, **attrs)


def _qdq_model(w, k) -> bytes:
    """int8 QDQ Conv: per-tensor uint8 activations, int8 weights, requantized output."""
    wq = np.clip(np.round(w / 0.02), -127, 127).astype(np.int8)
    nodes = [
        helper.make_node("QuantizeLinear", ["X", "xs", "xz"], ["Xq"]),
        helper.make_node("DequantizeLinear", ["Xq", "xs", "xz"], ["Xd"]),
        helper.make_node("DequantizeLinear", ["Wq", "ws", "wz"], ["Wd"]),
        helper.make_node("Conv", ["Xd", "Wd"], ["Yc"], kernel_shape=[k, k], pads=[k // 2] * 4),
        helper.make_node("QuantizeLinear", ["Yc", "ys", "yz"], ["Yq"]),
        helper.make_node("DequantizeLinear", ["Yq", "ys", "yz"], ["Y"]),
    ]
    inits = [_init(np.float32(0.05), "xs"), _init(np.uint8(128), "xz"), _init(wq, "Wq"),
             _init(np.float32(0.02), "ws"), _init(np.int8(0), "wz"),
             _init(np.float32(0.5), "ys"), _init(np.uint8(128), "yz")]
    return _model(nodes, [("X", TensorProto.FLOAT)], inits, [("", 17)])


def _qcompile_model(op, wp, c, k, **attrs) -> bytes:
    m = wp.shape[0]
    inits = [_init(wp, "W"), _init(np.ones(m, np.float32), "scale"),
             _init(np.zeros(m, np.float32), "bias")]
    node = _conv(op, k, ["X", "W", "scale", "bias"], "qcompile", in_channels=c, **attrs)
    return _model([node], [("X", TensorProto.UINT64)], inits, [("", 17), ("qcompile", 1)])


def bench_shape(c, k, hw, rounds, threads, variants) -> dict:
    rng = np.random.default_rng(0)
    w = rng.standard_normal((c, c, k, k)).astype(np.float32)
    x = rng.standard_normal((1, c, hw, hw)).astype(np.float32)
    fp32 = _model([_conv("Conv", k, ["X", "W"])], [("X", TensorProto.FLOAT)], [_init(w, "W")],
                  [("", 17)])
    xnor = _qcompile_model("XnorConv", packing.pack_conv_weights(w), c, k)
    codes = rng.integers(-2, 2, size=w.shape)
    w2a2 = _qcompile_model("BitSerialConv", bitserial.pack_weight_planes(codes, 2, True), c, k,
                           act_coeffs=[1, 2], weight_coeffs=list(bitserial.plane_coeffs(2, True)),
                           weight_offset=0)
    acts = rng.integers(0, 4, size=x.shape).astype(np.float32)
    x2 = bitserial.quantize_pack(acts, scale=1.0, bitwidth=2, signed=0)
    xp = packing.pack_activations(x)
    os.environ["QCOMPILE_LUT"] = "0"  # avx2 / avx512vpopcnt: their own kernels only
    try:
        cases = {"fp32": (_session(fp32, threads, None), {"X": x}),
                 "int8_qdq": (_session(_qdq_model(w, k), threads, None), {"X": x})}
        for v in variants:
            cases[f"xnor_{v}"] = (_session(xnor, threads, v), {"X": xp})
        for v in [v for v in variants if v.startswith("avx2")]:
            cases[f"w2a2_{v}"] = (_session(w2a2, threads, v), {"X": x2})
    finally:
        del os.environ["QCOMPILE_LUT"]
    inner = {}
    for key, (sess, feeds) in cases.items():
        for _ in range(2):
            sess.run(None, feeds)
        inner[key] = max(1, int(20 / max(_time_once(sess, feeds, 1), 1e-3)))
    samples: dict[str, list[float]] = {key: [] for key in cases}
    for _ in range(rounds):  # alternate: every case once per round
        for key, (sess, feeds) in cases.items():
            samples[key].append(_time_once(sess, feeds, inner[key]))
    med = {key: statistics.median(v) for key, v in samples.items()}
    return {"C": c, "M": c, "H": hw, "W": hw, "kernel": k, "threads": threads, "median_ms": med,
            "vs_fp32": {key: med["fp32"] / t for key, t in med.items()},
            "vs_int8_qdq": {key: med["int8_qdq"] / t for key, t in med.items()},
            "G_binary_mac_per_s": {key: c * c * k * k * hw * hw / t / 1e6
                                   for key, t in med.items() if key.startswith("xnor")},
            "loadavg_1min_after": os.getloadavg()[0]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/bench_lut.json")
    ap.add_argument("--rounds", type=int, default=11)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    have = set(runtime.kernel_variants("XnorConv"))
    variants = [v for v in ("avx2", "avx2_lut", "avx512vpopcnt") if v in have]
    rows = []
    for c, k, hw in SHAPES:
        r = bench_shape(c, k, hw, args.rounds, args.threads, variants)
        rows.append(r)
        ratio = " ".join(f"{key} {r['median_ms'][key]:.3f}ms ({r['vs_fp32'][key]:.1f}x fp32, "
                         f"{r['vs_int8_qdq'][key]:.2f}x int8)" for key in r["median_ms"])
        print(f"{c}x{hw}x{hw} k{k}: {ratio}", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"rows": rows, "loadavg": os.getloadavg()}, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
