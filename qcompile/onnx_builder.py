"""Build small ONNX / QONNX graphs by hand: tests, benchmarks and examples use it."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from qcompile.base.domains import QCOMPILE_DOMAIN, QCOMPILE_OPSET, QONNX_DOMAIN, QONNX_OPSET


class GraphBuilder:
    """Append nodes and initializers; `model()` returns an opset-17 ModelProto."""

    def __init__(self, seed: int = 0):
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.count = 0

    def name(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}{self.count}"

    def const(self, array, prefix: str = "c") -> str:
        name = self.name(prefix)
        self.inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def op(self, op_type: str, inputs: list[str], domain: str = "", name: str | None = None, **attrs) -> str:
        out = self.name(op_type.lower() + "_out")
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=name or self.name(op_type), domain=domain, **attrs))
        return out

    def bipolar(self, x: str, scale=1.0) -> str:
        return self.op("BipolarQuant", [x, self.const(np.asarray(scale, np.float32), "s")], domain=QONNX_DOMAIN)

    def quant(self, x: str, scale, bits: int, signed: int = 1, narrow: int = 0) -> str:
        ins = [x, self.const(np.asarray(scale, np.float32), "s"), self.const(np.float32(0), "z"),
               self.const(np.float32(bits), "b")]
        return self.op("Quant", ins, domain=QONNX_DOMAIN, signed=signed, narrow=narrow, rounding_mode="ROUND")

    def pow2(self, x: str, thresholds) -> str:
        """qcompile::Pow2Quant (AQE's power-of-two activation quantizer)."""
        return self.op("Pow2Quant", [x], domain=QCOMPILE_DOMAIN, thresholds=[float(t) for t in thresholds])

    def pow2_weight(self, shape, max_exponent: int = 2, per_channel: bool = True, zeros: bool = True) -> str:
        """Quant(values, unit) whose values are unit[m] * {0, ±2^e}, e <= max_exponent (AQE's ≥3-bit grid)."""
        e = self.rng.integers(0, max_exponent + 1, shape)
        ints = np.left_shift(1, e) * self.rng.choice([-1, 1], shape)
        if zeros:
            ints = ints * (self.rng.random(shape) > 0.25)
        unit = self.rng.uniform(0.05, 0.2, (shape[0],) + (1,) * (len(shape) - 1)) if per_channel else 0.125
        unit = np.asarray(unit, np.float32)
        bits = int(max_exponent) + 2  # a signed narrow grid that holds ±2^max_exponent
        return self.quant(self.const((ints * unit).astype(np.float32), "w"), unit, bits, narrow=1)

    def binary_weight(self, shape, per_channel: bool = True) -> str:
        w = self.rng.standard_normal(shape).astype(np.float32)
        alpha = np.abs(w).reshape(shape[0], -1).mean(axis=1) if per_channel else np.float32(1.0)
        scale = np.asarray(alpha, np.float32).reshape((shape[0],) + (1,) * (len(shape) - 1)) if per_channel else alpha
        return self.bipolar(self.const(w, "w"), scale)

    def bn(self, x: str, channels: int) -> str:
        r = self.rng
        params = [
            r.uniform(0.5, 1.5, channels), r.standard_normal(channels) * 0.1,
            r.standard_normal(channels) * 0.1, r.uniform(0.5, 2.0, channels),
        ]
        return self.op("BatchNormalization", [x] + [self.const(p.astype(np.float32), "bn") for p in params], epsilon=1e-5)

    def model(self, inputs: dict[str, list], outputs: list[str]) -> onnx.ModelProto:
        graph = helper.make_graph(
            self.nodes,
            "g",
            [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs.items()],
            [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs],
            self.inits,
        )
        opsets = [helper.make_opsetid("", 17), helper.make_opsetid(QONNX_DOMAIN, QONNX_OPSET)]
        if any(n.domain == QCOMPILE_DOMAIN for n in self.nodes):
            opsets.append(helper.make_opsetid(QCOMPILE_DOMAIN, QCOMPILE_OPSET))
        return helper.make_model(graph, opset_imports=opsets)
