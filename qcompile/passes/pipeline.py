"""The compile pipeline: the order of the passes and why each sits where it does."""

from __future__ import annotations

from dataclasses import dataclass

import onnx_ir as ir

from qcompile.analysis import LayerAnalyses
from qcompile.base.domains import QCOMPILE_DOMAIN, QCOMPILE_OPSET
from qcompile.passes.absorb_channel_scales import AbsorbChannelScalesPass
from qcompile.passes.cleanup import CleanupPass
from qcompile.passes.depthwise_integer import DepthwiseIntegerPass
from qcompile.passes.direct_integer import DirectIntegerPass
from qcompile.passes.fold_affine import FoldAffineIntoLoweredPass
from qcompile.passes.fold_input_affine import FoldInputAffineIntoQuantizePackPass
from qcompile.passes.fold_int8_epilogue import FoldAffineIntoInt8Pass
from qcompile.passes.fold_quantizers import FoldWeightQuantizersPass
from qcompile.passes.hoist_quantizers import HoistQuantizersPass, WeightQuantizersAfterTransposePass
from qcompile.passes.int8_maxpool import Int8CodesThroughMaxPoolPass
from qcompile.passes.int8_requantize import Int8RequantizePass
from qcompile.passes.lower_binary import LowerBinaryLayersPass
from qcompile.passes.lower_int8 import LowerInt8LayersPass
from qcompile.passes.lower_multibit import LowerMultibitLayersPass
from qcompile.passes.lower_shift import LowerShiftLayersPass
from qcompile.passes.multibit_thresholds import MultibitThresholdsPass
from qcompile.passes.packed_activations import PackActivationsPass
from qcompile.passes.propagate_grid import PropagateGridPass
from qcompile.passes.qcdq import QcdqToQuantPass
from qcompile.passes.report import CompileReport, PipelineRun
from qcompile.passes.rewrite import MAX_REWRITE_ROUNDS
from qcompile.passes.trunc_avgpool import TruncAvgPoolToIntegerPoolPass


@dataclass
class CompileOptions:
    """How to compile. The bit widths a user asks for are checked against the model before the
    pipeline (compiler.check_bit_widths) and need no pass: each layer is lowered by what it holds."""

    # binary -> binary layers exchange packed bits (XnorConvThreshold / PackedMaxPool)
    packed_activations: bool = True
    # the bound on each rule set's fixed point (a rule set still matching after it is an error)
    max_rewrite_rounds: int = MAX_REWRITE_ROUNDS
    # layer name -> (implementation, why), chosen before the run (qcompile.costmodel); a layer not
    # named keeps its analysis' default
    choices: dict[str, tuple[str, str]] | None = None


