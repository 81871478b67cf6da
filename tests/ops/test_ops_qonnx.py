"""QONNX reference quantizers (BipolarQuant, Quant, IntQuant) in onnxruntime against the numpy
reference, bit for bit: the kernels do the SPEC's float32 operations in the SPEC's order."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

from qcompile import runtime
from qcompile.ops import qonnx

F32 = TensorProto.FLOAT
DOMAIN = "qonnx.custom_op.general"


def _model(op: str, inputs: list[str], **attrs) -> bytes:
    node = helper.make_node(op, inputs, ["Y"], domain=DOMAIN, **attrs)
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info(n, F32, None) for n in inputs],
        [helper.make_tensor_value_info("Y", F32, None)],
    )
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid(DOMAIN, 1)]
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 8
    return model.SerializeToString()


def bits_equal(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal bit patterns (so -0.0 != 0.0): float32 results must match bit for bit."""
    same_kind = a.dtype == b.dtype == np.float32 and a.shape == b.shape
    return same_kind and np.array_equal(a.view(np.uint32), b.view(np.uint32))


QUANT_INPUTS = ["X", "scale", "zeropt", "bitwidth"]


def _x(shape, seed=0) -> np.ndarray:
    """Random values plus the edge values 0 and -0.0 (no NaN)."""
    x = np.asarray((np.random.default_rng(seed).standard_normal(shape) * 3), dtype=np.float32)
    flat = x.reshape(-1)
    flat[: min(4, flat.size)] = np.array([0.0, -0.0, 1.5, -2.5], np.float32)[: min(4, flat.size)]
    return x


# (X shape, scale shape): scalar, per-channel (axis 1), trailing axis, full, rank-0 X
BROADCASTS = [
    ((2, 5, 3, 4), ()),
    ((2, 5, 3, 4), (1, 5, 1, 1)),
    ((2, 5, 3, 4), (4,)),
    ((2, 5, 3, 4), (2, 5, 3, 4)),
    ((7, 9), (7, 1)),
    ((), ()),
    ((40000,), (1,)),  # several parallel chunks
]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("xshape,sshape", BROADCASTS)
def test_bipolar_quant(xshape, sshape, threads: int):
    x = _x(xshape)
    scale = np.asarray(np.random.default_rng(1).uniform(0.1, 2, sshape), dtype=np.float32)
    sess = runtime.InferenceSession(_model("BipolarQuant", ["X", "scale"]), threads=threads)
    (y,) = sess.run(None, {"X": x, "scale": scale})
    assert bits_equal(y, qonnx.bipolar_quant(x, scale))


@pytest.mark.parametrize("xshape,sshape", [((7, 9), (1, 1, 7, 1)), ((4,), (1, 4)), ((), (1, 1))])
def test_bipolar_quant_higher_rank_scale_keeps_x_shape(xshape, sshape):
    # SPEC: scale broadcasts to X and the output keeps X's shape; leading 1s of scale are dropped
    x = _x(xshape)
    scale = np.asarray(np.random.default_rng(1).uniform(0.1, 2, sshape), dtype=np.float32)
    (y,) = runtime.InferenceSession(_model("BipolarQuant", ["X", "scale"])).run(None, {"X": x, "scale": scale})
    twin = qonnx.bipolar_quant(x, scale)
    assert y.shape == twin.shape == xshape and bits_equal(y, twin)
    with pytest.raises(ValueError, match="does not broadcast"):
        qonnx.bipolar_quant(x, np.ones((2, *xshape), np.float32))


