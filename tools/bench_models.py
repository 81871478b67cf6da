"""Whole models for tools/bench.py, built as QONNX graphs, each with a float twin.

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