def build_pipeline(options: CompileOptions | None = None) -> ir.passes.PassManager:
    options = options or CompileOptions()
    rounds = options.max_rewrite_rounds
    packing = [PackActivationsPass()] if options.packed_activations else []
    # int8 convs on qcompile::DirectConvInteger where this CPU runs its fast kernels
    # (passes/direct_integer.py; QCOMPILE_DIRECT_CONV)
    from qcompile.runtime import direct_conv_is_fast

    return ir.passes.PassManager(
        [
            # 1. Normalise first so the patterns below see initializers, not Constant/Identity chains.
            CleanupPass(),
            # 2. Quantizers move after Flatten/Reshape so a dense layer sees the quantizer directly.
            HoistQuantizersPass(rounds),
            # 3. Layers chosen for int8 arithmetic become ConvInteger / MatMulInteger, and
            #    multi-bit layers become BitSerialConv / BitSerialGemm. Before weight quantizers are
            #    folded: the weight Quant node carries the integer grid (scale, zero point, bits).
            LowerInt8LayersPass(rounds),
            LowerMultibitLayersPass(rounds),
            #    Power-of-two weights (and Pow2Quant inputs) become ShiftConv / ShiftGemm; the
            #    rule reads the quantized values, so weight quantizers may be folded or not.
            LowerShiftLayersPass(rounds),
            # 4. Weight quantizers become plain constants holding the exact quantized values; the
            #    lowering rules classify layers by those values (binary = +-alpha per channel).
            FoldWeightQuantizersPass(),
            #    ...and what was computed from them (a Transpose before MatMul) is folded too.
            CleanupPass(),
            #    An int8 layer behind MaxPool(Quant(x)) max-pools its own int8 codes instead; after
            #    a cleanup, so the quantizer the int8 lowering replaced no longer reads the MaxPool.
            Int8CodesThroughMaxPoolPass(rounds),
            #    Trunc(AveragePool(Quant(x))) sum-pools the Quant's integer codes (an int8 layer after reads them).
            TruncAvgPoolToIntegerPoolPass(rounds),
            # 5. Binary layers become XnorConv / XnorGemm on packed bits (activation quantizers
            #    stay in place for any float consumer; dead ones go in the final cleanup).
            LowerBinaryLayersPass(rounds),
            #    ...and the activation quantizers they replaced are removed, so that a value's users
            #    are exactly the ops that still read it.
            CleanupPass(),
            # 6. A binary layer feeding another one: its BatchNorm + sign become integer thresholds
            #    and it writes packed bits. Before affine folding, so thresholds are computed from
            #    the model's own BatchNorm parameters, not from a rounded fold of them.
            *packing,
            # 7. BatchNorm / Mul / Add after a binary op fold into its per-channel scale and bias;
            #    after lowering, because only then is the op's output transform there to fold into.
            FoldAffineIntoLoweredPass(rounds),
            #    ...and into the float scale and bias after an int8 layer's integer op.
            FoldAffineIntoInt8Pass(rounds),
            #    An int8 layer feeding another: its epilogue and the next quantizer become one
            #    Requantize op (the same rounding, one pass); after the fold, which it takes in.
            Int8RequantizePass(rounds),
            #    A depthwise int8 layer's ConvInteger runs on qcompile's depthwise kernel; last of
            #    the int8 passes, which all read the layer's sums off a ConvInteger.
            DepthwiseIntegerPass(),
            #    ...and any other int8 conv on its direct kernel, where that is fast here.
            DirectIntegerPass(direct_conv_is_fast()),
            #    A bit-serial layer feeding another one writes its packed codes (multi-thresholds
            #    reproducing the float chain exactly); after affine folding, which it reproduces.
            *([MultibitThresholdsPass()] if options.packed_activations else []),
            #    A scalar Mul / Add / Sub left in front of a QuantizePack (the model's input
            #    scaling) becomes its exact pre_scale / pre_bias; after the threshold folding,
            #    which reads such chains between bit-serial layers.
            FoldInputAffineIntoQuantizePackPass(rounds),
            # 8. Remove what the rewrites left dead, merge duplicate BinarizePack nodes, sort.
            CleanupPass(),
        ],
        steps=1,
    )


def frontend_pipeline() -> ir.passes.PassManager:
    """What turns any accepted input into plain QONNX: run before analysis, so the layer table and
    the bit-width checks see the same quantizers the lowering does."""
    return ir.passes.PassManager(
        [
            CleanupPass(),
            # QCDQ exports (QuantizeLinear -> Clip -> DequantizeLinear) become QONNX Quant nodes.
            QcdqToQuantPass(),
            CleanupPass(),
            # A Linear exported as MatMul(x, Transpose(Quant(W))) gets Quant(W^T): its weight grid
            # is then read off the quantizer by analysis and by the multi-bit lowering alike.
            WeightQuantizersAfterTransposePass(),
            # A layer behind a MaxPool / Relu / Pad / Concat / reshuffle / Trunc of quantized values
            # gets that grid's quantizer in front of it, so analysis and lowering see a quantized
            # input (value-preserving: re-quantizing a value on its grid gives it back).
            PropagateGridPass(),
            # A per-input-channel activation scale with power-of-two ratios goes into a (not
            # depthwise) conv's integer weights, so analysis sees a per-tensor input.
            AbsorbChannelScalesPass(),
        ]
    )


def run_frontend(model: ir.Model) -> ir.Model:
    return frontend_pipeline()(model).model


@dataclass
class PipelineResult:
    model: ir.Model
    report: CompileReport  # every refused match: (rule, node, reason)
    analyses: int  # how many layer analyses the run computed


def compile_pipeline(model: ir.Model, options: CompileOptions | None = None) -> PipelineResult:
    """Run the compile pipeline on `model` (in place) and return it with the run's report."""
    model.opset_imports.setdefault(QCOMPILE_DOMAIN, QCOMPILE_OPSET)
    choices = (options.choices if options is not None else None) or {}
    with PipelineRun(analyses=LayerAnalyses(choices)).active() as run:
        out = build_pipeline(options)(model).model
    if not any(n.domain == QCOMPILE_DOMAIN for n in out.graph):
        out.opset_imports.pop(QCOMPILE_DOMAIN, None)
    return PipelineResult(out, run.report, run.analyses.computed)


def run_pipeline(model: ir.Model, options: CompileOptions | None = None) -> ir.Model:
    return compile_pipeline(model, options).model
