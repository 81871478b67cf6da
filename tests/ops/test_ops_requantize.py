"""qcompile::Requantize: the C++ kernel against the onnxruntime chain it replaces (Cast -> Mul ->
Add -> [MaxPool] -> QuantizeLinear -> Clip) and against its numpy twin, bit for bit, on rounding
ties, negative and zero channel scales (the pool then takes the min of the sums), both code types
and thread counts; and its clean errors."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from qcompile import runtime
from qcompile.ops import int8

CODE_TYPES = {np.int8: TensorProto.INT8, np.uint8: TensorProto.UINT8}


def _session(model, threads: int = 1) -> ort.InferenceSession:
    so = runtime.session_options()
    so.intra_op_num_threads = threads
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def _params(m: int, dtype, seed: int):
    """Per-channel scales with some negative and zero ones, biases, and a grid where
    (acc * s + b) / ys lands on exact halves for many sums (s = ys / 2, b = 0 on channel 0)."""
    rng = np.random.default_rng(seed)
    ys = np.float32(0.25)
    s = rng.uniform(-0.02, 0.05, m).astype(np.float32)
    s[0], s[-1] = ys / 2, 0.0
    b = rng.uniform(-2, 2, m).astype(np.float32)
    b[0] = 0.0
    zp = np.array([2 if dtype == np.uint8 else -1], dtype)
    return s, b, ys, zp


def _models(shape, dtype, lo, hi, axis=1, pool: dict | None = None, seed=0, kernel: str | None = None):
    """(the onnxruntime chain, Requantize): the same constants, the chain's Mul / Add constants
    shaped to broadcast along `axis`."""
    m = shape[axis]
    s, b, ys, zp = _params(m, dtype, seed)
    elem = CODE_TYPES[dtype]
    bshape = [m] + [1] * (len(shape) - 1 - axis % len(shape))  # numpy broadcasting: right-aligned
    consts = dict(ys=np.array([ys], np.float32), zp=zp, lo=np.array([lo], dtype), hi=np.array([hi], dtype))
    chain = [helper.make_node("Cast", ["acc"], ["f"], to=TensorProto.FLOAT),
             helper.make_node("Mul", ["f", "s"], ["sf"]), helper.make_node("Add", ["sf", "b"], ["yb"])]
    y = "yb"
    if pool is not None:
        chain.append(helper.make_node("MaxPool", ["yb"], ["yp"], **pool))
        y = "yp"
    chain += [helper.make_node("QuantizeLinear", [y, "ys", "zp"], ["q"]),
              helper.make_node("Clip", ["q", "lo", "hi"], ["y"])]
    inits = [numpy_helper.from_array(v, k) for k, v in consts.items()]
    inits += [numpy_helper.from_array(s.reshape(bshape), "s"), numpy_helper.from_array(b.reshape(bshape), "b")]
    x = helper.make_tensor_value_info("acc", TensorProto.INT32, None)
    out = helper.make_tensor_value_info("y", elem, None)
    ref = helper.make_model(helper.make_graph(chain, "chain", [x], [out], inits),
                            opset_imports=[helper.make_opsetid("", 17)])
    node = helper.make_node("Requantize", ["acc", "s", "b", "ys", "zp"], ["y"], domain="qcompile",
                            axis=axis, lo=lo, hi=hi, **(pool or {}), **({"kernel": kernel} if kernel else {}))
    inits2 = [numpy_helper.from_array(v, k) for k, v in (("s", s), ("b", b), ("ys", consts["ys"]), ("zp", zp))]
    new = helper.make_model(helper.make_graph([node], "rq", [x], [out], inits2),
                            opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("qcompile", 1)])
    twin = dict(scale=s, bias=b, y_scale=ys, y_zero_point=zp, axis=axis, lo=lo, hi=hi, **(pool or {}))
    return ref, new, twin


def _acc(shape, seed=1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    acc = rng.integers(-400, 400, shape).astype(np.int32)
    flat = acc.reshape(-1)
    special = [2**24 + 1, -(2**24) - 3, 2**31 - 1, -(2**31), 0, 1, -1, 3]  # beyond float's integers too
    flat[:len(special)] = special[:flat.size]
    return acc


GRIDS = [(np.int8, -2, 1), (np.uint8, 0, 3), (np.int8, -128, 127), (np.uint8, 0, 255), (np.int8, -8, 7)]
# inner sizes 63, 11, 60 and 130: the 32-wide AVX2 and 16-wide SSE2 steps with and without tails
SHAPES = [([2, 16, 7, 9], 1), ([1, 37], 1), ([3, 70], -1), ([2, 5, 11], 1), ([1, 3, 1, 1], 1), ([2, 4, 3, 20], -3),
          ([1, 3, 10, 13], 1)]
KERNELS = runtime.kernel_variants("Requantize")


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("dtype,lo,hi", GRIDS)
@pytest.mark.parametrize("shape,axis", SHAPES)
def test_requantize_equals_the_onnxruntime_chain_and_the_twin(dtype, lo, hi, shape, axis, kernel):
    ref, new, twin = _models(shape, dtype, lo, hi, axis, kernel=kernel)
    acc = _acc(shape)
    want = _session(ref).run(None, {"acc": acc})[0]
    got = _session(new).run(None, {"acc": acc})[0]
    assert got.dtype == dtype and got.shape == acc.shape
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(int8.requantize(acc, **twin), want)


@pytest.mark.parametrize("shape,pool", [([2, 5, 6, 6], None), ([2, 5, 6, 6], dict(kernel_shape=[2, 2], strides=[2, 2])),
                                        ([3, 37], None)])  # [3, 37]: a dense layer's rows, channels vectorized
def test_per_channel_y_scales_equal_a_per_channel_quantizelinear(shape, pool):
    """Per-channel y_scale (a QONNX Quant's [1, M, 1, 1] scale) against the twin and onnxruntime's
    per-axis QuantizeLinear (divide, clamp, round half to even per channel)."""
    m = shape[1]
    ref, new, twin = _models(shape, np.uint8, 0, 15, 1, pool)
    ys = np.linspace(0.1, 0.9, m).astype(np.float32)
    for model in (ref, new):
        tensor = next(t for t in model.graph.initializer if t.name == "ys")
        tensor.CopyFrom(numpy_helper.from_array(ys, "ys"))
    qnode = next((n for n in ref.graph.node if n.op_type == "QuantizeLinear"), None)
    qnode.attribute.append(helper.make_attribute("axis", 1))
    zp = next(t for t in ref.graph.initializer if t.name == "zp")
    zp.CopyFrom(numpy_helper.from_array(np.full(m, numpy_helper.to_array(zp)[0], np.uint8), "zp"))
    acc = _acc(shape)
    want = _session(ref).run(None, {"acc": acc})[0]
    np.testing.assert_array_equal(_session(new).run(None, {"acc": acc})[0], want)
    np.testing.assert_array_equal(int8.requantize(acc, **{**twin, "y_scale": ys}), want)


def test_the_ties_are_there():
    """Channel 0's (acc * ys/2) / ys is acc / 2: every odd sum is an exact tie, rounded to even."""
    ref, new, _ = _models([1, 4, 4, 8], np.int8, -128, 127)
    acc = np.arange(-64, 64, dtype=np.int32).reshape(1, 4, 4, 8)
    got = _session(new).run(None, {"acc": acc})[0]
    np.testing.assert_array_equal(got[0, 0].reshape(-1), (np.rint(acc[0, 0].reshape(-1) / 2) - 1).astype(np.int8))
    np.testing.assert_array_equal(got, _session(ref).run(None, {"acc": acc})[0])


POOLS = [
    dict(kernel_shape=[2, 2], strides=[2, 2]),  # the vectorized case
    dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
    dict(kernel_shape=[2, 2], strides=[1, 1]),
    dict(kernel_shape=[2, 3], strides=[2, 1], pads=[0, 1, 1, 0], dilations=[2, 1]),
    dict(kernel_shape=[1, 1], strides=[3, 2]),
]


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("dtype,lo,hi", GRIDS[:3])
@pytest.mark.parametrize("pool", POOLS)
@pytest.mark.parametrize("hw", [(8, 8), (9, 19), (2, 2), (28, 28)])
def test_pooled_requantize_equals_the_chain_with_maxpool(dtype, lo, hi, pool, hw, kernel):
    shape = [2, 6, *hw]
    ref, new, twin = _models(shape, dtype, lo, hi, 1, pool, kernel=kernel)
    acc = _acc(shape, seed=hw[1])
    try:
        want = _session(ref).run(None, {"acc": acc})[0]
    except Exception:  # onnxruntime refuses the geometry (output < 1): so must Requantize
        with pytest.raises(Exception, match="output size < 1"):
            _session(new).run(None, {"acc": acc})
        return
    got = _session(new).run(None, {"acc": acc})[0]
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(int8.requantize(acc, **twin), want)


@pytest.mark.parametrize("threads", [1, 2])
def test_threads_split_channels_and_images_alike(threads):
    shape = [3, 40, 30, 30]
    ref, new, _ = _models(shape, np.uint8, 0, 15, 1, POOLS[0])
    acc = _acc(shape)
    np.testing.assert_array_equal(_session(new, threads).run(None, {"acc": acc})[0],
                                  _session(ref, threads).run(None, {"acc": acc})[0])


def test_a_window_wholly_in_the_padding_is_the_lowest_code():
    """Only the twin and the kernel can say it (onnxruntime's MaxPool refuses pads >= kernel):
    such a window is MaxPool's -inf, whose code QuantizeLinear clamps to lo."""
    pool = dict(kernel_shape=[1, 1], strides=[1, 1], pads=[1, 1, 1, 1])
    shape = [1, 3, 2, 2]
    _, new, twin = _models(shape, np.int8, -3, 3, 1, pool)
    acc = _acc(shape)
    got = _session(new).run(None, {"acc": acc})[0]
    assert got.shape == (1, 3, 4, 4) and np.all(got[:, :, 0, :] == -3) and np.all(got[:, :, :, -1] == -3)
    np.testing.assert_array_equal(got, int8.requantize(acc, **twin))


def _node_model(attrs: dict, s_len=4, ys=0.5, zp=None):
    zp = np.int8(0) if zp is None else zp
    node = helper.make_node("Requantize", ["acc", "s", "b", "ys", "zp"], ["y"], domain="qcompile", **attrs)
    inits = [numpy_helper.from_array(np.ones(s_len, np.float32), "s"), numpy_helper.from_array(np.zeros(s_len, np.float32), "b"),
             numpy_helper.from_array(np.array(ys, np.float32).reshape(-1), "ys"), numpy_helper.from_array(np.array([zp]), "zp")]
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("acc", TensorProto.INT32, None)],
                              [helper.make_tensor_value_info("y", CODE_TYPES[type(zp)], None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("qcompile", 1)])


