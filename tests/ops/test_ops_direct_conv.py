"""qcompile::DirectConvInteger and DirectConvRequantize: the C++ kernels against onnxruntime's
ConvInteger (and ConvInteger -> Requantize) and the numpy twin, bit for bit, on every type pair,
pads, strides, dilations, kernel sizes, channel counts around the kernels' blocks (4 input channels a quad,
4 / 8 output channels a block), groups, batch, every kernel variant this CPU runs and 1 / 2
threads, with constant and non-constant weights; and their clean errors."""

from __future__ import annotations

import itertools
import re

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from qcompile import runtime
from qcompile.ops import int8

TYPES = {np.int8: TensorProto.INT8, np.uint8: TensorProto.UINT8}
VARIANTS = runtime.kernel_variants("DirectConvInteger")
# (x shape, out channels, kernel, pads, dilations, group): CNV's valid 3x3, same-padded 3x3,
# asymmetric pads, 1x1, 5x3 with dilation, 7x7, channels not a multiple of 4 (3, 5, 17) and
# out channels not a multiple of a block (1, 5, 9, 33), groups, batch 2, flat runs from 1 output
# (below one vector) to thousands (past several 48-output tiles), and channels past one AMX chunk
# of 64 (100: 25 quads, rounded up to 32; 136 in 2 groups: 17 quads each)
GEOMETRIES = [
    ((1, 3, 12, 12), 8, (3, 3), (0, 0, 0, 0), (1, 1), 1, (1, 1)),
    ((1, 8, 9, 10), 5, (3, 3), (1, 1, 1, 1), (1, 1), 1, (1, 1)),
    ((2, 5, 7, 6), 9, (3, 3), (0, 1, 2, 1), (1, 1), 1, (1, 1)),
    ((1, 17, 6, 6), 33, (1, 1), (0, 0, 0, 0), (1, 1), 1, (1, 1)),
    ((1, 4, 11, 13), 4, (5, 3), (2, 1, 0, 2), (2, 1), 1, (1, 1)),
    ((1, 8, 3, 3), 16, (3, 3), (0, 0, 0, 0), (1, 1), 1, (1, 1)),
    ((1, 6, 20, 23), 7, (7, 7), (3, 3, 3, 3), (1, 1), 1, (1, 1)),
    ((1, 8, 8, 8), 12, (3, 3), (1, 1, 1, 1), (1, 1), 2, (1, 1)),
    ((1, 64, 30, 30), 64, (3, 3), (0, 0, 0, 0), (1, 1), 1, (1, 1)),
    ((1, 1, 5, 5), 1, (2, 2), (0, 0, 0, 0), (1, 1), 1, (1, 1)),
    ((1, 100, 6, 7), 40, (3, 3), (1, 1, 1, 1), (1, 1), 1, (1, 1)),
    ((1, 136, 5, 5), 34, (1, 1), (0, 0, 0, 0), (1, 1), 2, (1, 1)),
    # strides: ResNet's 3x3 / 2 and 1x1 / 2 downsampling, odd sizes, 3 x 2, a stride past the kernel
    ((1, 16, 9, 9), 24, (3, 3), (1, 1, 1, 1), (1, 1), 1, (2, 2)),
    ((2, 20, 8, 7), 9, (1, 1), (0, 0, 0, 0), (1, 1), 1, (2, 2)),
    ((1, 6, 11, 13), 5, (5, 3), (2, 1, 0, 2), (2, 1), 1, (3, 2)),
    ((1, 4, 10, 10), 4, (2, 2), (0, 0, 1, 1), (1, 1), 2, (4, 3)),
    ((1, 64, 28, 28), 32, (3, 3), (1, 1, 1, 1), (1, 1), 1, (2, 2)),
]


def _ids(g):
    return "x".join(map(str, g[0])) + f"-m{g[1]}-k{g[2][0]}{g[2][1]}-g{g[5]}-s{g[6][0]}{g[6][1]}"


def _session(model, threads: int = 1) -> ort.InferenceSession:
    so = runtime.session_options()
    so.intra_op_num_threads = threads
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def _range(dtype) -> tuple[int, int]:
    info = np.iinfo(dtype)
    return int(info.min), int(info.max) + 1


def _weights(rng, wdt, shape, small: bool):
    """w and its zero point with w - w_zp in int8 (what the op takes); small: |w - w_zp| <= 64,
    which every variant (AVX2's int16 pairs too) runs."""
    lim = 64 if small else 128
    wzp = int(rng.integers(-3, 4)) if wdt == np.int8 else int(rng.integers(120, 136))
    lo, hi = max(_range(wdt)[0], wzp - lim), min(_range(wdt)[1] - 1, wzp + lim - 1)
    w = rng.integers(lo, hi + 1, shape).astype(wdt)
    return w, np.array([wzp], wdt)


