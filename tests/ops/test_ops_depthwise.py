"""qcompile::DepthwiseConvInteger and DepthwiseConvRequantize: the C++ kernels against onnxruntime's
ConvInteger (and ConvInteger -> Requantize) and the numpy twin, bit for bit, on every type pair,
strides, pads, dilations, kernel sizes, batch, both kernel variants this CPU runs and 1 / 2
threads; and their clean errors."""

from __future__ import annotations

import itertools

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from qcompile import runtime
from qcompile.ops import int8

TYPES = {np.int8: TensorProto.INT8, np.uint8: TensorProto.UINT8}
VARIANTS = runtime.kernel_variants("DepthwiseConvInteger")
# (x shape, kernel, strides, pads, dilations): 3x3 at stride 1 and 2 (MobileNet's), asymmetric
# pads, dilation, 5x3 / 1x1 / 7x7 kernels, pads past the kernel, planes below and above 16 wide
GEOMETRIES = [
    ((1, 3, 7, 9), (3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),
    ((2, 5, 8, 8), (3, 3), (2, 2), (1, 1, 1, 1), (1, 1)),
    ((1, 4, 9, 10), (3, 3), (2, 2), (0, 0, 1, 1), (1, 1)),
    ((1, 2, 11, 13), (5, 3), (3, 2), (2, 1, 0, 2), (2, 1)),
    ((1, 3, 6, 6), (1, 1), (1, 1), (0, 0, 0, 0), (1, 1)),
    ((1, 1, 5, 5), (3, 3), (1, 3), (3, 3, 3, 3), (1, 2)),
    ((1, 2, 20, 23), (7, 7), (1, 1), (3, 3, 3, 3), (1, 1)),
    ((1, 70, 14, 14), (3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),
]


def _session(model, threads: int = 1) -> ort.InferenceSession:
    so = runtime.session_options()
    so.intra_op_num_threads = threads
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def _range(dtype) -> tuple[int, int]:
    info = np.iinfo(dtype)
    return int(info.min), int(info.max) + 1


def _case(geometry, xdt, wdt, seed):
    shape, k, s, p, d = geometry
    rng = np.random.default_rng(seed)
    c = shape[1]
    w = rng.integers(*_range(wdt), (c, 1, *k)).astype(wdt)
    xzp = np.array([rng.integers(*_range(xdt))], xdt)
    wzp = np.array([rng.integers(*_range(wdt))], wdt)
    x = rng.integers(*_range(xdt), shape).astype(xdt)
    attrs = dict(kernel_shape=list(k), strides=list(s), pads=list(p), dilations=list(d), group=c)
    return x, w, xzp, wzp, attrs


def _model(nodes, x, inits, out_type):
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TYPES[x.dtype.type], list(x.shape))],
                              [helper.make_tensor_value_info("y", out_type, None)],
                              [numpy_helper.from_array(v, k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("qcompile", 1)])


def _conv_models(x, w, xzp, wzp, attrs, kernel):
    inits = {"w": w, "xzp": xzp, "wzp": wzp}
    ref = _model([helper.make_node("ConvInteger", ["x", "w", "xzp", "wzp"], ["y"], **attrs)], x, inits, TensorProto.INT32)
    new = _model([helper.make_node("DepthwiseConvInteger", ["x", "w", "xzp", "wzp"], ["y"], domain="qcompile",
                                   kernel=kernel, **attrs)], x, inits, TensorProto.INT32)
    return ref, new


@pytest.mark.parametrize("kernel", VARIANTS)
@pytest.mark.parametrize("xdt,wdt", list(itertools.product(TYPES, TYPES)))
@pytest.mark.parametrize("geometry", GEOMETRIES, ids=lambda g: "x".join(map(str, g[0])) + f"-k{g[1][0]}{g[1][1]}-s{g[2][0]}{g[2][1]}")
def test_depthwise_conv_integer_equals_conv_integer_and_the_twin(geometry, xdt, wdt, kernel):
    x, w, xzp, wzp, attrs = _case(geometry, xdt, wdt, seed=len(geometry[0]) + geometry[0][1])
    ref, new = _conv_models(x, w, xzp, wzp, attrs, kernel)
    want = _session(ref).run(None, {"x": x})[0]
    for threads in (1, 2):
        np.testing.assert_array_equal(_session(new, threads).run(None, {"x": x})[0], want)
    twin = int8.depthwise_conv_integer(x, w, xzp, wzp, attrs["kernel_shape"], attrs["strides"], attrs["pads"],
                                       attrs["dilations"])
    np.testing.assert_array_equal(twin, want)


