"""qcompile::BitSerialMlp in onnxruntime against its numpy twin (QuantizePack, then the chain of
BitSerialGemmThreshold / BitSerialGemm twins) and against the same chain run as separate nodes:
equal bit for bit, under every kernel variant of the bit-serial table, with the weights and
thresholds as constants (laid out once) and as graph inputs, 1 and 2 threads."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from kernel_variants import variant_params, with_kernel
from onnx import TensorProto, helper
from test_ops_bitserial import _weights  # tests/ops is on the path of its own tests
from test_ops_bitserial_threshold import _thresholds

from qcompile import runtime
from qcompile.ops import bitserial, multibit_threshold

F32, U64, I32 = TensorProto.FLOAT, TensorProto.UINT64, TensorProto.INT32
VARIANTS = variant_params("BitSerialMlp")
QUANT = dict(scale=0.5, zero_point=0.0, bitwidth=2, signed=1, narrow=0, rounding_mode="ROUND")
INPUTS = [("X", F32), ("W", U64), ("thresholds", I32), ("direction", I32), ("scale", F32), ("bias", F32)]


def _chain(rng, features, wprec=(2, True), out_codes=(2, True)):
    """Random layers: packed W per layer, thresholds spread over each hidden layer's D range."""
    x = (rng.standard_normal((3, features[0])) * 1.5).astype(np.float32)
    h = bitserial.quantize_pack(x, **QUANT, pre_scale=2.0, pre_bias=-1.0)
    act = bitserial.plane_coeffs(*bitserial.planes_needed(-2, 1))
    layers, ws, ts, ds = [], [], [], []
    for i in range(len(features) - 1):
        k, m = features[i], features[i + 1]
        _, wp, wcoeffs, woff = _weights(rng, (m, k), wprec)
        dense = dict(in_features=k, act_coeffs=list(act), weight_coeffs=list(wcoeffs), weight_offset=int(woff))
        layers.append(dense)
        ws.append(wp.reshape(-1))
        if i + 2 < len(features):
            d = bitserial.bitserial_gemm_int(h, wp, **dense)
            t, direction = _thresholds(rng, d, 3)
            ts.append(t.reshape(-1))
            ds.append(direction)
            h = multibit_threshold.bitserial_gemm_threshold(h, wp, t, direction, out_base=-2, out_planes=2, **dense)
    feeds = {"X": x, "W": np.concatenate(ws), "thresholds": np.concatenate(ts).astype(np.int32) if ts else np.zeros(0, np.int32),
             "direction": np.concatenate(ds).astype(np.int32) if ds else np.zeros(0, np.int32),
             "scale": rng.uniform(-1, 1, features[-1]).astype(np.float32),
             "bias": rng.standard_normal(features[-1]).astype(np.float32)}
    attrs = dict(QUANT, pre_scale=2.0, pre_bias=-1.0, planes=2, features=list(features),
                 act_coeffs=[c for layer in layers for c in layer["act_coeffs"]], act_planes=[2] * len(layers),
                 weight_coeffs=[c for layer in layers for c in layer["weight_coeffs"]],
                 weight_planes=[len(layer["weight_coeffs"]) for layer in layers],
                 weight_offset=[layer["weight_offset"] for layer in layers], levels=[3] * (len(layers) - 1),
                 out_base=[-2] * (len(layers) - 1))
    return feeds, attrs, layers


def _model(attrs, constants=(), feeds=None) -> bytes:
    attrs = {k: v for k, v in attrs.items() if not (isinstance(v, list) and not v)}  # a one-layer chain has none
    node = helper.make_node("BitSerialMlp", [n for n, _ in INPUTS], ["Y"], domain="qcompile", **attrs)
    inits = [onnx.numpy_helper.from_array(feeds[n], n) for n in constants]
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info(n, t, None) for n, t in INPUTS
                                            if n not in constants],
                              [helper.make_tensor_value_info("Y", F32, None)], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("qcompile", 1)])
    model.ir_version = 8
    return model.SerializeToString()


def _twin(feeds, attrs):
    return multibit_threshold.bitserial_mlp(feeds["X"], feeds["W"], feeds["thresholds"], feeds["direction"],
                                            feeds["scale"], feeds["bias"], **attrs)


