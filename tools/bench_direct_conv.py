"""Int8 conv layers (CNV's, the Fashion-MNIST ConvNet's, ResNet-18's 3x3 and its strided ones, 1x1):
qcompile's DirectConvInteger (each kernel variant this CPU runs) and DirectConvRequantize (sums ->
next layer's 2-bit codes) against onnxruntime's ConvInteger (int8 codes x uint8 weights with a
zero point, the types the compiler emits), its QLinearConv (uint8 x int8, QDQ's fused int8 conv)
and its float Conv, in alternating rounds (medians); each variant's measured kernel ceiling (its
sum kernel on L1-resident data, qcompile_direct_conv_ceiling) and the fraction reached; JSON, a
PNG and the table.

    python -m tools.bench_direct_conv --out runs/bench_direct_conv.json
"""

from __future__ import annotations

import ctypes
import json
from pathlib import Path

import click
import numpy as np
from onnx import TensorProto, helper

from qcompile import runtime
from tools.bench_depthwise import _model, plot_us_rows, race_us
from tools.machine_info import cpu_model

# name, in channels, out channels, input size, kernel, pad, stride
SHAPES = [
    ("cnv 3->64 32", 3, 64, 32, 3, 0, 1),
    ("cnv 64->64 30", 64, 64, 30, 3, 0, 1),
    ("cnv 64->128 14", 64, 128, 14, 3, 0, 1),
    ("cnv 128->128 12", 128, 128, 12, 3, 0, 1),
    ("cnv 128->256 5", 128, 256, 5, 3, 0, 1),
    ("convnet 32->64 14", 32, 64, 14, 3, 1, 1),
    ("convnet 64->64 7", 64, 64, 7, 3, 1, 1),
    ("resnet 64 56", 64, 64, 56, 3, 1, 1),
    ("resnet 64->128 56 /2", 64, 128, 56, 3, 1, 2),
    ("resnet 128 28", 128, 128, 28, 3, 1, 1),
    ("resnet 1x1 128->256 28 /2", 128, 256, 28, 1, 0, 2),
    ("resnet 256 14", 256, 256, 14, 3, 1, 1),
    ("resnet 512 7", 512, 512, 7, 3, 1, 1),
    ("1x1 256->256 14", 256, 256, 14, 1, 0, 1),
]


def ceilings(seconds: float = 0.3) -> dict[str, float]:
    """Multiply-adds per second of each DirectConvInteger variant's sum kernel on L1-resident data."""
    lib = ctypes.CDLL(runtime.get_library_path())
    lib.qcompile_direct_conv_ceiling.restype = ctypes.c_double
    lib.qcompile_direct_conv_ceiling.argtypes = [ctypes.c_char_p, ctypes.c_double]
    return {v: float(lib.qcompile_direct_conv_ceiling(v.encode(), seconds))
            for v in runtime.kernel_variants("DirectConvInteger")}