@pytest.mark.parametrize("attrs,kwargs,shape,message", [
    (dict(lo=5, hi=2), {}, [1, 4], "lo <= hi"),
    (dict(lo=-200), {}, [1, 4], "-128 <= lo"),
    (dict(lo=-1), dict(zp=np.uint8(0)), [1, 4], "0 <= lo"),
    ({}, dict(ys=[0.5, 0.5]), [1, 4], "a scalar or 4 scales"),
    ({}, dict(ys=[0.5, -1.0, 1.0, 1.0]), [1, 4], "positive scales"),
    ({}, dict(s_len=3), [1, 4], "expected 4 values each"),
    ({}, dict(ys=0.0), [1, 4], "positive scales"),
    ({}, dict(ys=float("nan")), [1, 4], "positive scales"),
    (dict(axis=3), {}, [1, 4], "out of range"),
    (dict(kernel_shape=[2, 2]), {}, [1, 4, 3], "rank 4"),
    (dict(kernel_shape=[2, 2], axis=-1), {}, [1, 4, 3, 3], "needs axis 1"),
    (dict(kernel_shape=[5, 5]), {}, [1, 4, 3, 3], "output size < 1"),
])
def test_bad_input_is_a_clean_error(attrs, kwargs, shape, message):
    model = _node_model(attrs, **kwargs)
    with pytest.raises(Exception, match=message) as info:
        _session(model).run(None, {"acc": np.zeros(shape, np.int32)})
    assert "Requantize" in str(info.value)


