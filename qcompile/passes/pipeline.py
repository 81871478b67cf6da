"""The compile pipeline: the order of the passes and why each sits where it does."""

from __future__ import annotations

from dataclasses import dataclass

import onnx_ir as ir

from qcompile.passes._consts import QCOMPILE_DOMAIN
from qcompile.passes.cleanup import cleanup_pass
from qcompile.passes.fold_affine import affine_folding_rules
from qcompile.passes.fold_quantizers import FoldWeightQuantizersPass
from qcompile.passes.hoist_quantizers import hoist_rules
from qcompile.passes.lower_binary import binary_lowering_rules
from qcompile.passes.lower_multibit import multibit_lowering_rules
from qcompile.passes.lower_shift import shift_lowering_rules
from qcompile.passes.packed_activations import PackActivationsPass
from qcompile.passes.qcdq import qcdq_rules
from qcompile.passes.rewrite import RewriteRulesPass


@dataclass
class CompileOptions:
    """What the user asked for; None means "as the model says"."""

    wbits: int | None = None
    abits: int | None = None
    # binary -> binary layers exchange packed bits (XnorConvThreshold / PackedMaxPool)
    packed_activations: bool = True


def build_pipeline(options: CompileOptions | None = None) -> ir.passes.PassManager:
    # bit widths are checked before the pipeline (compiler.check_bit_widths)
    options = options or CompileOptions()
    packing = [PackActivationsPass()] if options.packed_activations else []
    return ir.passes.PassManager(
        [
            # 1. Normalise first so the patterns below see initializers, not Constant/Identity chains.
            cleanup_pass(),
            # 2. Quantizers move after Flatten/Reshape so a dense layer sees the quantizer directly.
            RewriteRulesPass("hoist-quantizers-over-reshape", hoist_rules),
            # 3. Multi-bit layers become BitSerialConv / BitSerialGemm. Before weight quantizers are
            #    folded: the weight Quant node carries the integer grid (scale, zero point, bits).
            RewriteRulesPass("lower-multibit-layers", multibit_lowering_rules),
            #    Power-of-two weights (and Pow2Quant inputs) become ShiftConv / ShiftGemm; the
            #    rule reads the quantized values, so weight quantizers may be folded or not.
            RewriteRulesPass("lower-shift-layers", shift_lowering_rules),
            # 4. Weight quantizers become plain constants holding the exact quantized values; the
            #    lowering rules classify layers by those values (binary = +-alpha per channel).
            FoldWeightQuantizersPass(),
            #    ...and what was computed from them (a Transpose before MatMul) is folded too.
            cleanup_pass(),
            # 5. Binary layers become XnorConv / XnorGemm on packed bits (activation quantizers
            #    stay in place for any float consumer; dead ones go in the final cleanup).
            RewriteRulesPass("lower-binary-layers", binary_lowering_rules),
            #    ...and the activation quantizers they replaced are removed, so that a value's users
            #    are exactly the ops that still read it.
            cleanup_pass(),
            # 6. A binary layer feeding another one: its BatchNorm + sign become integer thresholds
            #    and it writes packed bits. Before affine folding, so thresholds are computed from
            #    the model's own BatchNorm parameters, not from a rounded fold of them.
            *packing,
            # 7. BatchNorm / Mul / Add after a binary op fold into its per-channel scale and bias;
            #    after lowering, because only then is the op's output transform there to fold into.
            RewriteRulesPass("fold-affine-into-xnor", affine_folding_rules),
            # 8. Remove what the rewrites left dead, merge duplicate BinarizePack nodes, sort.
            cleanup_pass(),
        ],
        steps=1,
    )


def frontend_pipeline() -> ir.passes.PassManager:
    """What turns any accepted input into plain QONNX: run before analysis, so the layer table and
    the bit-width checks see the same quantizers the lowering does."""
    return ir.passes.PassManager(
        [
            cleanup_pass(),
            # QCDQ exports (QuantizeLinear -> Clip -> DequantizeLinear) become QONNX Quant nodes.
            RewriteRulesPass("qcdq-to-quant", qcdq_rules),
            cleanup_pass(),
        ]
    )


def run_frontend(model: ir.Model) -> ir.Model:
    return frontend_pipeline()(model).model


def run_pipeline(model: ir.Model, options: CompileOptions | None = None) -> ir.Model:
    model.opset_imports.setdefault(QCOMPILE_DOMAIN, 1)
    result = build_pipeline(options)(model)
    out = result.model
    if not any(n.domain == QCOMPILE_DOMAIN for n in out.graph):
        out.opset_imports.pop(QCOMPILE_DOMAIN, None)
    return out