def contenders(c: int, m: int, hw: int, k: int, pad: int, stride: int, rng) -> dict[str, tuple[bytes, np.ndarray]]:
    shape = [1, c, hw, hw]
    attrs = dict(kernel_shape=[k, k], pads=[pad] * 4, strides=[stride, stride])
    ints = {"w": rng.integers(0, 3, (m, c, k, k)).astype(np.uint8), "xzp": np.zeros(1, np.int8),
            "wzp": np.array([1], np.uint8)}
    rq = {"s": rng.uniform(0.01, 0.05, m).astype(np.float32), "b": rng.uniform(-1, 1, m).astype(np.float32),
          "ys": np.array([0.5], np.float32), "yzp": np.zeros(1, np.int8)}
    x8 = rng.integers(-2, 2, shape).astype(np.int8)
    xf = rng.standard_normal(shape).astype(np.float32)
    ql = {"xs": np.array(0.1, np.float32), "xz": np.array(128, np.uint8),
          "w": rng.integers(-1, 2, (m, c, k, k)).astype(np.int8), "ws": np.array(0.1, np.float32),
          "wz": np.array(0, np.int8), "ys": np.array(0.2, np.float32), "yz": np.array(128, np.uint8)}
    out = {"float Conv": (_model(helper.make_node("Conv", ["x", "w"], ["y"], **attrs), TensorProto.FLOAT, shape,
                                 {"w": rng.standard_normal((m, c, k, k)).astype(np.float32)}, TensorProto.FLOAT), xf),
           "ConvInteger": (_model(helper.make_node("ConvInteger", ["x", "w", "xzp", "wzp"], ["y"], **attrs),
                                  TensorProto.INT8, shape, ints, TensorProto.INT32), x8),
           "QLinearConv": (_model(helper.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz"], ["y"],
                                                   **attrs), TensorProto.UINT8, shape, ql, TensorProto.UINT8),
                           (x8.astype(np.int16) + 128).astype(np.uint8))}
    for kernel in runtime.kernel_variants("DirectConvInteger"):
        node = helper.make_node("DirectConvInteger", ["x", "w", "xzp", "wzp"], ["y"], domain="qcompile",
                                kernel=kernel, **attrs)
        out[f"Direct {kernel}"] = (_model(node, TensorProto.INT8, shape, ints, TensorProto.INT32), x8)
    node = helper.make_node("DirectConvRequantize", ["x", "w", "xzp", "wzp", "s", "b", "ys", "yzp"], ["y"],
                            domain="qcompile", lo=-2, hi=1, **attrs)
    out["DirectConvRequantize"] = (_model(node, TensorProto.INT8, shape, {**ints, **rq}, TensorProto.INT8), x8)
    return out


@click.command()
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=Path("runs/bench_direct_conv.json"))
@click.option("--threads", type=click.IntRange(1), default=1, show_default=True)
@click.option("--rounds", type=click.IntRange(1), default=7, show_default=True)
@click.option("--budget", type=click.FloatRange(0.001), default=0.1, show_default=True, help="Seconds per contender per round.")
def main(out: Path, threads: int, rounds: int, budget: float) -> None:
    """Direct int8 conv kernels vs onnxruntime's ConvInteger, QLinearConv and float Conv: JSON, PNG, table."""
    peaks = ceilings()
    print("kernel ceilings (L1-resident, 1 core): " + "  ".join(f"{v} {p / 1e9:.0f} GMAC/s" for v, p in peaks.items()))
    rng = np.random.default_rng(0)
    rows = []
    for name, c, m, hw, k, pad, stride in SHAPES:
        us = race_us(contenders(c, m, hw, k, pad, stride, rng), threads, rounds, budget)
        out_hw = (hw + 2 * pad - k) // stride + 1
        macs = m * c * k * k * out_hw * out_hw
        # the ceilings are one core's: a fraction only for a 1-thread race
        fraction = {v: macs / (us[f"Direct {v}"] * 1e-6) / peaks[v] for v in peaks if peaks[v] > 0 and threads == 1}
        rows.append({"layer": name, "macs": macs, "us": us, "fraction_of_ceiling": fraction})
        best = min((k for k in us if k.startswith("Direct ")), key=us.get)
        print(f"{name:>26}  " + "  ".join(f"{k} {v:7.1f}" for k, v in us.items()) +
              f"  | {best.split()[-1]}: {us['ConvInteger'] / us[best]:.2f}x ConvInteger, "
              f"{us['QLinearConv'] / us[best]:.2f}x QLinearConv, {us['float Conv'] / us[best]:.2f}x float"
              + (f", {fraction[best.split()[-1]]:.0%} of ceiling" if best.split()[-1] in fraction else ""))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"cpu": cpu_model(), "threads": threads, "rounds": rounds,
                               "ceiling_macs_per_s": peaks, "rows": rows}, indent=1))
    plot_us_rows(rows, out.with_suffix(".png"), threads)
    print(f"wrote {out} and {out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
