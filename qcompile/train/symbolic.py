"""Autograd Functions that trace to QONNX / qcompile nodes in the TorchScript ONNX exporter.

Their ``forward`` computes what the exported node computes (the same float32 values), their
``symbolic`` writes the node. Layers use :class:`GemmFn` when prepared for export; the export
module uses the quantizer Functions. Importing only the quantizers keeps layers → symbolic and
export → layers → symbolic acyclic.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..base.domains import QCOMPILE_DOMAIN, QONNX_DOMAIN
from .quantizers import pow2_h, pow2_thresholds, qonnx_quant, sign_pm1


class BipolarQuantFn(torch.autograd.Function):
    """QONNX BipolarQuant: (x ≥ 0 ? +1 : −1) · scale."""

    @staticmethod
    def forward(ctx, x: Tensor, scale: Tensor) -> Tensor:
        return sign_pm1(x) * scale

    @staticmethod
    def symbolic(g, x, scale):
        return g.op(f"{QONNX_DOMAIN}::BipolarQuant", x, scale).setType(x.type())


class QuantFn(torch.autograd.Function):
    """QONNX Quant(x, scale, zeropt, bitwidth; signed, narrow, rounding_mode)."""

    @staticmethod
    def forward(ctx, x: Tensor, scale: Tensor, zeropt: float, bits: int, signed: int,
                narrow: int, rounding_mode: str) -> Tensor:
        return qonnx_quant(x, scale, zeropt, bits, bool(signed), bool(narrow), rounding_mode)

    @staticmethod
    def symbolic(g, x, scale, zeropt, bits, signed, narrow, rounding_mode):
        zp = g.op("Constant", value_t=torch.tensor(float(zeropt), dtype=torch.float32))
        bw = g.op("Constant", value_t=torch.tensor(float(bits), dtype=torch.float32))
        return g.op(f"{QONNX_DOMAIN}::Quant", x, scale, zp, bw, signed_i=int(signed),
                    narrow_i=int(narrow), rounding_mode_s=rounding_mode).setType(x.type())


class Pow2QuantFn(torch.autograd.Function):
    """qcompile::Pow2Quant: AQE's power-of-two h, given by its ascending |x| thresholds."""

    @staticmethod
    def forward(ctx, x: Tensor, bits: int, zero_threshold: str) -> Tensor:
        return pow2_h(x, bits, zero_threshold)

    @staticmethod
    def symbolic(g, x, bits, zero_threshold):
        return g.op(f"{QCOMPILE_DOMAIN}::Pow2Quant", x,
                    thresholds_f=pow2_thresholds(bits, zero_threshold)).setType(x.type())


class GemmFn(torch.autograd.Function):
    """``x @ Wᵀ (+ b)`` exported as one Gemm(transB=1), so the weight quantizer's output feeds
    Gemm input B directly (the TorchScript exporter writes Transpose + MatMul without a bias)."""

    @staticmethod
    def forward(ctx, x: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
        return torch.nn.functional.linear(x, w, b)

    @staticmethod
    def symbolic(g, x, w, b):
        if b is None or (hasattr(b, "node") and b.node().mustBeNone()):
            return g.op("Gemm", x, w, transB_i=1)
        return g.op("Gemm", x, w, b, transB_i=1)


