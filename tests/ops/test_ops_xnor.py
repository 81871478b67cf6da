"""qcompile::BinarizePack / XnorConv / XnorGemm in onnxruntime against the numpy reference.

Integer parts are compared exactly (a graph with scale=1, bias=0 gives Y = float(D), exact since
|D| < 2^24); float parts bit for bit (the kernels compute float(D) * scale + bias with one
multiply then one add, FMA contraction off, as numpy does). Every case runs on every kernel
variant of the library's table (qcompile.runtime.kernel_table("XnorConv")), chosen by the node
attribute `kernel`; variants this CPU cannot run are skipped with the reason.
"""

from __future__ import annotations

import itertools
import os
import random
import zlib
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import onnx
import pytest
from kernel_variants import VARIANT_PARAMS, XNOR_TABLE, with_kernel
from onnx import TensorProto, helper

from qcompile import runtime
from qcompile.ops import packing, xnor

U64, F32 = TensorProto.UINT64, TensorProto.FLOAT
CONV_INPUTS = ["X", "W", "scale", "bias"]
QONNX = "qonnx.custom_op.general"


def _model(nodes: list, inputs: list[tuple[str, int]], outputs: list[str], inits=()) -> bytes:
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info(n, t, None) for n, t in inputs],
        [helper.make_tensor_value_info(n, F32 if n[0] == "Y" else U64, None) for n in outputs],
        initializer=list(inits),
    )
    model = helper.make_model(
        graph,
        opset_imports=[
            helper.make_opsetid("", 17),
            helper.make_opsetid("qcompile", 1),
            helper.make_opsetid("qonnx.custom_op.general", 1),
        ],
    )
    model.ir_version = 8
    return model.SerializeToString()


@contextmanager
def override(name: str | None) -> Iterator[None]:
    """QCOMPILE_KERNEL=name (the override of every node's `kernel`) while sessions are created."""
    old = os.environ.get("QCOMPILE_KERNEL")
    if name is None:
        os.environ.pop("QCOMPILE_KERNEL", None)
    else:
        os.environ["QCOMPILE_KERNEL"] = name
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("QCOMPILE_KERNEL", None)
        else:
            os.environ["QCOMPILE_KERNEL"] = old


def session(model: bytes, variant: str | None = None, threads: int = 1):
    """A session whose qcompile nodes run kernel variant `variant` (None: their default)."""
    return runtime.InferenceSession(with_kernel(model, variant), threads=threads)


def conv_model(attrs: dict) -> bytes:
    node = helper.make_node("XnorConv", CONV_INPUTS, ["Y"], domain="qcompile", **attrs)
    return _model([node], [("X", U64), ("W", U64), ("scale", F32), ("bias", F32)], ["Y"])


