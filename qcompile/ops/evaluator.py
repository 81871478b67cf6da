"""Run any qcompile or QONNX model in pure Python: onnx's ReferenceEvaluator plus the numpy ops here.

A second executor, independent of the C++ library: tests compare compiled graphs against their
reference graphs with it, and the C++ kernels against it.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx.reference import ReferenceEvaluator
from onnx.reference.op_run import OpRun

from qcompile.base.domains import QCOMPILE_DOMAIN, QONNX_DOMAIN
from qcompile.ops import bitserial, int8, multibit_threshold, packing, qonnx, shift, trunc, xnor

_DEFAULTS = dict(strides=(1, 1), pads=(0, 0, 0, 0), dilations=(1, 1))


def _conv_attrs(kernel_shape, strides, pads, dilations, group=1, in_channels=None):
    attrs = dict(kernel_shape=tuple(kernel_shape), strides=tuple(strides or (1, 1)),
                 pads=tuple(pads or (0, 0, 0, 0)), dilations=tuple(dilations or (1, 1)), group=int(group or 1))
    if in_channels is not None:
        attrs["in_channels"] = int(in_channels)
    return attrs


class BinarizePack(OpRun):
    op_domain = QCOMPILE_DOMAIN

    def _run(self, x, group=1):
        if x.ndim == 2:
            return (packing.pack_dense(x),)
        return (packing.pack_activations(x, int(group or 1)),)


class XnorConv(OpRun):
    op_domain = QCOMPILE_DOMAIN

    def _run(self, x, w, scale, bias, in_channels=None, kernel_shape=None, strides=None, pads=None,
             dilations=None, group=1):
        attrs = _conv_attrs(kernel_shape, strides, pads, dilations, group, in_channels)
        return (xnor.xnor_conv(x, w, scale, bias, **attrs),)


class XnorConvThreshold(OpRun):
    op_domain = QCOMPILE_DOMAIN

    def _run(self, x, w, threshold, direction, in_channels=None, kernel_shape=None, strides=None,
             pads=None, dilations=None, group=1, out_group=1):
        attrs = _conv_attrs(kernel_shape, strides, pads, dilations, group, in_channels)
        return (xnor.xnor_conv_threshold(x, w, threshold, direction, out_group=int(out_group or 1), **attrs),)


class PackedMaxPool(OpRun):
    op_domain = QCOMPILE_DOMAIN

    def _run(self, x, or_mask, kernel_shape=None, strides=None, pads=None, dilations=None):
        return (xnor.packed_maxpool(x, or_mask, kernel_shape=tuple(kernel_shape), strides=tuple(strides or (1, 1)),
                                    pads=tuple(pads or (0, 0, 0, 0)), dilations=tuple(dilations or (1, 1))),)


class XnorGemm(OpRun):
    op_domain = QCOMPILE_DOMAIN

    def _run(self, x, w, scale, bias, in_features=None):
        return (xnor.xnor_gemm(x, w, scale, bias, in_features=int(in_features)),)


class QuantizePack(OpRun):
    op_domain = QCOMPILE_DOMAIN

    def _run(self, x, scale=None, zero_point=0.0, bitwidth=None, signed=0, narrow=0, rounding_mode="ROUND",
             planes=None, group=1, pre_scale=1.0, pre_bias=0.0):
        mode = rounding_mode.decode() if isinstance(rounding_mode, bytes) else (rounding_mode or "ROUND")
        return (bitserial.quantize_pack(x, scale=scale, zero_point=zero_point or 0.0, bitwidth=int(bitwidth),
                                        signed=int(signed or 0), narrow=int(narrow or 0), rounding_mode=mode,
                                        planes=planes, group=int(group or 1),
                                        pre_scale=1.0 if pre_scale is None else float(pre_scale),
                                        pre_bias=0.0 if pre_bias is None else float(pre_bias)),)


class BitSerialConv(OpRun):
    op_domain = QCOMPILE_DOMAIN

    def _run(self, x, w, scale, bias, in_channels=None, kernel_shape=None, strides=None, pads=None,
             dilations=None, group=1, act_coeffs=None, weight_coeffs=None, weight_offset=0):
        attrs = _conv_attrs(kernel_shape, strides, pads, dilations, group, in_channels)
        return (bitserial.bitserial_conv(x, w, scale, bias, act_coeffs=list(act_coeffs),
                                         weight_coeffs=list(weight_coeffs), weight_offset=int(weight_offset or 0),
                                         **attrs),)


class BitSerialGemm(OpRun):
    op_domain = QCOMPILE_DOMAIN

    def _run(self, x, w, scale, bias, in_features=None, act_coeffs=None, weight_coeffs=None, weight_offset=0):
        return (bitserial.bitserial_gemm(x, w, scale, bias, in_features=int(in_features), act_coeffs=list(act_coeffs),
                                         weight_coeffs=list(weight_coeffs), weight_offset=int(weight_offset or 0)),)


class BitSerialConvThreshold(OpRun):
    op_domain = QCOMPILE_DOMAIN

    def _run(self, x, w, thresholds, direction, in_channels=None, kernel_shape=None, strides=None, pads=None,
             dilations=None, group=1, act_coeffs=None, weight_coeffs=None, weight_offset=0, out_base=0,
             out_planes=None, out_group=1):
        attrs = _conv_attrs(kernel_shape, strides, pads, dilations, group, in_channels)
        return (multibit_threshold.bitserial_conv_threshold(
            x, w, thresholds, direction, out_base=int(out_base or 0), out_planes=int(out_planes),
            out_group=int(out_group or 1), act_coeffs=list(act_coeffs), weight_coeffs=list(weight_coeffs),
            weight_offset=int(weight_offset or 0), **attrs),)


class BitSerialGemmThreshold(OpRun):
    op_domain = QCOMPILE_DOMAIN

    def _run(self, x, w, thresholds, direction, in_features=None, act_coeffs=None, weight_coeffs=None,
             weight_offset=0, out_base=0, out_planes=None, out_group=1):
        return (multibit_threshold.bitserial_gemm_threshold(
            x, w, thresholds, direction, out_base=int(out_base or 0), out_planes=int(out_planes),
            in_features=int(in_features), act_coeffs=list(act_coeffs), weight_coeffs=list(weight_coeffs),
            weight_offset=int(weight_offset or 0)),)


class BitSerialMlp(OpRun):
    op_domain = QCOMPILE_DOMAIN

    def _run(self, x, w, thresholds, direction, scale_in, bias_in, features=None, act_coeffs=None, act_planes=None,
             weight_coeffs=None, weight_planes=None, weight_offset=None, levels=None, out_base=None, scale=None,
             zero_point=0.0, bitwidth=None, signed=0, narrow=0, rounding_mode="ROUND", planes=None, pre_scale=1.0,
             pre_bias=0.0):
        mode = rounding_mode.decode() if isinstance(rounding_mode, bytes) else (rounding_mode or "ROUND")
        return (multibit_threshold.bitserial_mlp(
            x, w, thresholds, direction, scale_in, bias_in, features=list(features), act_coeffs=list(act_coeffs),
            act_planes=list(act_planes), weight_coeffs=list(weight_coeffs), weight_planes=list(weight_planes),
            weight_offset=list(weight_offset), levels=list(levels or []), out_base=list(out_base or []),
            scale=scale, zero_point=zero_point or 0.0, bitwidth=int(bitwidth), signed=int(signed or 0),
            narrow=int(narrow or 0), rounding_mode=mode, planes=planes,
            pre_scale=1.0 if pre_scale is None else float(pre_scale),
            pre_bias=0.0 if pre_bias is None else float(pre_bias)),)


class PlaneMaxPool(OpRun):
    op_domain = QCOMPILE_DOMAIN

    def _run(self, x, or_mask, kernel_shape=None, strides=None, pads=None, dilations=None, planes=None, group=1,
             signed=0):
        return (multibit_threshold.plane_maxpool(
            x, or_mask, planes=int(planes), group=int(group or 1), signed=int(signed or 0),
            kernel_shape=tuple(kernel_shape), strides=tuple(strides or (1, 1)), pads=tuple(pads or (0, 0, 0, 0)),
            dilations=tuple(dilations or (1, 1))),)


def _str(v, default):
    return v.decode() if isinstance(v, bytes) else (v or default)


def _act_attrs(act_mode, act_thresholds, act_scale, act_zero_point, act_bitwidth, act_signed, act_narrow,
               act_rounding_mode):
    mode = _str(act_mode, "")
    if mode == "pow2":
        return dict(act_mode=mode, act_thresholds=list(act_thresholds))
    return dict(act_mode=mode, act_scale=float(act_scale), act_zero_point=float(act_zero_point or 0.0),
                act_bitwidth=int(act_bitwidth), act_signed=int(act_signed or 0), act_narrow=int(act_narrow or 0),
                act_rounding_mode=_str(act_rounding_mode, "ROUND"))


class Pow2Quant(OpRun):
    op_domain = QCOMPILE_DOMAIN

    def _run(self, x, thresholds=None):
        return (shift.pow2_quant(x, list(thresholds)),)


class Requantize(OpRun):
    op_domain = QCOMPILE_DOMAIN

    def _run(self, acc, scale, bias, y_scale, y_zero_point, axis=1, lo=None, hi=None, kernel_shape=None,
             strides=None, pads=None, dilations=None, thresholds=None):
        pool = {} if kernel_shape is None else dict(
            kernel_shape=kernel_shape, strides=strides or (1, 1), pads=pads or (0, 0, 0, 0), dilations=dilations or (1, 1))
        return (int8.requantize(acc, scale, bias, y_scale, y_zero_point, axis=int(axis), lo=lo, hi=hi,
                                thresholds=None if thresholds is None else list(thresholds), **pool),)


class DepthwiseConvInteger(OpRun):
    op_domain = QCOMPILE_DOMAIN

    def _run(self, x, w, x_zero_point, w_zero_point, kernel_shape=None, strides=None, pads=None, dilations=None,
             group=None, kernel=None):
        return (int8.depthwise_conv_integer(x, w, x_zero_point, w_zero_point, kernel_shape, strides or (1, 1),
                                            pads or (0, 0, 0, 0), dilations or (1, 1)),)


class DepthwiseConvRequantize(OpRun):
    op_domain = QCOMPILE_DOMAIN

    def _run(self, x, w, x_zero_point, w_zero_point, scale, bias, y_scale, y_zero_point, kernel_shape=None,
             strides=None, pads=None, dilations=None, group=None, lo=None, hi=None, kernel=None):
        acc = int8.depthwise_conv_integer(x, w, x_zero_point, w_zero_point, kernel_shape, strides or (1, 1),
                                          pads or (0, 0, 0, 0), dilations or (1, 1))
        return (int8.requantize(acc, scale, bias, y_scale, y_zero_point, axis=1, lo=lo, hi=hi),)


class DirectConvInteger(OpRun):
    op_domain = QCOMPILE_DOMAIN

    def _run(self, x, w, x_zero_point, w_zero_point, kernel_shape=None, strides=None, pads=None, dilations=None,
             group=None, kernel=None):
        return (int8.conv_integer(x, w, x_zero_point, w_zero_point, kernel_shape, strides or (1, 1),
                                  pads or (0, 0, 0, 0), dilations or (1, 1), int(group or 1)),)


class DirectConvRequantize(OpRun):
    op_domain = QCOMPILE_DOMAIN

    def _run(self, x, w, x_zero_point, w_zero_point, scale, bias, y_scale, y_zero_point, kernel_shape=None,
             strides=None, pads=None, dilations=None, group=None, lo=None, hi=None, thresholds=None,
             pool_kernel_shape=None, pool_strides=None, pool_pads=None, pool_dilations=None, kernel=None):
        acc = int8.conv_integer(x, w, x_zero_point, w_zero_point, kernel_shape, strides or (1, 1),
                                pads or (0, 0, 0, 0), dilations or (1, 1), int(group or 1))
        pool = {} if pool_kernel_shape is None else dict(
            kernel_shape=pool_kernel_shape, strides=pool_strides or (1, 1), pads=pool_pads or (0, 0, 0, 0),
            dilations=pool_dilations or (1, 1))
        return (int8.requantize(acc, scale, bias, y_scale, y_zero_point, axis=1, lo=lo, hi=hi,
                                thresholds=None if thresholds is None else list(thresholds), **pool),)


class ThresholdPack(OpRun):
    op_domain = QCOMPILE_DOMAIN

    def _run(self, d, threshold, direction, out_group=1, kernel=None):
        return (xnor.pack_threshold_bits(d, threshold, direction, int(out_group or 1)),)


class ShiftConv(OpRun):
    op_domain = QCOMPILE_DOMAIN

    def _run(self, x, w, scale, bias, in_channels=None, kernel_shape=None, strides=None, pads=None,
             dilations=None, group=1, act_mode=None, act_thresholds=None, act_scale=None, act_zero_point=0.0,
             act_bitwidth=None, act_signed=0, act_narrow=0, act_rounding_mode="ROUND"):
        attrs = _conv_attrs(kernel_shape, strides, pads, dilations, group, in_channels)
        act = _act_attrs(act_mode, act_thresholds, act_scale, act_zero_point, act_bitwidth, act_signed, act_narrow,
                         act_rounding_mode)
        return (shift.shift_conv(x, w, scale, bias, **attrs, **act),)


class ShiftGemm(OpRun):
    op_domain = QCOMPILE_DOMAIN

    def _run(self, x, w, scale, bias, in_features=None, act_mode=None, act_thresholds=None, act_scale=None,
             act_zero_point=0.0, act_bitwidth=None, act_signed=0, act_narrow=0, act_rounding_mode="ROUND"):
        act = _act_attrs(act_mode, act_thresholds, act_scale, act_zero_point, act_bitwidth, act_signed, act_narrow,
                         act_rounding_mode)
        return (shift.shift_gemm(x, w, scale, bias, in_features=int(in_features), **act),)


class BipolarQuant(OpRun):
    op_domain = QONNX_DOMAIN

    def _run(self, x, scale):
        return (qonnx.bipolar_quant(x, scale),)


class Quant(OpRun):
    op_domain = QONNX_DOMAIN

    def _run(self, x, scale, zeropt, bitwidth, signed=1, narrow=0, rounding_mode="ROUND"):
        mode = rounding_mode.decode() if isinstance(rounding_mode, bytes) else (rounding_mode or "ROUND")
        return (qonnx.quant(x, scale, zeropt, bitwidth, signed=int(signed), narrow=int(narrow), rounding_mode=mode),)


class IntQuant(Quant):
    pass


class Trunc(OpRun):
    op_domain = QONNX_DOMAIN

    def _run(self, x, scale, zeropt, input_bitwidth, *rest, signed=1, narrow=0, rounding_mode="FLOOR"):
        mode = rounding_mode.decode() if isinstance(rounding_mode, bytes) else (rounding_mode or "FLOOR")
        if len(rest) == 1:  # version 1: (…, output_bit_width)
            return (trunc.trunc_v1(x, scale, zeropt, input_bitwidth, rest[0], rounding_mode=mode),)
        return (trunc.trunc(x, scale, zeropt, input_bitwidth, *rest, signed=int(signed), narrow=int(narrow),
                            rounding_mode=mode),)


OPS = [BinarizePack, XnorConv, XnorConvThreshold, PackedMaxPool, XnorGemm, QuantizePack, BitSerialConv,
       BitSerialGemm, BitSerialConvThreshold, BitSerialGemmThreshold, BitSerialMlp, PlaneMaxPool, Pow2Quant, Requantize, DepthwiseConvInteger,
       DepthwiseConvRequantize, DirectConvInteger, DirectConvRequantize, ThresholdPack, ShiftConv, ShiftGemm, BipolarQuant, Quant, IntQuant,
       Trunc]


def evaluator(model: onnx.ModelProto) -> ReferenceEvaluator:
    return ReferenceEvaluator(model, new_ops=OPS)


def run(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    return evaluator(model).run(None, feeds)