def _case(geometry, xdt, wdt, seed, small=True):
    shape, m, k, p, d, group, strides = geometry
    rng = np.random.default_rng(seed)
    w, wzp = _weights(rng, wdt, (m, shape[1] // group, *k), small)
    xzp = np.array([rng.integers(*_range(xdt))], xdt)
    x = rng.integers(*_range(xdt), shape).astype(xdt)
    attrs = dict(kernel_shape=list(k), pads=list(p), dilations=list(d), group=group, strides=list(strides))
    return x, w, xzp, wzp, attrs


def _model(nodes, x, inits, out_type, w_input=None):
    inputs = [helper.make_tensor_value_info("x", TYPES[x.dtype.type], list(x.shape))]
    if w_input is not None:
        inputs.append(helper.make_tensor_value_info("w", TYPES[w_input.dtype.type], list(w_input.shape)))
    graph = helper.make_graph(nodes, "g", inputs, [helper.make_tensor_value_info("y", out_type, None)],
                              [numpy_helper.from_array(v, k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("qcompile", 1)])


def _variants_for(small: bool):
    # the avx2 variant runs only weights whose adjacent pairs fit vpmaddubsw's int16
    return VARIANTS if small else [v for v in VARIANTS if v != "avx2"]


@pytest.mark.parametrize("small", [True, False], ids=["small-w", "full-w"])
@pytest.mark.parametrize("xdt,wdt", list(itertools.product(TYPES, TYPES)))
@pytest.mark.parametrize("geometry", GEOMETRIES, ids=_ids)
def test_direct_conv_integer_equals_conv_integer_and_the_twin(geometry, xdt, wdt, small):
    x, w, xzp, wzp, attrs = _case(geometry, xdt, wdt, seed=geometry[0][1] * 7 + geometry[1], small=small)
    inits = {"w": w, "xzp": xzp, "wzp": wzp}
    ref = _model([helper.make_node("ConvInteger", ["x", "w", "xzp", "wzp"], ["y"], **attrs)], x, inits,
                 TensorProto.INT32)
    want = _session(ref).run(None, {"x": x})[0]
    for kernel in _variants_for(small):
        new = _model([helper.make_node("DirectConvInteger", ["x", "w", "xzp", "wzp"], ["y"], domain="qcompile",
                                       kernel=kernel, **attrs)], x, inits, TensorProto.INT32)
        for threads in (1, 2):
            np.testing.assert_array_equal(_session(new, threads).run(None, {"x": x})[0], want, err_msg=kernel)
    twin = int8.conv_integer(x, w, xzp, wzp, attrs["kernel_shape"], attrs["strides"], attrs["pads"],
                             attrs["dilations"], attrs["group"])
    np.testing.assert_array_equal(twin, want)


@pytest.mark.parametrize("kernel", VARIANTS)
def test_weights_that_are_not_constant_are_laid_out_per_run(kernel):
    x, w, xzp, wzp, attrs = _case(GEOMETRIES[2], np.uint8, np.int8, seed=5)
    ref = _model([helper.make_node("ConvInteger", ["x", "w", "xzp", "wzp"], ["y"], **attrs)], x,
                 {"xzp": xzp, "wzp": wzp}, TensorProto.INT32, w_input=w)
    new = _model([helper.make_node("DirectConvInteger", ["x", "w", "xzp", "wzp"], ["y"], domain="qcompile",
                                   kernel=kernel, **attrs)], x, {"xzp": xzp, "wzp": wzp}, TensorProto.INT32, w_input=w)
    sess = _session(new)
    for seed in (6, 7):  # new weights each run
        w2, _ = _weights(np.random.default_rng(seed), np.int8, w.shape, small=True)
        w2 = (w2.astype(np.int16) - int(_[0]) + int(wzp[0])).clip(-128, 127).astype(np.int8)
        want = _session(ref).run(None, {"x": x, "w": w2})[0]
        np.testing.assert_array_equal(sess.run(None, {"x": x, "w": w2})[0], want)


def _requantize_inputs(m, ydt, per_channel, seed):
    rng = np.random.default_rng(seed)
    s = rng.uniform(-0.002, 0.005, m).astype(np.float32)
    s[0] = np.float32(0.125)  # (acc * ys / 2) / ys: ties on every odd sum, rounded to even
    b = rng.uniform(-2, 2, m).astype(np.float32)
    b[0] = 0.0
    ys = rng.uniform(0.1, 0.9, m).astype(np.float32) if per_channel else np.array([0.25], np.float32)
    if per_channel:
        ys[0] = 0.25
    zp = np.array([2 if ydt == np.uint8 else -1], ydt)
    lo, hi = (0, 15) if ydt == np.uint8 else (-8, 7)
    return dict(s=s, b=b, ys=ys, yzp=zp), lo, hi


@pytest.mark.parametrize("kernel", VARIANTS)
@pytest.mark.parametrize("ydt,per_channel", [(np.int8, False), (np.uint8, True), (np.uint8, False)])
@pytest.mark.parametrize("geometry", GEOMETRIES[:3] + GEOMETRIES[7:9] + GEOMETRIES[12:14], ids=_ids)
def test_direct_conv_requantize_equals_conv_integer_then_requantize(geometry, ydt, per_channel, kernel):
    x, w, xzp, wzp, attrs = _case(geometry, np.uint8, np.int8, seed=3)
    params, lo, hi = _requantize_inputs(geometry[1], ydt, per_channel, seed=4)
    inits = {"w": w, "xzp": xzp, "wzp": wzp, **params}
    out_type = TYPES[ydt]
    ref = _model([helper.make_node("ConvInteger", ["x", "w", "xzp", "wzp"], ["acc"], **attrs),
                  helper.make_node("Requantize", ["acc", "s", "b", "ys", "yzp"], ["y"], domain="qcompile", axis=1,
                                   lo=lo, hi=hi)], x, inits, out_type)
    new = _model([helper.make_node("DirectConvRequantize", ["x", "w", "xzp", "wzp", "s", "b", "ys", "yzp"], ["y"],
                                   domain="qcompile", lo=lo, hi=hi, kernel=kernel, **attrs)], x, inits, out_type)
    want = _session(ref).run(None, {"x": x})[0]
    for threads in (1, 2):
        got = _session(new, threads).run(None, {"x": x})[0]
        assert got.dtype == ydt
        np.testing.assert_array_equal(got, want)


def _bad_model(op, attrs, w=None, n_inputs=4, ys=None, wzp=0):
    x = np.zeros((1, 4, 6, 6), np.uint8)
    inits = {"w": w if w is not None else np.zeros((8, 4, 3, 3), np.int8), "xzp": np.zeros(1, np.uint8)}
    inits["wzp"] = np.array([wzp], inits["w"].dtype)
    names = ["x", "w", "xzp", "wzp"]
    out = TensorProto.INT32
    if n_inputs == 8:
        inits.update(s=np.ones(8, np.float32), b=np.zeros(8, np.float32),
                     ys=np.array(ys if ys is not None else [1.0], np.float32), yzp=np.zeros(1, np.int8))
        names += ["s", "b", "ys", "yzp"]
        out = TensorProto.INT8
    return _model([helper.make_node(op, names, ["y"], domain="qcompile", **attrs)], x, inits, out), x


BASE = dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1])
BIG = np.full((8, 4, 3, 3), 100, np.int8)  # adjacent pairs 200 > 128: past vpmaddubsw's int16


@pytest.mark.parametrize("op,attrs,w,n_inputs,ys,wzp,message", [
    ("DirectConvInteger", {**BASE, "group": 3}, None, 4, None, 0, "attribute 'group': 3 must divide"),
    ("DirectConvInteger", BASE, np.zeros((8, 2, 3, 3), np.int8), 4, None, 0, "input w: expected [M, 4, 3, 3]"),
    ("DirectConvInteger", {**BASE, "kernel_shape": [9, 9], "pads": [0, 0, 0, 0]}, np.zeros((8, 4, 9, 9), np.int8), 4,
     None, 0, "output size < 1"),
    ("DirectConvInteger", {**BASE, "kernel": "nope"}, None, 4, None, 0, "is not a kernel variant"),
    ("DirectConvInteger", BASE, np.full((8, 4, 3, 3), 200, np.uint8), 4, None, 0, "must fit int8"),
    ("DirectConvInteger", BASE, np.full((8, 4, 3, 3), 200, np.uint8), 4, None, 100, None),
    ("DirectConvInteger", {**BASE, "kernel": "avx2"}, BIG, 4, None, 0, "needs weights with |w0| + |w1| <= 128"),
    ("DirectConvInteger", BASE, BIG, 4, None, 0, None),
    ("DirectConvRequantize", {**BASE, "lo": 5, "hi": 1}, None, 8, None, 0, "attributes lo, hi"),
    ("DirectConvRequantize", BASE, None, 8, [0.0], 0, "input y_scale: expected positive scales"),
    ("DirectConvRequantize", BASE, None, 8, [1.0, 2.0], 0, "inputs y_scale, y_zero_point"),
])
def test_bad_nodes_fail_cleanly_naming_the_op(op, attrs, w, n_inputs, ys, wzp, message):
    if attrs.get("kernel") == "avx2" and "avx2" not in VARIANTS:
        pytest.skip("this CPU runs no avx2 variant")
    model, x = _bad_model(op, attrs, w, n_inputs, ys, wzp)
    if message is None:  # the valid neighbour of the cases around it runs
        assert _session(model).run(None, {"x": x})[0].shape == (1, 8, 6, 6)
        return
    with pytest.raises(Exception, match=f"qcompile::{op}.*{re.escape(message)}"):
        _session(model).run(None, {"x": x})


# Requantize's pool (2x2 / 2, CNV's and the ConvNet's; 3x3 / 2 padded, with a window partly outside)
# and its power-of-two thresholds (AQE's 3-level activations), taken into the fused op
POOLS = [dict(kernel_shape=[2, 2], strides=[2, 2]), dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])]
POW2 = [2.0 ** -(3 - 0.5 - k) for k in range(3)]