# the trainer's L-level thresholds: 2^-(L-1/2), ..., 2^-(1/2) (SPEC, Pow2Quant)
THRESHOLDS = {levels: [2.0 ** -(levels - 0.5 - k) for k in range(levels)] for levels in (3, 7)}


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("levels", [3, 7])
@pytest.mark.parametrize("dtype,zp,clip", [(np.int8, 0, None), (np.uint8, 64, None), (np.int8, 0, (-2, 2))])
@pytest.mark.parametrize("pool", [None, POOLS[0], POOLS[1]])
def test_pow2_codes_equal_quantizelinear_of_pow2quant(levels, dtype, zp, clip, pool, kernel):
    """With thresholds: Pow2Quant's codes of y, bit for bit against the chain Cast -> Mul -> Add ->
    [MaxPool] -> qcompile::Pow2Quant -> QuantizeLinear(2^-(L-1)) and the twin; negative channel
    scales pool the min of the sums; y lands on thresholds and ±0 exactly on some channels."""
    t = [np.float32(v) for v in THRESHOLDS[levels]]
    shape = [2, 6, 10, 10]
    m = shape[1]
    rng = np.random.default_rng(levels)
    s = rng.uniform(-0.004, 0.006, m).astype(np.float32)
    s[0] = t[0] / 8  # acc = 8 k lands on the first threshold's multiples
    b = rng.uniform(-0.2, 0.2, m).astype(np.float32)
    b[0] = 0.0
    ys = np.float32(2.0 ** -(levels - 1))
    zpa = np.array([zp], dtype)
    chain = [helper.make_node("Cast", ["acc"], ["f"], to=TensorProto.FLOAT),
             helper.make_node("Mul", ["f", "s4"], ["sf"]), helper.make_node("Add", ["sf", "b4"], ["y0"])]
    y = "y0"
    if pool is not None:
        chain.append(helper.make_node("MaxPool", ["y0"], ["yp"], **pool))
        y = "yp"
    chain += [helper.make_node("Pow2Quant", [y], ["p"], domain="qcompile", thresholds=[float(v) for v in t]),
              helper.make_node("QuantizeLinear", ["p", "ys", "zp"], ["q" if clip else "out"])]
    if clip:  # a grid narrower than the codes: the Clip after, as the lowering writes it
        chain.append(helper.make_node("Clip", ["q", "lo", "hi"], ["out"]))
    inits = [numpy_helper.from_array(s.reshape(m, 1, 1), "s4"), numpy_helper.from_array(b.reshape(m, 1, 1), "b4"),
             numpy_helper.from_array(np.array([ys]), "ys"), numpy_helper.from_array(zpa, "zp"),
             numpy_helper.from_array(s, "s"), numpy_helper.from_array(b, "b")]
    if clip:
        inits += [numpy_helper.from_array(np.array([clip[0]], dtype), "lo"),
                  numpy_helper.from_array(np.array([clip[1]], dtype), "hi")]
    x = helper.make_tensor_value_info("acc", TensorProto.INT32, None)
    out = helper.make_tensor_value_info("out", CODE_TYPES[dtype], None)
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("qcompile", 1)]
    ref = helper.make_model(helper.make_graph(chain, "chain", [x], [out], inits), opset_imports=opsets)
    bounds = dict(lo=clip[0], hi=clip[1]) if clip else {}
    node = helper.make_node("Requantize", ["acc", "s", "b", "ys", "zp"], ["out"], domain="qcompile",
                            thresholds=[float(v) for v in t], kernel=kernel, **bounds, **(pool or {}))
    new = helper.make_model(helper.make_graph([node], "rq", [x], [out], inits), opset_imports=opsets)
    acc = _acc(shape, seed=levels)
    acc[:, 0] = rng.integers(-40, 40, acc[:, 0].shape) * 8
    want = _session(ref).run(None, {"acc": acc})[0]
    np.testing.assert_array_equal(_session(new).run(None, {"acc": acc})[0], want)
    twin = int8.requantize(acc, s, b, ys, zpa, thresholds=t, **bounds, **(pool or {}))
    np.testing.assert_array_equal(twin, want)
    assert len(np.unique(want)) >= (4 if clip else levels)  # the codes span the levels (clipped: most of -2..2)


def test_pow2_codes_need_pow2quants_scale():
    model = _node_model({"thresholds": [0.25, 0.5, 1.0]}, ys=0.5)
    with pytest.raises(Exception, match="expected the one scale 2\\^-2"):
        _session(model).run(None, {"acc": np.zeros([1, 4], np.int32)})
    bad = _node_model({"thresholds": [0.5, 0.25]}, ys=0.5)
    with pytest.raises(Exception, match="ascending"):
        _session(bad).run(None, {"acc": np.zeros([1, 4], np.int32)})