@pytest.mark.parametrize("op", ["Quant", "IntQuant"])
@pytest.mark.parametrize("rounding_mode", ["ROUND", "CEIL", "FLOOR", "ROUND_TO_ZERO"])
@pytest.mark.parametrize("signed,narrow", [(1, 0), (1, 1), (0, 0), (0, 1)])
@pytest.mark.parametrize("bitwidth", [1.0, 2.0, 4.0, 8.0])
def test_quant_modes(op: str, rounding_mode: str, signed: int, narrow: int, bitwidth: float):
    # Half-way points: x / scale = k + 0.5 exactly (scale a power of two), where ROUND is
    # half-to-even; plus random values over and beyond the clamp range, 0 and -0.0.
    scale = np.array([0.25, 0.5, 0.125], np.float32).reshape(1, 3, 1)
    halves = (np.arange(-9, 9, dtype=np.float32) + np.float32(0.5)).reshape(1, 1, -1) * scale
    x = np.concatenate([halves, _x((1, 3, 18), seed=2)], axis=2)
    zeropt = np.zeros((1, 3, 1), np.float32)
    if not signed:
        zeropt = np.array([0.0, 1.0, -2.0], np.float32).reshape(1, 3, 1)
    bw = np.array(bitwidth, np.float32)
    attrs = dict(signed=signed, narrow=narrow, rounding_mode=rounding_mode)
    sess = runtime.InferenceSession(_model(op, QUANT_INPUTS, **attrs))
    (y,) = sess.run(None, {"X": x, "scale": scale, "zeropt": zeropt, "bitwidth": bw})
    assert bits_equal(y, qonnx.quant(x, scale, zeropt, bw, **attrs))


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("xshape,sshape", BROADCASTS)
def test_quant_broadcast(xshape, sshape, threads: int):
    x = _x(xshape, seed=3)
    rng = np.random.default_rng(4)
    scale = np.asarray(rng.uniform(0.05, 1, sshape), dtype=np.float32)
    zeropt = np.asarray(np.round(rng.uniform(-3, 3, sshape)), dtype=np.float32)
    bw = np.array([4.0], np.float32)
    sess = runtime.InferenceSession(_model("Quant", QUANT_INPUTS), threads=threads)
    (y,) = sess.run(None, {"X": x, "scale": scale, "zeropt": zeropt, "bitwidth": bw})
    assert bits_equal(y, qonnx.quant(x, scale, zeropt, bw))


@pytest.mark.parametrize("rounding_mode", ["ROUND", "CEIL", "FLOOR", "ROUND_TO_ZERO"])
@pytest.mark.parametrize("n", [1, 5, 67])  # below, at and past the 4-lane vector loop, with a tail
def test_quant_special_values_in_the_vector_loop(rounding_mode: str, n: int):
    # NaN, infinities, |x / s| at and beyond 2^23 (already integers), the largest float, signed
    # zeros and ties, in every lane position of the per-tensor (vectorised) row loop
    special = np.array([np.nan, np.inf, -np.inf, 2.0**23, -(2.0**23) - 2, 2.0**24 + 2, 3.4e38, -3.4e38,
                        0.0, -0.0, 0.5, -0.5, 1.5, -2.5, 7.49999, -7.50001], np.float32)
    rng = np.random.default_rng(n)
    x = np.where(rng.random(n) < 0.5, rng.choice(special, n), rng.standard_normal(n).astype(np.float32) * 40)
    x = x.astype(np.float32).reshape(1, n)
    scale, zeropt, bw = np.array(0.5, np.float32), np.array(0.0, np.float32), np.array(24.0, np.float32)
    attrs = dict(signed=1, narrow=0, rounding_mode=rounding_mode)
    sess = runtime.InferenceSession(_model("Quant", QUANT_INPUTS, **attrs))
    (y,) = sess.run(None, {"X": x, "scale": scale, "zeropt": zeropt, "bitwidth": bw})
    want = qonnx.quant(x, scale, zeropt, bw, **attrs)
    nan = np.isnan(want)
    assert np.array_equal(np.isnan(y), nan)
    assert bits_equal(np.where(nan, 0, y).astype(np.float32), np.where(nan, 0, want).astype(np.float32))