def _requantize_inputs(c, ydt, per_channel, seed):
    rng = np.random.default_rng(seed)
    s = rng.uniform(-0.02, 0.05, c).astype(np.float32)
    s[0] = np.float32(0.125)  # (acc * ys / 2) / ys: ties on every odd sum, rounded to even
    b = rng.uniform(-2, 2, c).astype(np.float32)
    b[0] = 0.0
    ys = rng.uniform(0.1, 0.9, c).astype(np.float32) if per_channel else np.array([0.25], np.float32)
    if per_channel:
        ys[0] = 0.25
    zp = np.array([2 if ydt == np.uint8 else -1], ydt)
    lo, hi = (0, 15) if ydt == np.uint8 else (-8, 7)
    return dict(s=s, b=b, ys=ys, yzp=zp), lo, hi


@pytest.mark.parametrize("kernel", VARIANTS)
@pytest.mark.parametrize("ydt,per_channel", [(np.int8, False), (np.uint8, True), (np.uint8, False)])
@pytest.mark.parametrize("geometry", GEOMETRIES[:4] + GEOMETRIES[-1:], ids=lambda g: "x".join(map(str, g[0])))
def test_depthwise_conv_requantize_equals_conv_integer_then_requantize(geometry, ydt, per_channel, kernel):
    x, w, xzp, wzp, attrs = _case(geometry, np.int8, np.uint8, seed=3)
    params, lo, hi = _requantize_inputs(x.shape[1], ydt, per_channel, seed=4)
    inits = {"w": w, "xzp": xzp, "wzp": wzp, **params}
    out_type = TYPES[ydt]
    ref = _model([helper.make_node("ConvInteger", ["x", "w", "xzp", "wzp"], ["acc"], **attrs),
                  helper.make_node("Requantize", ["acc", "s", "b", "ys", "yzp"], ["y"], domain="qcompile", axis=1,
                                   lo=lo, hi=hi)], x, inits, out_type)
    new = _model([helper.make_node("DepthwiseConvRequantize", ["x", "w", "xzp", "wzp", "s", "b", "ys", "yzp"], ["y"],
                                   domain="qcompile", lo=lo, hi=hi, kernel=kernel, **attrs)], x, inits, out_type)
    want = _session(ref).run(None, {"x": x})[0]
    for threads in (1, 2):
        got = _session(new, threads).run(None, {"x": x})[0]
        assert got.dtype == ydt
        np.testing.assert_array_equal(got, want)


def _bad_model(op, attrs, w_shape=None, n_inputs=4, ys=None):
    x = np.zeros((1, 4, 6, 6), np.int8)
    inits = {"w": np.zeros(w_shape or (4, 1, 3, 3), np.uint8), "xzp": np.zeros(1, np.int8), "wzp": np.zeros(1, np.uint8)}
    names = ["x", "w", "xzp", "wzp"]
    out = TensorProto.INT32
    if n_inputs == 8:
        inits.update(s=np.ones(4, np.float32), b=np.zeros(4, np.float32),
                     ys=np.array(ys if ys is not None else [1.0], np.float32), yzp=np.zeros(1, np.int8))
        names += ["s", "b", "ys", "yzp"]
        out = TensorProto.INT8
    return _model([helper.make_node(op, names, ["y"], domain="qcompile", **attrs)], x, inits, out), x


BASE = dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1], group=4)


@pytest.mark.parametrize("op,attrs,w_shape,n_inputs,ys,message", [
    ("DepthwiseConvInteger", {**BASE, "group": 2}, None, 4, None, "attribute 'group': expected the input's channel count 4"),
    ("DepthwiseConvInteger", {k: v for k, v in BASE.items() if k != "group"}, None, 4, None, "attribute 'group'"),
    ("DepthwiseConvInteger", BASE, (4, 2, 3, 3), 4, None, "input w: expected [4, 1, 3, 3]"),
    ("DepthwiseConvInteger", {**BASE, "kernel_shape": [5, 5], "pads": [0, 0, 0, 0], "strides": [1, 1]}, (4, 1, 5, 5),
     4, None, None),
    ("DepthwiseConvInteger", {**BASE, "kernel_shape": [9, 9], "pads": [0, 0, 0, 0]}, (4, 1, 9, 9), 4, None, "output size < 1"),
    ("DepthwiseConvInteger", {**BASE, "kernel": "nope"}, None, 4, None, "is not a kernel variant"),
    ("DepthwiseConvRequantize", {**BASE, "lo": 5, "hi": 1}, None, 8, None, "attributes lo, hi"),
    ("DepthwiseConvRequantize", BASE, None, 8, [0.0], "input y_scale: expected positive scales"),
    ("DepthwiseConvRequantize", BASE, None, 8, [1.0, 2.0], "inputs y_scale, y_zero_point"),
])
def test_bad_nodes_fail_cleanly_naming_the_op(op, attrs, w_shape, n_inputs, ys, message):
    model, x = _bad_model(op, attrs, w_shape, n_inputs, ys)
    if message is None:  # the valid neighbour of the cases around it runs
        assert _session(model).run(None, {"x": x})[0].shape == (1, 4, 2, 2)
        return
    with pytest.raises(Exception, match=f"qcompile::{op}.*{__import__('re').escape(message)}"):
        _session(model).run(None, {"x": x})
