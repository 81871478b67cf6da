"""The op library's hostile-input corpus: one-node models of every qcompile and QONNX reference op
with malformed attributes, shapes, dtypes, omitted inputs and outputs, wrong ranks, zero and huge
dims and NaN/Inf values, and a runner that executes them in worker processes.

Each case must end in a clean onnxruntime error (an onnxruntime exception with a message) or a
result; a result is compared with the numpy twin (qcompile.ops.evaluator) unless the case says the
SPEC leaves it open. A worker prints a START line before each case and a JSON line after it, so
when a worker dies (a crash, an AddressSanitizer or UBSan report) or stops answering (a hang) the
case it was running is known: the runner records it, re-runs it alone to confirm, and resumes the
rest of the batch in a fresh worker.

    python tests/hostile_ops.py            # run the whole corpus, print the counts (JSON)
    python tests/hostile_ops.py worker     # case ids on stdin (JSON list); used by the runner
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

QC, QONNX = "qcompile", "qonnx.custom_op.general"
NP_OF = {
    TensorProto.FLOAT: np.float32,
    TensorProto.DOUBLE: np.float64,
    TensorProto.UINT64: np.uint64,
    TensorProto.INT64: np.int64,
    TensorProto.INT32: np.int32,
    TensorProto.UINT8: np.uint8,
    TensorProto.INT8: np.int8,
    TensorProto.UINT32: np.uint32,
}
TYPE_OF = {np.dtype(v): k for k, v in NP_OF.items()}


@dataclass
class Spec:
    """A valid one-node model: the op, its inputs (name -> array), attributes, output types."""

    op: str
    domain: str
    inputs: dict[str, np.ndarray]
    attrs: dict[str, Any]
    outputs: list[int]
    constant: tuple[str, ...] = ()  # inputs held as initializers (weights laid out at creation)


@dataclass
class Case:
    id: str
    spec: Spec
    node_inputs: list[str] | None = None  # None: the spec's input names
    node_outputs: list[str] | None = None
    compare: bool = True  # a result must equal the twin's
    must_fail: bool = False  # only a clean error passes
    extra: dict = field(default_factory=dict)


# ------------------------------------------------------------------------------ valid specs


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _bits(rng, shape, cg: int) -> np.ndarray:
    """Packed words with the pad bits of each Cg-channel word group zero (SPEC)."""
    from qcompile.ops import packing

    words = rng.integers(0, 2**63, size=shape, dtype=np.uint64) * np.uint64(2) + rng.integers(
        0, 2, size=shape, dtype=np.uint64
    )
    wg = packing.words_for(cg)
    valid = np.array(
        [(2**64 - 1) if cg - k * 64 >= 64 else (1 << (cg - k * 64)) - 1 for k in range(wg)],
        dtype=np.uint64,
    )
    reps = shape[-1] // wg
    return words & np.tile(valid, reps)


def base_specs() -> list[Spec]:
    r = _rng(16)
    f = lambda *s: r.standard_normal(s).astype(np.float32)
    ones = lambda n: r.uniform(0.5, 2, n).astype(np.float32)
    conv = dict(in_channels=5, kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[1, 1], dilations=[1, 1])
    dw_conv = dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[2, 1], dilations=[1, 1], group=4)
    direct_conv = dict(kernel_shape=[3, 3], pads=[1, 0, 1, 2], strides=[1, 1], dilations=[1, 1])
    thr = r.integers(-10, 10, 8).astype(np.int32)
    dirs = r.choice(np.array([-1, 1], np.int32), 8)
    shift_w = r.integers(0, 256, (8, 18)).astype(np.uint8)

    def levels(m: int) -> tuple[np.ndarray, np.ndarray]:  # monotone multi-thresholds [m, 3], directions
        d = r.choice(np.array([-1, 1], np.int32), m)
        t = np.sort(r.integers(-20, 20, (m, 3)), axis=1)
        return np.where(d[:, None] > 0, t, t[:, ::-1]).astype(np.int32), d

    conv_t, conv_d = levels(8)
    dense_t, dense_d = levels(4)
    mlp_t, mlp_d = levels(8)
    return [
        Spec("BinarizePack", QC, {"X": f(2, 5, 3, 3)}, {"group": 1}, [TensorProto.UINT64]),
        Spec("XnorConv", QC, {"X": _bits(r, (1, 5, 5, 1), 5), "W": _bits(r, (8, 3, 3, 1), 5),
                              "scale": ones(8), "bias": f(8)}, dict(conv), [TensorProto.FLOAT],
             constant=("W",)),
        Spec("XnorConvThreshold", QC, {"X": _bits(r, (1, 5, 5, 1), 5), "W": _bits(r, (8, 3, 3, 1), 5),
                                       "threshold": thr, "direction": dirs},
             dict(conv, out_group=2), [TensorProto.UINT64], constant=("W",)),
        Spec("XnorGemm", QC, {"X": _bits(r, (2, 2), 100), "W": _bits(r, (4, 2), 100), "scale": ones(4),
                              "bias": f(4)}, {"in_features": 100}, [TensorProto.FLOAT], constant=("W",)),
        Spec("PackedMaxPool", QC, {"X": _bits(r, (1, 4, 4, 1), 40), "or_mask": _bits(r, (1,), 40)},
             {"kernel_shape": [2, 2], "strides": [2, 2]}, [TensorProto.UINT64]),
        Spec("QuantizePack", QC, {"X": f(1, 3, 4, 4)},
             {"scale": 0.5, "bitwidth": 2, "signed": 1, "planes": 2, "group": 1}, [TensorProto.UINT64]),
        Spec("BitSerialConv", QC, {"X": _bits(r, (1, 4, 4, 2), 5), "W": _bits(r, (8, 3, 3, 2), 5),
                                   "scale": ones(8), "bias": f(8)},
             dict(conv, act_coeffs=[1, 2], weight_coeffs=[1, -2]), [TensorProto.FLOAT], constant=("W",)),
        Spec("BitSerialGemm", QC, {"X": _bits(r, (2, 4), 100), "W": _bits(r, (4, 4), 100),
                                   "scale": ones(4), "bias": f(4)},
             {"in_features": 100, "act_coeffs": [1, 2], "weight_coeffs": [1, -2]}, [TensorProto.FLOAT],
             constant=("W",)),
        Spec("BitSerialConvThreshold", QC, {"X": _bits(r, (1, 4, 4, 2), 5), "W": _bits(r, (8, 3, 3, 2), 5),
                                            "thresholds": conv_t, "direction": conv_d},
             dict(conv, act_coeffs=[1, 2], weight_coeffs=[1, -2], out_base=-2, out_planes=2, out_group=2),
             [TensorProto.UINT64], constant=("W",)),
        Spec("BitSerialGemmThreshold", QC, {"X": _bits(r, (2, 4), 100), "W": _bits(r, (4, 4), 100),
                                            "thresholds": dense_t, "direction": dense_d},
             {"in_features": 100, "act_coeffs": [1, 2], "weight_coeffs": [1, -2], "out_planes": 2},
             [TensorProto.UINT64], constant=("W",)),
        # two layers, 100 -> 8 -> 4: W = 8*2*2 + 4*2*1 words, 8 channels x 3 thresholds
        Spec("BitSerialMlp", QC, {"X": f(2, 100), "W": _bits(r, (40,), 64), "thresholds": mlp_t.reshape(-1),
                                  "direction": mlp_d, "scale": ones(4), "bias": f(4)},
             {"scale": 0.5, "bitwidth": 2, "signed": 1, "features": [100, 8, 4], "act_coeffs": [1, -2, 1, -2],
              "act_planes": [2, 2], "weight_coeffs": [1, -2, 1, -2], "weight_planes": [2, 2],
              "weight_offset": [0, 0], "levels": [3], "out_base": [-2]},
             [TensorProto.FLOAT], constant=("W", "thresholds", "direction")),
        Spec("PlaneMaxPool", QC, {"X": _bits(r, (1, 4, 4, 4), 70), "or_mask": _bits(r, (2,), 70)},
             {"kernel_shape": [2, 2], "strides": [2, 2], "planes": 2, "group": 1, "signed": 1},
             [TensorProto.UINT64]),
        Spec("Pow2Quant", QC, {"X": f(2, 3, 4)}, {"thresholds": [0.25, 0.5, 1.0]}, [TensorProto.FLOAT]),
        Spec("ShiftConv", QC, {"X": f(1, 4, 5, 5), "W": shift_w, "scale": ones(8), "bias": f(8)},
             dict(conv, in_channels=4, act_mode="uniform", act_scale=0.1, act_bitwidth=4, act_signed=1),
             [TensorProto.FLOAT], constant=("W",)),
        Spec("ShiftGemm", QC, {"X": f(2, 10), "W": r.integers(0, 256, (4, 5)).astype(np.uint8),
                               "scale": ones(4), "bias": f(4)},
             {"in_features": 10, "act_mode": "pow2", "act_thresholds": [0.25, 0.5, 1.0]},
             [TensorProto.FLOAT], constant=("W",)),
        Spec("Requantize", QC, {"acc": r.integers(-100, 100, (1, 4, 4, 4)).astype(np.int32), "scale": f(4),
                                "bias": f(4), "y_scale": np.array([0.5], np.float32),
                                "y_zero_point": np.array([1], np.int8)},
             {"lo": -3, "hi": 3, "kernel_shape": [2, 2], "strides": [2, 2]}, [TensorProto.INT8]),
        Spec("DepthwiseConvInteger", QC, {"x": r.integers(-8, 8, (1, 4, 5, 5)).astype(np.int8),
                                          "w": r.integers(0, 16, (4, 1, 3, 3)).astype(np.uint8),
                                          "x_zero_point": np.array([1], np.int8),
                                          "w_zero_point": np.array([7], np.uint8)},
             dw_conv, [TensorProto.INT32]),
        Spec("DepthwiseConvRequantize", QC, {"x": r.integers(-8, 8, (1, 4, 5, 5)).astype(np.int8),
                                             "w": r.integers(0, 16, (4, 1, 3, 3)).astype(np.uint8),
                                             "x_zero_point": np.array([1], np.int8),
                                             "w_zero_point": np.array([7], np.uint8), "scale": f(4),
                                             "bias": f(4), "y_scale": np.array([0.5], np.float32),
                                             "y_zero_point": np.array([0], np.uint8)},
             {**dw_conv, "lo": 0, "hi": 15}, [TensorProto.UINT8]),
        Spec("DirectConvInteger", QC, {"x": r.integers(-8, 8, (1, 4, 5, 5)).astype(np.int8),
                                       "w": r.integers(0, 16, (6, 4, 3, 3)).astype(np.uint8),
                                       "x_zero_point": np.array([1], np.int8),
                                       "w_zero_point": np.array([7], np.uint8)},
             direct_conv, [TensorProto.INT32], constant=("w",)),
        Spec("DirectConvRequantize", QC, {"x": r.integers(-8, 8, (1, 4, 5, 5)).astype(np.int8),
                                          "w": r.integers(-8, 8, (6, 2, 3, 3)).astype(np.int8),
                                          "x_zero_point": np.array([1], np.int8),
                                          "w_zero_point": np.array([0], np.int8), "scale": f(6),
                                          "bias": f(6), "y_scale": np.array([0.5], np.float32),
                                          "y_zero_point": np.array([0], np.uint8)},
             {**direct_conv, "group": 2, "lo": 0, "hi": 15}, [TensorProto.UINT8]),
        Spec("ThresholdPack", QC, {"D": r.integers(-50, 50, (1, 8, 3, 3)).astype(np.int32), "threshold": thr,
                                   "direction": dirs}, {"out_group": 2}, [TensorProto.UINT64]),
        Spec("BipolarQuant", QONNX, {"X": f(2, 3), "scale": ones(1)}, {}, [TensorProto.FLOAT]),
        Spec("Quant", QONNX, {"X": f(2, 3), "scale": ones(1), "zeropt": np.zeros(1, np.float32),
                              "bitwidth": np.array(4, np.float32)}, {"signed": 1}, [TensorProto.FLOAT]),
        Spec("IntQuant", QONNX, {"X": f(2, 3), "scale": ones(1), "zeropt": np.zeros(1, np.float32),
                                 "bitwidth": np.array(4, np.float32)}, {"narrow": 1}, [TensorProto.FLOAT]),
        Spec("Trunc", QONNX, {"X": np.round(f(2, 3) * 8).astype(np.float32), "scale": ones(1),
                              "zeropt": np.zeros(1, np.float32), "input_bitwidth": np.array(8, np.float32),
                              "output_scale": np.full(1, 4.0, np.float32),
                              "output_bitwidth": np.array(4, np.float32)},
             {"rounding_mode": "FLOOR"}, [TensorProto.FLOAT]),
    ]


# ------------------------------------------------------------------------------ mutations

HUGE = [0, -1, 2**31, 2**40, -(2**62)]


@dataclass(frozen=True)
class Empty:
    """An empty list attribute (onnx.helper cannot infer the type of [])."""

    type: int  # onnx.AttributeProto.INTS or FLOATS


def _attr_values(name: str, value: Any) -> Iterator[tuple[str, Any]]:
    """Hostile replacements for one attribute, by the type of its valid value."""
    if isinstance(value, str):
        yield from [("empty", ""), ("bogus", "bogus"), ("long", "x" * 10000), ("as_int", 3)]
    elif isinstance(value, (bool, int)):
        yield from [(f"int{v}", v) for v in HUGE]
        yield from [("as_float", 1.5), ("as_string", "1"), ("as_ints", [1, 1])]
    elif isinstance(value, float):
        yield from [("nan", float("nan")), ("inf", float("inf")), ("-inf", float("-inf")), ("zero", 0.0),
                    ("neg", -1.0), ("huge", 1e38), ("as_int", 2), ("as_string", "0.5")]
    elif isinstance(value, list) and value and isinstance(value[0], float):
        yield from [("empty", Empty(onnx.AttributeProto.FLOATS)), ("nan", [float("nan")] * len(value)), ("inf", [float("inf")] * len(value)),
                    ("descending", sorted(value, reverse=True)), ("too_many", [0.1 * (i + 1) for i in range(9)]),
                    ("neg", [-v for v in value]), ("as_ints", [1, 2])]
    elif isinstance(value, list):
        yield from [("empty", Empty(onnx.AttributeProto.INTS)), ("longer", [*value, value[-1]]), ("shorter", value[:-1] or [1, 1, 1])]
        for i in range(len(value)):
            for v in (-1, 0, 2**40, -(2**40)):
                bad = list(value)
                bad[i] = v
                yield (f"[{i}]={v}", bad)
        yield ("as_floats", [float(v) for v in value])


def _with(spec: Spec, **changes) -> Spec:
    s = copy.deepcopy(spec)
    for k, v in changes.items():
        setattr(s, k, v)
    return s


def _retyped(a: np.ndarray) -> list[np.ndarray]:
    if a.dtype == np.float32:
        return [a.astype(np.float64), a.astype(np.int64)]
    if a.dtype == np.uint64:
        return [a.astype(np.int64), a.astype(np.uint32)]
    if a.dtype == np.int32:
        return [a.astype(np.int64), a.astype(np.float32)]
    return [a.astype(np.int32), a.astype(np.float32)]


def _random_like(a: np.ndarray, shape: tuple[int, ...], seed: int) -> np.ndarray:
    r = _rng(seed)
    if a.dtype == np.uint64 and a.size:
        # Packed words: the valid words cycled, so a word keeps its position within a pixel
        # (and its zero pad bits) when the last dim is unchanged; a changed last dim is refused.
        return np.resize(a, shape)
    if a.dtype == np.float32:
        return r.standard_normal(shape).astype(np.float32)
    if a.dtype == np.int32 and a.size and set(np.unique(a)) <= {-1, 1}:
        return r.choice(np.array([-1, 1], np.int32), shape)
    hi = 2**31 if a.dtype == np.int32 else 256 if a.dtype == np.uint8 else 2**63
    return r.integers(0, hi, size=shape).astype(a.dtype)


def cases() -> list[Case]:
    """The corpus, deterministic: the same list (and ids) in every process."""
    out: list[Case] = []
    for spec in base_specs():
        op = spec.op
        names = list(spec.inputs)
        add = lambda suffix, s=spec, op=op, **kw: out.append(Case(f"{op}/{suffix}", s, **kw))
        add("valid")
        if spec.constant:
            add("valid_constant_w", _with(spec, constant=spec.constant))
            add("valid_dynamic_w", _with(spec, constant=()))
        # Omitted and missing inputs and outputs: refused when the session is created.
        for i, n in enumerate(names):
            add(f"omit_input_{n}", node_inputs=[("" if j == i else m) for j, m in enumerate(names)],
                must_fail=True)
        for k in range(len(names)):
            # Trunc's 5-input form is QONNX's version 1 (no output_scale): valid, as its twin says.
            v1 = spec.op == "Trunc" and k == 5
            add(f"only_{k}_inputs", node_inputs=names[:k], must_fail=not v1)
        add("extra_input", node_inputs=[*names, names[-1]], must_fail=True)
        add("omit_output", node_outputs=[""], must_fail=True)
        add("extra_output", node_outputs=["Y", "Y2"], must_fail=True)
        # Element types, ranks, dims.
        for n, a in spec.inputs.items():
            for b in _retyped(a):
                add(f"dtype_{n}_{b.dtype}", _with(spec, inputs={**spec.inputs, n: b}, constant=()),
                    must_fail=True)
            shapes = {"rank0": (), "rank1": (3,), "lead1": (1, *a.shape), "rank5": (1, 1, 2, 1, 2)}
            for d in range(a.ndim):
                for label, v in (("zero", 0), ("plus1", a.shape[d] + 1), ("minus1", max(a.shape[d] - 1, 0))):
                    shp = list(a.shape)
                    shp[d] = v
                    shapes[f"dim{d}_{label}"] = tuple(shp)
            for label, shp in shapes.items():
                if shp == a.shape:
                    continue
                b = _random_like(a, shp, seed=len(out))
                for const in ((False, True) if n in spec.constant else (False,)):
                    s = _with(spec, inputs={**spec.inputs, n: b}, constant=(n,) if const else ())
                    add(f"shape_{n}_{label}{'_const' if const else ''}", s)
        # Hostile values in float inputs; the SPEC fixes what they give.
        for n, a in spec.inputs.items():
            if a.dtype != np.float32:
                continue
            for label, v in (("nan", np.nan), ("inf", np.inf), ("-inf", -np.inf), ("-0", -0.0), ("huge", 3e38)):
                b = a.copy()
                b.reshape(-1)[:: max(a.size // 3, 1)] = v
                add(f"value_{n}_{label}", _with(spec, inputs={**spec.inputs, n: b}))
        # Packed inputs with every bit set, pad bits included: SPEC leaves the result open, never
        # an out-of-bounds access.
        for n, a in spec.inputs.items():
            if a.dtype == np.uint64 and a.size:
                b = np.full_like(a, np.uint64(2**64 - 1))
                add(f"value_{n}_all_ones", _with(spec, inputs={**spec.inputs, n: b}, constant=()),
                    compare=False)
        if "direction" in spec.inputs:
            for v in (0, 2, -2**31):
                b = spec.inputs["direction"].copy()
                b[3] = v
                add(f"value_direction_{v}", _with(spec, inputs={**spec.inputs, "direction": b}),
                    must_fail=True)
        if "threshold" in spec.inputs:
            b = spec.inputs["threshold"].copy()
            b[:4] = [np.iinfo(np.int32).min, np.iinfo(np.int32).max, 0, -1]
            add("value_threshold_extremes", _with(spec, inputs={**spec.inputs, "threshold": b}))
        # Attributes: removed, retyped, hostile values; unknown ones are ignored.
        for a, v in spec.attrs.items():
            attrs = {k: w for k, w in spec.attrs.items() if k != a}
            add(f"attr_{a}_absent", _with(spec, attrs=attrs))
            for label, bad in _attr_values(a, v):
                add(f"attr_{a}_{label}", _with(spec, attrs={**spec.attrs, a: bad}))
        add("attr_unknown_ignored", _with(spec, attrs={**spec.attrs, "no_such_attribute": 7}))
        if op in KERNEL_OPS:
            for k in ("bogus", "", "AVX2", "reference\x01"):
                add(f"attr_kernel_{k!r}", _with(spec, attrs={**spec.attrs, "kernel": k}))
    # Convolution geometry the op library must check itself (whatever a compiler emits).
    for spec in base_specs():
        if "kernel_shape" not in spec.attrs:
            continue
        geos = {
            "pads_beyond_image": {"pads": [9, 9, 9, 9]},
            "pads_top_only": {"pads": [6, 0, 0, 0]},
            "window_in_padding": {"pads": [5, 1, 0, 1]},
            "stride_huge": {"strides": [2**40, 2**40]},
            "stride_2p24": {"strides": [2**24, 2**24]},
            "dilation_huge": {"dilations": [2**24, 1]},
            "kernel_huge": {"kernel_shape": [2**24, 2**24]},
            "pads_neg": {"pads": [-1, -1, 0, 0]},
            "pads_2p40": {"pads": [2**40, 0, 0, 0]},
        }
        for label, ch in geos.items():
            out.append(Case(f"{spec.op}/geometry_{label}", _with(spec, attrs={**spec.attrs, **ch})))
    return out


KERNEL_OPS = {"XnorConv", "XnorConvThreshold", "XnorGemm", "QuantizePack", "BitSerialConv",
              "BitSerialGemm", "BitSerialConvThreshold", "BitSerialGemmThreshold", "BitSerialMlp", "ShiftConv", "ShiftGemm",
              "DepthwiseConvInteger", "DepthwiseConvRequantize", "DirectConvInteger", "DirectConvRequantize",
              "Requantize"}


# ------------------------------------------------------------------------------ one case


def build_model(c: Case) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    s = c.spec
    ins = c.node_inputs if c.node_inputs is not None else list(s.inputs)
    outs = c.node_outputs if c.node_outputs is not None else ["Y"]
    node = helper.make_node(s.op, ins, outs, domain=s.domain, name=f"case_{c.id}")
    for k, v in s.attrs.items():
        if isinstance(v, Empty):
            node.attribute.append(onnx.AttributeProto(name=k, type=v.type))
        else:
            node.attribute.append(helper.make_attribute(k, v))
    consts = [n for n in s.constant if n in s.inputs]
    graph_in = [n for n in dict.fromkeys(ins) if n and n not in consts and n in s.inputs]
    graph = helper.make_graph(
        [node],
        "hostile",
        [helper.make_tensor_value_info(n, TYPE_OF[s.inputs[n].dtype], None) for n in graph_in],
        [helper.make_tensor_value_info(o, s.outputs[0], None) for o in outs if o],
        initializer=[numpy_helper.from_array(s.inputs[n], n) for n in consts],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(QC, 1), helper.make_opsetid(QONNX, 1)]
    )
    model.ir_version = 8
    return model, {n: s.inputs[n] for n in graph_in}


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    b = np.asarray(b)
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.dtype.kind == "f":
        return bool(np.array_equal(a, b, equal_nan=True) and np.array_equal(np.signbit(a), np.signbit(b)))
    return bool(np.array_equal(a, b))


def run_case(c: Case, ort_errors: tuple[type, ...]) -> dict:
    """Runs one case in this process: {'id', 'outcome', 'detail'}; outcome is 'error' (clean),
    'ok' (a result as the twin's, or one the SPEC leaves open), or a failure: 'unclean' (a
    non-onnxruntime exception or an empty message), 'accepted' (a result where only an error
    passes), 'mismatch' (a result that differs from the twin's)."""
    from qcompile import runtime
    from qcompile.ops import evaluator

    model, feeds = build_model(c)
    so_threads = 1
    try:
        sess = runtime.InferenceSession(model.SerializeToString(), threads=so_threads)
        got = sess.run(None, feeds)
    except ort_errors as e:
        msg = str(e)
        if not msg.strip():
            return {"id": c.id, "outcome": "unclean", "detail": f"{type(e).__name__} with no message"}
        return {"id": c.id, "outcome": "error", "detail": msg.splitlines()[0][:300]}
    except Exception as e:  # anything else is not a clean onnxruntime error
        return {"id": c.id, "outcome": "unclean", "detail": f"{type(e).__name__}: {e}"[:300]}
    if c.must_fail:
        return {"id": c.id, "outcome": "accepted", "detail": f"shapes {[g.shape for g in got]}"}
    if not c.compare:
        return {"id": c.id, "outcome": "ok", "detail": "result (SPEC leaves it open)"}
    twin_model = copy.deepcopy(model)
    node = twin_model.graph.node[0]
    # The twin models the semantics: the kernel variant and ignored attributes are not its own.
    kept = [a for a in node.attribute if a.name not in ("kernel", "no_such_attribute")]
    del node.attribute[:]
    node.attribute.extend(kept)
    try:
        with np.errstate(all="ignore"):
            want = evaluator.run(twin_model, feeds)
    except Exception as e:  # the twin refuses what the library accepted
        return {"id": c.id, "outcome": "mismatch", "detail": f"twin raised {type(e).__name__}: {e}"[:300]}
    if len(want) != len(got):
        return {"id": c.id, "outcome": "mismatch", "detail": "output count differs from the twin's"}
    for g, w in zip(got, want, strict=True):
        if _same(g, w):
            continue
        w = np.asarray(w)
        if w.size == g.size and w.shape[w.ndim - g.ndim :] == g.shape and _same(g, w.reshape(g.shape)):
            # Same values, but the twin broadcast to a higher rank than X's (SPEC: X's shape);
            # the twin's side of issue #16 item 6, reported apart from op-library failures.
            return {"id": c.id, "outcome": "twin_shape_gap", "detail": f"twin {w.shape}, op {g.shape}"}
        return {"id": c.id, "outcome": "mismatch", "detail": f"result differs from the numpy twin "
                f"(op {g.dtype}{g.shape}, twin {w.dtype}{w.shape})"}
    return {"id": c.id, "outcome": "ok", "detail": "equals the numpy twin"}


# Ids the worker treats as a crash and a hang (the runner's self-test, tests/ops/test_ops_hostile_corpus.py).
SELFTEST_CRASH, SELFTEST_HANG = "selftest/abort", "selftest/sleep"


def worker() -> None:
    import onnxruntime as ort  # noqa: F401  (before the library, as every host loads it)
    from onnxruntime.capi import onnxruntime_pybind11_state as st

    errors = tuple(
        v for v in vars(st).values() if isinstance(v, type) and issubclass(v, Exception)
    )
    by_id = {c.id: c for c in cases()}
    for cid in json.load(sys.stdin):
        print("START " + cid, flush=True)
        if cid == SELFTEST_CRASH:  # the runner's own test: a worker that dies mid-batch
            os.abort()
        if cid == SELFTEST_HANG:
            time.sleep(3600)
        print("RESULT " + json.dumps(run_case(by_id[cid], errors)), flush=True)


# ------------------------------------------------------------------------------ runner

SANITIZER_MARKS = ("ERROR: AddressSanitizer", "runtime error:", "ERROR: LeakSanitizer", "UndefinedBehaviorSanitizer")


def _spawn(ids: list[str], timeout: float) -> tuple[list[dict], str | None, str, bool]:
    """One worker over ids: (results, id it died or hung on, stderr, hung)."""
    cmd = [sys.executable, os.path.abspath(__file__), "worker"]
    try:
        p = subprocess.run(cmd, input=json.dumps(ids), capture_output=True, text=True, timeout=timeout)
        stdout, stderr, hung, rc = p.stdout, p.stderr, False, p.returncode
    except subprocess.TimeoutExpired as e:
        as_text = lambda b: b.decode(errors="replace") if isinstance(b, bytes) else (b or "")
        stdout, stderr, hung, rc = as_text(e.stdout), as_text(e.stderr), True, None
    results, current = [], None
    for line in stdout.splitlines():
        if line.startswith("START "):
            current = line[6:]
        elif line.startswith("RESULT "):
            results.append(json.loads(line[7:]))
            current = None
    if not hung and rc == 0 and current is None and len(results) == len(ids):
        return results, None, stderr, False
    if current is None:  # died between cases (at exit): blame the last one run
        current = ids[len(results)] if len(results) < len(ids) else ids[-1]
    return results, current, stderr, hung


def run_corpus(ids: list[str] | None = None, batch: int = 200, case_timeout: float = 30.0) -> dict:
    """Every case in worker processes; a crash or hang is attributed to its case (confirmed by a
    run of that case alone) and the rest of the batch resumes in a fresh worker."""
    all_ids = ids if ids is not None else [c.id for c in cases()]
    results: dict[str, dict] = {}
    sanitizer_reports = 0
    pending = list(all_ids)
    while pending:
        chunk, pending = pending[:batch], pending[batch:]
        while chunk:
            got, culprit, stderr, hung = _spawn(chunk, timeout=case_timeout * len(chunk))
            for r in got:
                results[r["id"]] = r
            if culprit is None:
                break
            # Confirm alone: a death that a fresh process repeats is the case's own; one that only
            # the batch showed is still counted against the case it happened in.
            _, died_alone, err_alone, hung_alone = _spawn([culprit], timeout=case_timeout)
            report = err_alone if died_alone else stderr
            was_hung = hung_alone if died_alone else hung
            if any(m in report for m in SANITIZER_MARKS):
                sanitizer_reports += 1
                outcome = "sanitizer"
            else:
                outcome = "hang" if was_hung else "crash"
            tail = "\n".join(report.strip().splitlines()[-8:])[-1500:]
            note = "" if died_alone else " (in its batch only)"
            results[culprit] = {"id": culprit, "outcome": outcome, "detail": tail + note}
            chunk = chunk[chunk.index(culprit) + 1 :]
    counts: dict[str, int] = {}
    for r in results.values():
        counts[r["outcome"]] = counts.get(r["outcome"], 0) + 1
    return {"cases": len(all_ids), "counts": counts, "sanitizer_reports": sanitizer_reports,
            "results": [results[i] for i in all_ids]}


FAILURES = ("crash", "hang", "sanitizer", "unclean", "accepted", "mismatch", "twin_shape_gap")


def main() -> int:
    if sys.argv[1:] == ["worker"]:
        worker()
        return 0
    t0 = time.monotonic()
    report = run_corpus()
    bad = [r for r in report["results"] if r["outcome"] in FAILURES]
    for r in bad:
        print(f"{r['outcome']}: {r['id']}: {r['detail']}", file=sys.stderr)
    summary = {k: v for k, v in report.items() if k != "results"}
    summary["seconds"] = round(time.monotonic() - t0, 1)
    print(json.dumps(summary))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