def test_round_is_half_to_even():
    x = np.array([0.5, 1.5, 2.5, -0.5, -1.5, -2.5], np.float32)
    one, zero, bw = np.ones(1, np.float32), np.zeros(1, np.float32), np.array(8.0, np.float32)
    sess = runtime.InferenceSession(_model("Quant", QUANT_INPUTS))
    (y,) = sess.run(None, {"X": x, "scale": one, "zeropt": zero, "bitwidth": bw})
    assert y.tolist() == [0.0, 2.0, 2.0, -0.0, -2.0, -2.0]


# ------------------------------------------------------------------------------------ errors


def test_error_scale_does_not_broadcast():
    x = np.zeros((2, 5, 3), np.float32)
    sess = runtime.InferenceSession(_model("BipolarQuant", ["X", "scale"]))
    match = r"BipolarQuant.*input scale: shape \[4\] does not broadcast to X's shape \[2, 5, 3\]"
    with pytest.raises(Exception, match=match):
        sess.run(None, {"X": x, "scale": np.ones(4, np.float32)})
    feeds = {
        "X": x,
        "scale": np.ones((5, 1), np.float32),
        "zeropt": np.zeros((2, 1, 1, 1), np.float32),
        "bitwidth": np.array(4.0, np.float32),
    }
    match = r"Quant.*input zeropt: shape \[2, 1, 1, 1\] does not broadcast to X's shape \[2, 5, 3\]"
    with pytest.raises(Exception, match=match):
        runtime.InferenceSession(_model("Quant", QUANT_INPUTS)).run(None, feeds)


def test_error_bitwidth():
    x = np.zeros((2, 3), np.float32)
    sess = runtime.InferenceSession(_model("IntQuant", QUANT_INPUTS))
    one, zero = np.ones(1, np.float32), np.zeros(1, np.float32)
    feeds = {"X": x, "scale": one, "zeropt": zero}
    match = r"IntQuant.*input bitwidth: expected a scalar.*got shape \[2\]"
    with pytest.raises(Exception, match=match):
        sess.run(None, {**feeds, "bitwidth": np.array([4, 4], np.float32)})
    match = r"IntQuant.*input bitwidth: expected a value in \[1, 32\], got 0"
    with pytest.raises(Exception, match=match):
        sess.run(None, {**feeds, "bitwidth": np.array(0, np.float32)})


@pytest.mark.parametrize(
    "attrs,match",
    [
        (
            dict(rounding_mode="NEAREST"),
            r"Quant.*attribute 'rounding_mode': expected ROUND, CEIL, FLOOR or ROUND_TO_ZERO, "
            r"got 'NEAREST'",
        ),
        (dict(signed=2), r"Quant.*attribute 'signed': expected 0 or 1, got 2"),
        (dict(narrow=-1), r"Quant.*attribute 'narrow': expected 0 or 1, got -1"),
    ],
)
def test_error_quant_attributes(attrs, match):
    feeds = {
        "X": np.zeros(3, np.float32),
        "scale": np.ones(1, np.float32),
        "zeropt": np.zeros(1, np.float32),
        "bitwidth": np.array(4.0, np.float32),
    }
    with pytest.raises(Exception, match=match):
        runtime.InferenceSession(_model("Quant", QUANT_INPUTS, **attrs)).run(None, feeds)


def test_error_wrong_dtype():
    node = helper.make_node("BipolarQuant", ["X", "scale"], ["Y"], domain=DOMAIN)
    graph = helper.make_graph(
        [node],
        "g",
        [
            helper.make_tensor_value_info("X", TensorProto.DOUBLE, None),
            helper.make_tensor_value_info("scale", F32, None),
        ],
        [helper.make_tensor_value_info("Y", F32, None)],
    )
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid(DOMAIN, 1)]
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 8
    match = r"tensor\(double\).*BipolarQuant|BipolarQuant.*tensor\(double\)"
    with pytest.raises(Exception, match=match):
        runtime.InferenceSession(model.SerializeToString())