@pytest.mark.parametrize("kernel", VARIANTS)
@pytest.mark.parametrize("pool", [None, *POOLS], ids=["no-pool", "pool2", "pool3-pad"])
@pytest.mark.parametrize("pow2", [False, True], ids=["uniform", "pow2"])
@pytest.mark.parametrize("geometry", [GEOMETRIES[1], GEOMETRIES[8], GEOMETRIES[12]], ids=_ids)
def test_direct_conv_requantize_takes_the_pool_and_the_thresholds(geometry, pool, pow2, kernel):
    x, w, xzp, wzp, attrs = _case(geometry, np.int8, np.uint8, seed=8)
    m = geometry[1]
    rng = np.random.default_rng(9)
    # scales that bring each channel's sums to about +-1 (negative ones pool the min of the sums)
    acc = int8.conv_integer(x, w, xzp, wzp, attrs["kernel_shape"], attrs["strides"], attrs["pads"],
                            attrs["dilations"], attrs["group"]).astype(np.float64)
    spread = acc.std(axis=(0, 2, 3)) + 1.0
    s = (rng.uniform(-0.6, 1.0, m) / spread).astype(np.float32)
    b = rng.uniform(-0.3, 0.3, m).astype(np.float32)
    ys = np.array([0.25 if pow2 else 0.5], np.float32)  # pow2: 2^-(L-1), the codes' one scale
    inits = {"w": w, "xzp": xzp, "wzp": wzp, "s": s, "b": b, "ys": ys, "yzp": np.zeros(1, np.int8)}
    rq_attrs = dict(lo=-4, hi=4, **({"thresholds": POW2} if pow2 else {}))
    ref = _model([helper.make_node("ConvInteger", ["x", "w", "xzp", "wzp"], ["acc"], **attrs),
                  helper.make_node("Requantize", ["acc", "s", "b", "ys", "yzp"], ["y"], domain="qcompile",
                                   **rq_attrs, **(pool or {}))], x, inits, TensorProto.INT8)
    fused_pool = {f"pool_{k}": v for k, v in (pool or {}).items()}
    new = _model([helper.make_node("DirectConvRequantize", ["x", "w", "xzp", "wzp", "s", "b", "ys", "yzp"], ["y"],
                                   domain="qcompile", kernel=kernel, **attrs, **rq_attrs, **fused_pool)],
                 x, inits, TensorProto.INT8)
    want = _session(ref).run(None, {"x": x})[0]
    assert len(np.unique(want)) >= 3  # the codes are not all clamped to one value
    for threads in (1, 2):
        np.testing.assert_array_equal(_session(new, threads).run(None, {"x": x})[0], want)
    from qcompile.ops.evaluator import evaluator

    np.testing.assert_array_equal(evaluator(new).run(None, {"x": x})[0], want)


def test_a_bad_pool_attribute_names_itself():
    model, x = _bad_model("DirectConvRequantize", {**BASE, "pool_kernel_shape": [0, 2]}, None, 8)
    with pytest.raises(Exception, match=re.escape("attribute 'pool_kernel_shape': expected [KH, KW]")):
        _session(model).run(None, {"x": x})
