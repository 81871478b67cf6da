"""Pads larger than the kernel and windows wholly in the padding, on every kernel variant.

qcompile's other sweeps keep pads below the kernel size, so no output row or column ever has a
window with no in-bounds tap; issue #16 found the tap-concatenated XnorConv path reading past its
edge-correction table in exactly that case (ValidTaps, packed_conv/conv_row.h). Each geometry
here has such windows (top, bottom, left, right, all sides, with stride, dilation and groups, and
a 1x1 image), few channels so the tap-concatenated path applies, and runs on every variant of
each conv family's table (the node attribute `kernel`), bit-exact against the numpy twins.
XnorConv / XnorConvThreshold also run with QCOMPILE_XNOR_TAP_CONCAT=force and =0 (the direct
kernels); the test-hooks counter proves the concatenated path ran. tools/sanitize.sh runs this
file on the AddressSanitizer build, where an out-of-bounds read fails the run.
"""

from __future__ import annotations

import numpy as np
import pytest
from kernel_variants import (
    VARIANT_PARAMS,
    have_hooks,
    hooks_session,
    tap_concat_runs,
    variant_params,
    with_kernel,
)
from onnx import TensorProto, helper
from test_ops_xnor_small import concat_mode

from qcompile.ops import bitserial, packing, shift, xnor

U64, F32, I32, U8 = TensorProto.UINT64, TensorProto.FLOAT, TensorProto.INT32, TensorProto.UINT8

# C, M, (H, W), (KH, KW), stride, dilation, pads [pt, pl, pb, pr], group
GEOMS = [
    (4, 8, (4, 4), (3, 3), 1, 1, (5, 1, 0, 1), 1),  # issue #16: rows wholly in the top padding
    (4, 8, (4, 4), (3, 3), 1, 1, (0, 1, 5, 1), 1),  # ... in the bottom padding
    (3, 8, (5, 4), (3, 3), 1, 1, (1, 6, 1, 0), 1),  # columns wholly in the left padding
    (3, 8, (5, 4), (3, 3), 1, 1, (1, 0, 1, 6), 1),  # ... in the right padding
    (5, 9, (3, 3), (2, 3), 1, 1, (4, 4, 4, 4), 1),  # pads > kernel on every side
    (16, 8, (4, 5), (3, 3), 2, 1, (6, 3, 6, 3), 1),  # stride 2
    (8, 8, (6, 6), (3, 3), 1, 2, (7, 2, 7, 2), 1),  # dilation 2
    (6, 16, (4, 4), (3, 3), 1, 1, (4, 4, 4, 4), 2),  # groups
    (2, 8, (1, 1), (3, 3), 1, 1, (3, 3, 3, 3), 1),  # a 1x1 image
    (16, 16, (3, 3), (5, 5), 1, 1, (9, 1, 9, 1), 1),  # far beyond the top and bottom
]


def _id(g) -> str:
    c, m, (h, w), (kh, kw), st, di, p, grp = g
    return f"C{c}-M{m}-{h}x{w}-k{kh}{kw}-s{st}-d{di}-p{''.join(map(str, p))}-g{grp}"


IDS = [_id(g) for g in GEOMS]


def _attrs(g) -> dict:
    c, _, _, (kh, kw), st, di, pads, grp = g
    return dict(in_channels=c, kernel_shape=[kh, kw], strides=[st, st], dilations=[di, di],
                pads=list(pads), group=grp)


def _twin(attrs: dict) -> dict:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in attrs.items()}