@pytest.mark.parametrize("features", [(784, 64, 64, 10), (100, 8), (130, 65, 256, 3)], ids=str)
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("variant", VARIANTS)
def test_bitserial_mlp_matches_its_twin(features, threads, variant):
    rng = np.random.default_rng(sum(features))
    feeds, attrs, _ = _chain(rng, features)
    want = _twin(feeds, attrs)
    for constants in ((), ("W", "thresholds", "direction")):
        sess = runtime.InferenceSession(with_kernel(_model(attrs, constants, feeds), variant), threads=threads)
        (y,) = sess.run(None, {k: v for k, v in feeds.items() if k not in constants})
        assert y.dtype == np.float32 and np.array_equal(y.view(np.uint32), want.view(np.uint32)), constants
    # X of any [N, ...] shape with features[0] values per row reads as its flatten
    sess = runtime.InferenceSession(with_kernel(_model(attrs), variant), threads=threads)
    (y,) = sess.run(None, {**feeds, "X": feeds["X"].reshape(3, 1, features[0], 1)})
    assert np.array_equal(y, want)


def test_bitserial_mlp_equals_the_separate_nodes():
    """The fused op gives the output of QuantizePack -> BitSerialGemmThreshold x2 -> BitSerialGemm."""
    rng = np.random.default_rng(5)
    features = (300, 40, 70, 10)
    feeds, attrs, layers = _chain(rng, features)
    (fused,) = runtime.InferenceSession(_model(attrs)).run(None, feeds)
    nodes, inits, prev, w_at, t_at, d_at = [], [], "X", 0, 0, 0
    nodes.append(helper.make_node("QuantizePack", ["X"], ["h0"], domain="qcompile", **QUANT, planes=2,
                                  pre_scale=2.0, pre_bias=-1.0))
    prev = "h0"
    for i, dense in enumerate(layers):
        k, m = features[i], features[i + 1]
        words = m * len(dense["weight_coeffs"]) * -(-k // 64)
        inits.append(onnx.numpy_helper.from_array(feeds["W"][w_at:w_at + words].reshape(m, -1), f"w{i}"))
        w_at += words
        if i + 1 < len(layers):
            inits.append(onnx.numpy_helper.from_array(feeds["thresholds"][t_at:t_at + 3 * m].reshape(m, 3), f"t{i}"))
            inits.append(onnx.numpy_helper.from_array(feeds["direction"][d_at:d_at + m], f"d{i}"))
            t_at, d_at = t_at + 3 * m, d_at + m
            nodes.append(helper.make_node("BitSerialGemmThreshold", [prev, f"w{i}", f"t{i}", f"d{i}"], [f"h{i + 1}"],
                                          domain="qcompile", **dense, out_base=-2, out_planes=2))
        else:
            nodes.append(helper.make_node("BitSerialGemm", [prev, f"w{i}", "scale", "bias"], ["Y"],
                                          domain="qcompile", **dense))
        prev = f"h{i + 1}"
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(n, F32, None) for n in ("X", "scale", "bias")],
                              [helper.make_tensor_value_info("Y", F32, None)], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("qcompile", 1)])
    model.ir_version = 8
    (separate,) = runtime.InferenceSession(model.SerializeToString()).run(
        None, {k: feeds[k] for k in ("X", "scale", "bias")})
    assert np.array_equal(fused.view(np.uint32), separate.view(np.uint32))


def test_bitserial_mlp_errors():
    rng = np.random.default_rng(2)
    feeds, attrs, _ = _chain(rng, (100, 8, 4))
    cases = [
        (dict(attrs, act_coeffs=[1, 2, 1, -2]), r"layer 0: attribute 'act_coeffs' \[1, 2\] is not the coefficients"),
        (dict(attrs, levels=[3, 3]), r"attribute 'levels': expected 1 values"),
        (dict(attrs, features=[100]), r"attribute 'features': expected 2..65"),
    ]
    for bad, match in cases:
        with pytest.raises(Exception, match=match):
            runtime.InferenceSession(_model(bad)).run(None, feeds)
    with pytest.raises(Exception, match=r"input W: expected shape \[40\]"):
        runtime.InferenceSession(_model(attrs)).run(None, {**feeds, "W": feeds["W"][:-1]})
    with pytest.raises(Exception, match=r"input X: expected shape \[N, 100\]"):
        runtime.InferenceSession(_model(attrs)).run(None, {**feeds, "X": feeds["X"][:, :99]})
    t = feeds["thresholds"].copy().reshape(8, 3)
    t[0] = [5, 1, 0] if feeds["direction"][0] > 0 else [0, 1, 5]
    with pytest.raises(Exception, match=r"layer 0.*thresholds: channel 0 must be"):
        runtime.InferenceSession(_model(attrs, ("W", "thresholds", "direction"), {**feeds, "thresholds": t.reshape(-1)})).run(
            None, {k: feeds[k] for k in ("X", "scale", "bias")})