def bits_equal(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal bit patterns (so -0.0 != 0.0): float32 results must match bit for bit."""
    same_kind = a.dtype == b.dtype == np.float32 and a.shape == b.shape
    return same_kind and np.array_equal(a.view(np.uint32), b.view(np.uint32))


# ------------------------------------------------------------------------------------- sweep

CHANNELS = [1, 3, 63, 64, 65, 130, 256]
KERNELS = [(1, 1), (3, 3), (5, 5), (3, 1), (1, 5)]
STRIDES = [1, 2]
DILATIONS = [1, 2]
PADS = ["zero", "symmetric", "asymmetric"]
GROUPS = ["1", "2", "depthwise"]
BATCHES = [1, 3]
THREADS = [1, 2]
OUT_PER_GROUP = [1, 7, 8, 9, 17]  # around the 8-channel block of the fast kernels
IMAGE_EXTRA = [(0, 2), (3, 0), (5, 6)]  # H, W beyond the dilated kernel: non-square images

AXES = {
    "C": CHANNELS,
    "kernel": KERNELS,
    "stride": STRIDES,
    "dilation": DILATIONS,
    "pads": PADS,
    "group": GROUPS,
    "batch": BATCHES,
    "threads": THREADS,
    "mg": OUT_PER_GROUP,
    "extra": IMAGE_EXTRA,
}


def _valid(assign: dict) -> bool:
    """group 2 needs an even channel count."""
    return not (assign.get("group") == "2" and "C" in assign and assign["C"] % 2)


def _pairwise_cases(seed: int = 7) -> list[dict]:
    """A structured subset: C x kernel x pads x group in full (the axes that shape the packed
    layout and the padded border), and every pair of values of any two axes at least once (greedy
    covering of the rest), skipping what cannot exist (odd C with group 2)."""
    names = list(AXES)
    uncovered = set()
    for (i, a), (j, b) in itertools.combinations(enumerate(names), 2):
        for va, vb in itertools.product(AXES[a], AXES[b]):
            if _valid({a: va, b: vb}):
                uncovered.add((i, AXES[a].index(va), j, AXES[b].index(vb)))
    rng = random.Random(seed)
    cases = []

    def gain(case: dict) -> int:
        idx = [AXES[n].index(case[n]) for n in names]
        pairs = itertools.combinations(range(len(names)), 2)
        return sum((i, idx[i], j, idx[j]) in uncovered for i, j in pairs)

    def take(case: dict) -> None:
        idx = [AXES[n].index(case[n]) for n in names]
        for i, j in itertools.combinations(range(len(names)), 2):
            uncovered.discard((i, idx[i], j, idx[j]))
        cases.append(case)

    def best_completion(fixed: dict) -> dict:
        best, best_gain = None, -1
        for _ in range(60):
            case = dict(fixed)
            for n in names:
                if n not in case:
                    case[n] = rng.choice(AXES[n])
            if not _valid(case):
                continue
            g = gain(case)
            if g > best_gain:
                best, best_gain = case, g
        return best

    for c, k, p, g in itertools.product(CHANNELS, KERNELS, PADS, GROUPS):
        if _valid({"C": c, "group": g}):
            take(best_completion({"C": c, "kernel": k, "pads": p, "group": g}))
    while uncovered:
        i, vi, j, vj = next(iter(sorted(uncovered)))
        take(best_completion({names[i]: AXES[names[i]][vi], names[j]: AXES[names[j]][vj]}))
    return cases


CASES = _pairwise_cases()


def _conv_setup(case: dict, seed: int):
    c = case["C"]
    g = {"1": 1, "2": 2, "depthwise": c}[case["group"]]
    kh, kw = case["kernel"]
    s, d = case["stride"], case["dilation"]
    pads = {
        "zero": (0, 0, 0, 0),
        "symmetric": ((kh // 2) * d, (kw // 2) * d, (kh // 2) * d, (kw // 2) * d),
        "asymmetric": (1, 0, 2, 3),
    }[case["pads"]]
    eh, ew = case["extra"]
    h, w = d * (kh - 1) + 1 + eh, d * (kw - 1) + 1 + ew
    m = g * case["mg"]
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((case["batch"], c, h, w)).astype(np.float32)
    wt = rng.standard_normal((m, c // g, kh, kw)).astype(np.float32)
    attrs = dict(
        in_channels=c,
        kernel_shape=[kh, kw],
        strides=[s, s],
        pads=list(pads),
        dilations=[d, d],
        group=g,
    )
    xp = packing.pack_activations(x, group=g)
    wp = packing.pack_conv_weights(wt)
    return x, wt, xp, wp, attrs


def _case_id(case: dict) -> str:
    kh, kw = case["kernel"]
    return (
        f"C{case['C']}-k{kh}x{kw}-s{case['stride']}-d{case['dilation']}-{case['pads']}"
        f"-g{case['group']}-n{case['batch']}-t{case['threads']}-mg{case['mg']}"
        f"-x{case['extra'][0]}_{case['extra'][1]}"
    )


def test_sweep_covers_every_value_and_pair():
    for name, values in AXES.items():
        assert {repr(c[name]) for c in CASES} == {repr(v) for v in values}, name
    print(f"\nXnorConv sweep: {len(CASES)} cases x {len(XNOR_TABLE)} variants")


@pytest.mark.parametrize("variant", VARIANT_PARAMS)
@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_xnor_conv_sweep(case: dict, variant: str):
    _x, _wt, xp, wp, attrs = _conv_setup(case, seed=zlib.crc32(_case_id(case).encode()))
    m = wp.shape[0]
    sess = session(conv_model(attrs), variant, threads=case["threads"])
    kw = {k: tuple(v) if isinstance(v, list) else v for k, v in attrs.items()}
    d_ref = xnor.xnor_conv_int(xp, wp, **kw)

    # Integer part: scale 1, bias 0 -> Y == float(D), exactly.
    ones, zeros = np.ones(m, np.float32), np.zeros(m, np.float32)
    (y,) = sess.run(None, {"X": xp, "W": wp, "scale": ones, "bias": zeros})
    assert y.shape == d_ref.shape
    assert np.array_equal(y.astype(np.int64), d_ref.astype(np.int64))
    assert np.array_equal(y, d_ref.astype(np.float32))

    # Float part: bit for bit against the numpy reference.
    rng = np.random.default_rng(1)
    scale = rng.uniform(-2, 2, m).astype(np.float32) / np.float32(3)
    bias = rng.standard_normal(m).astype(np.float32) * np.float32(0.7)
    (y,) = sess.run(None, {"X": xp, "W": wp, "scale": scale, "bias": bias})
    assert bits_equal(y, xnor.xnor_conv(xp, wp, scale, bias, **kw))


# ------------------------------------------ against ORT's own float Conv (reference graph)

FLOAT_CONV_CASES = [
    # C, M, (H, W), (KH, KW), stride, dilation, pads, group
    (64, 16, (9, 9), (3, 3), 1, 1, (1, 1, 1, 1), 1),
    (65, 9, (7, 10), (3, 1), 2, 1, (1, 0, 2, 0), 1),
    (130, 10, (8, 6), (5, 5), 1, 2, (2, 3, 1, 4), 2),
    (3, 8, (6, 6), (1, 5), 1, 1, (0, 2, 0, 2), 1),
    (32, 32, (6, 7), (3, 3), 2, 1, (1, 1, 1, 1), 32),
]


@pytest.mark.parametrize("variant", VARIANT_PARAMS)
@pytest.mark.parametrize(
    "case", FLOAT_CONV_CASES, ids=lambda c: f"C{c[0]}-M{c[1]}-k{c[3][0]}x{c[3][1]}-g{c[7]}"
)
def test_xnor_conv_matches_ort_float_conv(case, variant: str):
    """BinarizePack -> XnorConv equals BipolarQuant -> Conv (float +-1 weights, zero pads) in ORT:
    exact, since sums of +-1 products are small integers in float."""
    c, m, (h, w), (kh, kw), s, d, pads, g = case
    rng = np.random.default_rng(c * 31 + m)
    x = rng.standard_normal((2, c, h, w)).astype(np.float32)
    x[0, 0, 0, :2] = [0.0, -0.0]
    wt = rng.standard_normal((m, c // g, kh, kw)).astype(np.float32)
    w_pm1 = np.where(wt >= 0, 1.0, -1.0).astype(np.float32)
    conv_attrs = dict(
        kernel_shape=[kh, kw], strides=[s, s], pads=list(pads), dilations=[d, d], group=g
    )

    ref = _model(
        [
            helper.make_node("BipolarQuant", ["X", "one"], ["Xb"], domain=QONNX),
            helper.make_node("Conv", ["Xb", "Wf"], ["Y"], **conv_attrs),
        ],
        [("X", F32)],
        ["Y"],
        inits=[
            onnx.numpy_helper.from_array(w_pm1, "Wf"),
            onnx.numpy_helper.from_array(np.ones(1, np.float32), "one"),
        ],
    )
    compiled = _model(
        [
            helper.make_node("BinarizePack", ["X"], ["Xp"], domain="qcompile", group=g),
            helper.make_node(
                "XnorConv", ["Xp", "W", "scale", "bias"], ["Y"], domain="qcompile", in_channels=c,
                **conv_attrs,
            ),
        ],
        [("X", F32)],
        ["Y"],
        inits=[
            onnx.numpy_helper.from_array(packing.pack_conv_weights(wt), "W"),
            onnx.numpy_helper.from_array(np.ones(m, np.float32), "scale"),
            onnx.numpy_helper.from_array(np.zeros(m, np.float32), "bias"),
        ],
    )
    (y_ref,) = session(ref).run(None, {"X": x})
    (y,) = session(compiled, variant, threads=2).run(None, {"X": x})
    assert np.array_equal(y, y_ref)


# ---------------------------------------------------------------------------------- XnorGemm


def gemm_model(k: int) -> bytes:
    node = helper.make_node("XnorGemm", CONV_INPUTS, ["Y"], domain="qcompile", in_features=k)
    return _model([node], [("X", U64), ("W", U64), ("scale", F32), ("bias", F32)], ["Y"])


@pytest.mark.parametrize("variant", VARIANT_PARAMS)
@pytest.mark.parametrize("k", [1, 63, 64, 65, 130, 1000])
@pytest.mark.parametrize("n,m,threads", [(1, 10, 1), (5, 17, 2)])
def test_xnor_gemm(k: int, n: int, m: int, threads: int, variant: str):
    rng = np.random.default_rng(k * 7 + n)
    xp = packing.pack_dense(rng.standard_normal((n, k)).astype(np.float32))
    wp = packing.pack_dense_weights(rng.standard_normal((m, k)).astype(np.float32))
    sess = session(gemm_model(k), variant, threads)
    d_ref = xnor.xnor_gemm_int(xp, wp, in_features=k)
    ones, zeros = np.ones(m, np.float32), np.zeros(m, np.float32)
    (y,) = sess.run(None, {"X": xp, "W": wp, "scale": ones, "bias": zeros})
    assert np.array_equal(y, d_ref.astype(np.float32))
    scale = rng.uniform(-1, 1, m).astype(np.float32)
    bias = rng.standard_normal(m).astype(np.float32)
    (y,) = sess.run(None, {"X": xp, "W": wp, "scale": scale, "bias": bias})
    assert bits_equal(y, xnor.xnor_gemm(xp, wp, scale, bias, in_features=k))


@pytest.mark.parametrize("variant", VARIANT_PARAMS)
def test_xnor_gemm_constant_weights(variant: str):
    """W as an initializer: the kernel lays it out once at session creation (ConstWeights)."""
    k, m = 130, 21
    rng = np.random.default_rng(5)
    xp = packing.pack_dense(rng.standard_normal((4, k)).astype(np.float32))
    wp = packing.pack_dense_weights(rng.standard_normal((m, k)).astype(np.float32))
    scale = rng.uniform(-1, 1, m).astype(np.float32)
    bias = rng.standard_normal(m).astype(np.float32)
    node = helper.make_node("XnorGemm", CONV_INPUTS, ["Y"], domain="qcompile", in_features=k)
    arrays = [(wp, "W"), (scale, "scale"), (bias, "bias")]
    inits = [onnx.numpy_helper.from_array(a, n) for a, n in arrays]
    model = _model([node], [("X", U64)], ["Y"], inits=inits)
    sess = session(model, variant, threads=2)
    for _ in range(2):  # the prepared weights are reused across runs
        (y,) = sess.run(None, {"X": xp})
        assert bits_equal(y, xnor.xnor_gemm(xp, wp, scale, bias, in_features=k))


def test_xnor_conv_concurrent_runs():
    """One session run from several Python threads at once (onnxruntime releases the GIL): kernels
    keep no per-run state in the op, so every run gives the reference result."""
    from concurrent.futures import ThreadPoolExecutor

    c, m, k = 130, 24, 3
    rng = np.random.default_rng(11)
    wt = rng.standard_normal((m, c, k, k)).astype(np.float32)
    wp = packing.pack_conv_weights(wt)
    attrs = dict(in_channels=c, kernel_shape=[k, k], pads=[1, 1, 1, 1])
    node = helper.make_node("XnorConv", CONV_INPUTS, ["Y"], domain="qcompile", **attrs)
    ones, zeros = np.ones(m, np.float32), np.zeros(m, np.float32)
    arrays = [(wp, "W"), (ones, "scale"), (zeros, "bias")]
    inits = [onnx.numpy_helper.from_array(a, n) for a, n in arrays]
    sess = session(_model([node], [("X", U64)], ["Y"], inits=inits), threads=2)
    xs = [rng.standard_normal((2, c, 6, 5)).astype(np.float32) for _ in range(4)]
    inputs = [packing.pack_activations(x) for x in xs]
    ref_attrs = dict(in_channels=c, kernel_shape=(k, k), pads=(1, 1, 1, 1))
    expected = [xnor.xnor_conv_int(xp, wp, **ref_attrs) for xp in inputs]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda i: sess.run(None, {"X": inputs[i % 4]})[0], range(32)))
    for i, y in enumerate(results):
        assert np.array_equal(y, expected[i % 4].astype(np.float32))


def test_xnor_conv_empty_batch():
    feeds = {k: v for k, v in _conv_feeds().items()}
    feeds["X"] = feeds["X"][:0]
    (y,) = session(conv_model(BASE)).run(None, feeds)
    assert y.shape == (0, 8, 3, 3)


# ------------------------------------------------------------------------- XnorConvThreshold

THRESHOLD_CASES = CASES[::6]
I32 = TensorProto.INT32
THRESHOLD_INPUTS = [("X", U64), ("W", U64), ("threshold", I32), ("direction", I32)]


@pytest.mark.parametrize("variant", VARIANT_PARAMS)
@pytest.mark.parametrize("case", THRESHOLD_CASES, ids=[_case_id(c) for c in THRESHOLD_CASES])
def test_xnor_conv_threshold(case: dict, variant: str):
    """Bits equal the reference's; thresholds are drawn from D's own values so ties (D equal
    to the threshold) occur, plus the always/never thresholds INT32_MIN / INT32_MAX."""
    _x, _wt, xp, wp, attrs = _conv_setup(case, seed=zlib.crc32(_case_id(case).encode()))
    m = wp.shape[0]
    kw = {k: tuple(v) if isinstance(v, list) else v for k, v in attrs.items()}
    d = xnor.xnor_conv_int(xp, wp, **kw)
    rng = np.random.default_rng(m)
    threshold = rng.choice(d.reshape(-1), m).astype(np.int32)
    threshold[:2] = [np.iinfo(np.int32).min, np.iinfo(np.int32).max][: min(2, m)]
    direction = rng.choice(np.array([-1, 1], np.int32), m)
    out_group = next(og for og in (3, 2, 1) if m % og == 0)
    node = helper.make_node(
        "XnorConvThreshold", ["X", "W", "threshold", "direction"], ["P"], domain="qcompile",
        out_group=out_group, **attrs,
    )
    sess = session(_model([node], THRESHOLD_INPUTS, ["P"]), variant, threads=case["threads"])
    (p,) = sess.run(None, {"X": xp, "W": wp, "threshold": threshold, "direction": direction})
    want = xnor.xnor_conv_threshold(xp, wp, threshold, direction, out_group=out_group, **kw)
    assert p.dtype == np.uint64 and np.array_equal(p, want)


def test_xnor_conv_threshold_errors():
    feeds = _conv_feeds()
    node = helper.make_node(
        "XnorConvThreshold", ["X", "W", "threshold", "direction"], ["P"], domain="qcompile",
        out_group=3, **BASE,
    )
    inputs = THRESHOLD_INPUTS
    sess = session(_model([node], inputs, ["P"]))
    base = {"X": feeds["X"], "W": feeds["W"]}
    ok = {"threshold": np.zeros(8, np.int32), "direction": np.ones(8, np.int32)}
    with pytest.raises(Exception, match=r"XnorConvThreshold.*'out_group' \(3\) must divide M"):
        sess.run(None, {**base, **ok})
    node = helper.make_node(
        "XnorConvThreshold", ["X", "W", "threshold", "direction"], ["P"], domain="qcompile",
        out_group=2, **BASE,
    )
    sess = session(_model([node], inputs, ["P"]))
    bad_dir = {**ok, "direction": np.array([1, 1, 0, 1, 1, 1, 1, 1], np.int32)}
    with pytest.raises(Exception, match=r"XnorConvThreshold.*input direction: expected \+1 or -1"):
        sess.run(None, {**base, **bad_dir})
    match = r"XnorConvThreshold.*input threshold: expected shape \[8\]"
    with pytest.raises(Exception, match=match):
        sess.run(None, {**base, **ok, "threshold": np.zeros(5, np.int32)})


# ------------------------------------------------------------------------------ PackedMaxPool

MAXPOOL_CASES = [
    # (N, H, W, Wtot), kernel, strides, pads, dilations
    ((1, 6, 6, 1), (2, 2), (2, 2), (0, 0, 0, 0), (1, 1)),
    ((2, 7, 5, 3), (3, 3), (2, 2), (1, 1, 1, 1), (1, 1)),
    ((1, 9, 8, 2), (3, 2), (1, 2), (1, 0, 2, 1), (2, 1)),
    ((3, 4, 4, 5), (1, 1), (1, 1), (0, 0, 0, 0), (1, 1)),
    ((1, 3, 3, 1), (2, 2), (1, 1), (2, 2, 2, 2), (1, 1)),  # windows wholly in padding
]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("case", MAXPOOL_CASES, ids=lambda c: f"{c[0]}-k{c[1]}-s{c[2]}-p{c[3]}")
def test_packed_maxpool(case, threads: int):
    shape, kernel, strides, pads, dilations = case
    rng = np.random.default_rng(sum(shape))
    xp = rng.integers(0, 2**63, size=shape, dtype=np.uint64) * np.uint64(2) + rng.integers(
        0, 2, size=shape, dtype=np.uint64
    )
    or_mask = rng.integers(0, 2**63, size=shape[-1:], dtype=np.uint64)
    attrs = dict(
        kernel_shape=list(kernel), strides=list(strides), pads=list(pads), dilations=list(dilations)
    )
    node = helper.make_node("PackedMaxPool", ["X", "or_mask"], ["P"], domain="qcompile", **attrs)
    sess = session(_model([node], [("X", U64), ("or_mask", U64)], ["P"]), threads=threads)
    (p,) = sess.run(None, {"X": xp, "or_mask": or_mask})
    want = xnor.packed_maxpool(
        xp, or_mask, kernel_shape=kernel, strides=strides, pads=pads, dilations=dilations
    )
    assert np.array_equal(p, want)


def test_packed_maxpool_errors():
    inputs = [("X", U64), ("or_mask", U64)]
    node = helper.make_node(
        "PackedMaxPool", ["X", "or_mask"], ["P"], domain="qcompile", kernel_shape=[2, 2]
    )
    sess = session(_model([node], inputs, ["P"]))
    xp = np.zeros((1, 4, 4, 2), np.uint64)
    match = r"PackedMaxPool.*input or_mask: expected shape \[2\].*got \[3\]"
    with pytest.raises(Exception, match=match):
        sess.run(None, {"X": xp, "or_mask": np.zeros(3, np.uint64)})
    node = helper.make_node(
        "PackedMaxPool", ["X", "or_mask"], ["P"], domain="qcompile", kernel_shape=[2, 2],
        ceil_mode=1,
    )
    feeds = {"X": xp, "or_mask": np.zeros(2, np.uint64)}
    with pytest.raises(Exception, match=r"PackedMaxPool.*'ceil_mode': only 0"):
        session(_model([node], inputs, ["P"])).run(None, feeds)


# ------------------------------------------------------------------------------ BinarizePack


def pack_model(group: int = 1) -> bytes:
    node = helper.make_node("BinarizePack", ["X"], ["P"], domain="qcompile", group=group)
    return _model([node], [("X", F32)], ["P"])


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize(
    "shape,group",
    [
        ((2, 1, 3, 4), 1),
        ((1, 65, 5, 3), 1),
        ((3, 130, 4, 4), 2),
        ((2, 64, 3, 5), 64),
        ((1, 256, 2, 2), 4),
        # the kernel's 256-pixel spans and 8-pixel x 64-channel blocks: full, partial and tails
        ((1, 64, 17, 16), 1),  # one span and 16 pixels
        ((2, 70, 20, 13), 1),  # one span and 4 pixels
        ((1, 9, 16, 16), 1),  # exactly one span
        ((1, 3, 23, 29), 3),  # two spans and 155 pixels
        ((1, 64, 3, 16), 1),
        ((2, 7, 2, 9), 1),
        ((1, 100, 3, 17), 1),
        ((1, 200, 2, 56), 2),
        ((1, 129, 1, 13), 1),
    ],
)
def test_binarize_pack_4d(shape, group: int, threads: int):
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    x.flat[:3] = [0.0, -0.0, np.nan]  # +1, +1, -1 per the bit convention
    (p,) = session(pack_model(group), threads=threads).run(None, {"X": x})
    assert p.dtype == np.uint64
    assert np.array_equal(p, packing.pack_activations(x, group=group))


@pytest.mark.parametrize("k", [1, 63, 64, 65, 130, 1000])
def test_binarize_pack_2d(k: int):
    x = np.random.default_rng(k).standard_normal((3, k)).astype(np.float32)
    x[0, 0] = -0.0
    (p,) = session(pack_model()).run(None, {"X": x})
    assert np.array_equal(p, packing.pack_dense(x))


# ------------------------------------------------------------------------------------ errors


def _conv_feeds(c=64, m=8, k=3, h=5, w=5, g=1):
    rng = np.random.default_rng(0)
    xp = packing.pack_activations(rng.standard_normal((1, c, h, w)).astype(np.float32), group=g)
    wp = packing.pack_conv_weights(rng.standard_normal((m, c // g, k, k)).astype(np.float32))
    return {"X": xp, "W": wp, "scale": np.ones(m, np.float32), "bias": np.zeros(m, np.float32)}


def _run_conv(attrs: dict, feeds: dict, variant: str | None = None):
    session(conv_model(attrs), variant).run(None, feeds)


BASE = dict(in_channels=64, kernel_shape=[3, 3])


def test_error_wrong_packed_width():
    feeds = _conv_feeds(c=65)  # X has 2 words per pixel, the node says 64 channels -> 1 word
    match = r"XnorConv.*input X: expected last dim .* = 1 .*got shape \[1, 5, 5, 2\]"
    with pytest.raises(Exception, match=match):
        _run_conv(BASE, feeds)


def test_error_wrong_weight_shape():
    feeds = _conv_feeds()
    feeds["W"] = feeds["W"][:, :2].copy()
    match = r"XnorConv.*input W: expected shape \[8, 3, 3, 1\].*got \[8, 2, 3, 1\]"
    with pytest.raises(Exception, match=match):
        _run_conv(BASE, feeds)


def test_error_scale_length():
    feeds = _conv_feeds()
    feeds["bias"] = np.zeros(7, np.float32)
    with pytest.raises(Exception, match=r"XnorConv.*input bias: expected shape \[8\].*got \[7\]"):
        _run_conv(BASE, feeds)


def test_error_bad_group():
    with pytest.raises(Exception, match=r"XnorConv.*attribute 'group'.*in_channels \(64\), got 3"):
        _run_conv({**BASE, "group": 3}, _conv_feeds())
    feeds = _conv_feeds(c=64, m=9, g=2)  # M = 9 not divisible by group 2
    match = r"XnorConv.*input W: expected M .*divisible by group 2, got shape \[9, 3, 3, 1\]"
    with pytest.raises(Exception, match=match):
        _run_conv({**BASE, "group": 2}, feeds)


@pytest.mark.parametrize("pads", [[1, 1, -1, 1], [1, 1, 1]])
def test_error_bad_pads(pads):
    match = r"XnorConv.*attribute 'pads': expected \[pt, pl, pb, pr\].*got \["
    with pytest.raises(Exception, match=match):
        _run_conv({**BASE, "pads": pads}, _conv_feeds())


def test_error_output_too_small():
    match = (
        r"XnorConv.*output size < 1: input X \[1, 5, 5, 1\] with kernel_shape \[3, 3\]"
        r".*dilations \[3, 3\]"
    )
    with pytest.raises(Exception, match=match):
        _run_conv({**BASE, "dilations": [3, 3]}, _conv_feeds())


def test_error_bad_strides_and_missing_attr():
    with pytest.raises(Exception, match=r"XnorConv.*attribute 'strides'.*got \[0, 1\]"):
        _run_conv({**BASE, "strides": [0, 1]}, _conv_feeds())
    with pytest.raises(Exception, match=r"XnorConv.*attribute 'in_channels'.*missing"):
        _run_conv({"kernel_shape": [3, 3]}, _conv_feeds())
    with pytest.raises(Exception, match=r"XnorConv.*attribute 'in_channels': expected type int"):
        _run_conv({**BASE, "in_channels": 64.0}, _conv_feeds())


def test_error_wrong_rank():
    feeds = _conv_feeds()
    feeds["X"] = feeds["X"].reshape(1, 25, 1)
    match = r"XnorConv.*input X: expected rank 4 .*got shape \[1, 25, 1\]"
    with pytest.raises(Exception, match=match):
        _run_conv(BASE, feeds)


def test_error_wrong_dtype():
    """A float tensor wired into XnorConv's packed input: onnxruntime rejects the graph when the
    session is created, naming the op and the input's type."""
    model = _model(
        [helper.make_node("XnorConv", CONV_INPUTS, ["Y"], domain="qcompile", **BASE)],
        [("X", F32), ("W", U64), ("scale", F32), ("bias", F32)],
        ["Y"],
    )
    with pytest.raises(Exception, match=r"tensor\(float\).*XnorConv|XnorConv.*tensor\(float\)"):
        session(model)


def test_error_gemm_width():
    rng = np.random.default_rng(0)
    xp = packing.pack_dense(rng.standard_normal((2, 130)).astype(np.float32))
    wp = packing.pack_dense_weights(rng.standard_normal((4, 100)).astype(np.float32))
    feeds = {"X": xp, "W": wp, "scale": np.ones(4, np.float32), "bias": np.zeros(4, np.float32)}
    match = r"XnorGemm.*input W: expected shape \[M, 3\].*got \[4, 2\]"
    with pytest.raises(Exception, match=match):
        session(gemm_model(130)).run(None, feeds)


def test_error_binarize_pack_group():
    x = np.zeros((1, 6, 2, 2), np.float32)
    match = r"BinarizePack.*'group' \(4\) must divide the channels of input X \[1, 6, 2, 2\]"
    with pytest.raises(Exception, match=match):
        session(pack_model(4)).run(None, {"X": x})
    with pytest.raises(Exception, match=r"BinarizePack.*rank-2 input X \[3, 6\] requires group 1"):
        session(pack_model(2)).run(None, {"X": np.zeros((3, 6), np.float32)})


def test_error_kernel_attribute():
    names = ", ".join(v.name for v in XNOR_TABLE)
    match = (
        r"qcompile::XnorConv: attribute 'kernel': 'nope' is not a kernel variant of this op; "
        rf"expected one of {names} \(or empty: the best this CPU runs\)"
    )
    with pytest.raises(Exception, match=match):
        _run_conv(BASE, _conv_feeds(), variant="nope")
    for v in XNOR_TABLE:
        if not v.supported:
            match = rf"attribute 'kernel': '{v.name}' names a kernel variant that this CPU cannot run"
            with pytest.raises(Exception, match=match):
                _run_conv(BASE, _conv_feeds(), variant=v.name)


def test_error_kernel_override():
    match = r"QCOMPILE_KERNEL=nope is not a kernel variant; expected one of"
    with override("nope"), pytest.raises(Exception, match=match):
        _run_conv(BASE, _conv_feeds())
    for v in XNOR_TABLE:
        if not v.supported:
            match = rf"QCOMPILE_KERNEL={v.name} names a kernel variant that this CPU cannot run"
            with override(v.name), pytest.raises(Exception, match=match):
                _run_conv(BASE, _conv_feeds())


def test_kernel_override_wins_over_attribute():
    """QCOMPILE_KERNEL replaces the node's `kernel`: a node naming no variant runs under it."""
    with override("reference"):
        _run_conv(BASE, _conv_feeds(), variant="nope")


def test_kernel_variants_listed():
    names = [v.name for v in XNOR_TABLE]
    assert names[-1] == "reference" and "portable" in names
    assert all(v.supported for v in XNOR_TABLE if v.name in ("reference", "portable"))
    assert runtime.kernel_variants("XnorConv") == [v.name for v in XNOR_TABLE if v.supported]
    for op in ("XnorConvThreshold", "XnorGemm"):
        assert runtime.kernel_table(op) == XNOR_TABLE
    for op in runtime.KERNEL_OPS:
        assert runtime.kernel_variants(op)[-1] in ("reference", "portable")
    with override(None):
        assert runtime.selected_kernel("XnorConv") == runtime.kernel_variants("XnorConv")[0]
    with override("portable"):
        assert runtime.selected_kernel("XnorConv") == "portable"
        assert runtime.selected_kernel("BitSerialConv") == "portable"
    with override("nope"):
        assert runtime.selected_kernel("XnorConv") is None
    assert runtime.kernel_override("ShiftConv") == "QCOMPILE_SHIFT_KERNEL"
    assert runtime.kernel_override("QuantizePack") == ""
    with pytest.raises(ValueError, match=r"expected a qcompile op with kernel variants .*, got 'Conv'"):
        runtime.kernel_variants("Conv")