def _model(op: str, attrs: dict, inputs: list[tuple[str, int]], out_type: int) -> bytes:
    node = helper.make_node(op, [n for n, _ in inputs], ["Y"], domain="qcompile", name="n0", **attrs)
    graph = helper.make_graph([node], "g",
                              [helper.make_tensor_value_info(n, t, None) for n, t in inputs],
                              [helper.make_tensor_value_info("Y", out_type, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("qcompile", 1)])
    model.ir_version = 8
    return model.SerializeToString()


def _xnor_operands(g, seed: int):
    c, m, (h, w), (kh, kw), *_ , grp = g
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, c, h, w)).astype(np.float32)
    wt = rng.standard_normal((m, c // grp, kh, kw)).astype(np.float32)
    return packing.pack_activations(x, group=grp), packing.pack_conv_weights(wt), rng


@pytest.mark.parametrize("mode", ["force", "0"])
@pytest.mark.parametrize("variant", VARIANT_PARAMS)
@pytest.mark.parametrize("geom", GEOMS, ids=IDS)
def test_xnor_conv_windows_in_padding(geom, variant, mode):
    xp, wp, rng = _xnor_operands(geom, seed=1)
    attrs, m = _attrs(geom), geom[1]
    scale = rng.uniform(-2, 2, m).astype(np.float32)
    bias = rng.standard_normal(m).astype(np.float32)
    inputs = [("X", U64), ("W", U64), ("scale", F32), ("bias", F32)]
    with concat_mode(mode):
        sess = hooks_session(with_kernel(_model("XnorConv", attrs, inputs, F32), variant))
    before = tap_concat_runs() if have_hooks() else 0
    (d,) = sess.run(None, {"X": xp, "W": wp, "scale": np.ones(m, np.float32), "bias": np.zeros(m, np.float32)})
    assert np.array_equal(d, xnor.xnor_conv_int(xp, wp, **_twin(attrs)).astype(np.float32))
    (y,) = sess.run(None, {"X": xp, "W": wp, "scale": scale, "bias": bias})
    assert np.array_equal(y.view(np.uint32), xnor.xnor_conv(xp, wp, scale, bias, **_twin(attrs)).view(np.uint32))
    if have_hooks() and mode == "force" and variant != "reference":
        assert tap_concat_runs() == before + 2, "the tap-concatenated path did not run"


@pytest.mark.parametrize("variant", VARIANT_PARAMS)
@pytest.mark.parametrize("geom", GEOMS, ids=IDS)
def test_xnor_conv_threshold_windows_in_padding(geom, variant):
    xp, wp, rng = _xnor_operands(geom, seed=2)
    attrs, m = _attrs(geom), geom[1]
    d = xnor.xnor_conv_int(xp, wp, **_twin(attrs))
    threshold = rng.choice(d.reshape(-1), m).astype(np.int32)  # ties occur
    direction = rng.choice(np.array([-1, 1], np.int32), m)
    inputs = [("X", U64), ("W", U64), ("threshold", I32), ("direction", I32)]
    with concat_mode("force"):
        sess = hooks_session(with_kernel(_model("XnorConvThreshold", attrs, inputs, U64), variant))
    (p,) = sess.run(None, {"X": xp, "W": wp, "threshold": threshold, "direction": direction})
    assert np.array_equal(p, xnor.xnor_conv_threshold(xp, wp, threshold, direction, **_twin(attrs)))


@pytest.mark.parametrize("variant", variant_params("BitSerialConv"))
@pytest.mark.parametrize("geom", GEOMS, ids=IDS)
def test_bitserial_conv_windows_in_padding(geom, variant):
    c, m, (h, w), (kh, kw), *_, grp = geom
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, c, h, w)).astype(np.float32)
    xp = bitserial.quantize_pack(x, scale=0.5, bitwidth=2, signed=1, group=grp)  # 2 planes, signed
    codes = rng.integers(-4, 4, (m, c // grp, kh, kw))
    wp = bitserial.pack_weight_planes(codes, 3, True)
    attrs = dict(_attrs(geom), act_coeffs=bitserial.plane_coeffs(2, True),
                 weight_coeffs=bitserial.plane_coeffs(3, True))
    inputs = [("X", U64), ("W", U64), ("scale", F32), ("bias", F32)]
    sess = hooks_session(with_kernel(_model("BitSerialConv", attrs, inputs, F32), variant))
    ones, zeros = np.ones(m, np.float32), np.zeros(m, np.float32)
    (y,) = sess.run(None, {"X": xp, "W": wp, "scale": ones, "bias": zeros})
    assert np.array_equal(y, bitserial.bitserial_conv_int(xp, wp, **_twin(attrs)).astype(np.float32))


@pytest.mark.parametrize("variant", variant_params("ShiftConv"))
@pytest.mark.parametrize("geom", GEOMS, ids=IDS)
def test_shift_conv_windows_in_padding(geom, variant):
    c, m, (h, w), (kh, kw), *_, grp = geom
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, c, h, w)).astype(np.float32)
    w_int = rng.choice(np.array([0, 1, -1, 2, -4, 8, -64]), (m, (c // grp) * kh * kw))
    act = dict(act_mode="uniform", act_scale=0.25, act_bitwidth=4, act_signed=1)
    attrs = dict(_attrs(geom), **act)
    inputs = [("X", F32), ("W", U8), ("scale", F32), ("bias", F32)]
    sess = hooks_session(with_kernel(_model("ShiftConv", attrs, inputs, F32), variant))
    ones, zeros = np.ones(m, np.float32), np.zeros(m, np.float32)
    wp = shift.encode_weights(w_int)
    (y,) = sess.run(None, {"X": x, "W": wp, "scale": ones, "bias": zeros})
    assert np.array_equal(y, shift.shift_conv_int(x, wp, **_twin(attrs)).astype(np.float32))


@pytest.mark.parametrize("geom", GEOMS, ids=IDS)
def test_packed_maxpool_windows_in_padding(geom):
    c, _, (h, w), (kh, kw), st, di, pads, _ = geom
    rng = np.random.default_rng(5)
    xp = packing.pack_activations(rng.standard_normal((2, c, h, w)).astype(np.float32))
    mask = xp[0, 0, 0].copy()  # some channels OR, some AND
    attrs = dict(kernel_shape=[kh, kw], strides=[st, st], dilations=[di, di], pads=list(pads))
    node = helper.make_node("PackedMaxPool", ["X", "M"], ["Y"], domain="qcompile", **attrs)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("X", U64, None),
                                            helper.make_tensor_value_info("M", U64, None)],
                              [helper.make_tensor_value_info("Y", U64, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("qcompile", 1)])
    model.ir_version = 8
    (y,) = hooks_session(model.SerializeToString()).run(None, {"X": xp, "M": mask})
    assert np.array_equal(y, xnor.packed_maxpool(xp, mask, **_twin(attrs)))
