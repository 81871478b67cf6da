"""QONNX export: the graph contract the compiler relies on, and parity of PyTorch eval with
onnxruntime running the exported model through the qcompile op library."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

import qcompile.runtime
from qcompile.base.domains import QONNX_DOMAIN
from qcompile.ops.shift import pow2_quant
from qcompile.train.export import export_onnx
from qcompile.train.models import build_model
from qcompile.train.quantizers import pow2_h, pow2_thresholds

CASES = [  # (id, model, method, wbits, abits)
    ("binary-convnet", "convnet", "ste", 1, 1),
    ("binary-xnor-convnet", "convnet", "xnor", 1, 1),
    ("binary-resnet20", "resnet20", "ste", 1, 1),
    ("ternary-convnet", "convnet", "twn", 2, 2),
    ("2bit-aqe-convnet", "convnet", "aqe", 2, 2),
    ("2bit-dorefa-convnet", "convnet", "dorefa", 2, 2),
    ("2bit-ste-vgg", "vgg_small", "ste", 2, 2),
    ("3bit-aqe-resnet20", "resnet20", "aqe", 3, 3),
    ("bcgd-w1a2-resnet18", "resnet18", "bcgd", 1, 2),
]


def _trained_like(name, method, wb, ab, in_shape=(1, 8, 8), **opts):
    torch.manual_seed(0)
    model, rep = build_model(name, in_shape, 10, width=0.25, wbits=wb, abits=ab, method=method,
                             **opts)
    model.train()
    with torch.no_grad():  # give BatchNorm non-trivial running statistics
        for _ in range(3):
            model(torch.randn(32, *in_shape))
    return model.eval(), rep


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_export_parity(tmp_path, case):
    _, name, method, wb, ab = case
    model, _ = _trained_like(name, method, wb, ab)
    path = export_onnx(model, tmp_path / "m.onnx", (1, 8, 8))
    x = torch.randn(64, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = model(x).numpy()
    sess = qcompile.runtime.InferenceSession(str(path))
    out = sess.run(["logits"], {"input": x.numpy()})[0]
    assert out.shape == ref.shape
    # Quantized weights and quantizer outputs are exact in both; what differs is float
    # summation order in Conv/Gemm/BatchNorm (MLAS vs. torch's CPU kernels), ~1e-7 relative
    # per layer.
    tol = 1e-4 * max(1.0, float(np.abs(ref).max()))
    assert float(np.abs(out - ref).max()) <= tol
    # Same top-1, except where the reference's two best logits are within that rounding of
    # each other (an untrained low-bit net has such near-ties; rounding may pick either).
    top2 = np.sort(ref, axis=1)[:, -2:]
    clear = (top2[:, 1] - top2[:, 0]) > 2 * tol
    assert clear.mean() >= 0.75
    assert np.array_equal(out.argmax(1)[clear], ref.argmax(1)[clear])


def _graph(path):
    m = onnx.load(str(path))
    inits = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    producers = {o: n for n in m.graph.node for o in n.output}
    return m, inits, producers


def test_binary_graph_contract(tmp_path):
    model, rep = _trained_like("convnet", "ste", 1, 1)
    m, inits, producers = _graph(export_onnx(model, tmp_path / "m.onnx", (1, 8, 8)))
    assert [i.name for i in m.graph.input] == ["input"]
    assert [o.name for o in m.graph.output] == ["logits"]
    assert m.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # dynamic batch
    assert any(o.domain == QONNX_DOMAIN for o in m.opset_import)
    assert any(o.domain in ("", "ai.onnx") and o.version >= 17 for o in m.opset_import)
    convs = [n for n in m.graph.node if n.op_type in ("Conv", "Gemm")]
    quantized = 0
    for n in convs:
        wsrc = producers.get(n.input[1])
        if wsrc is None:  # full-precision first conv / last Gemm: a plain initializer
            assert n.input[1] in inits
            continue
        quantized += 1
        assert wsrc.op_type == "BipolarQuant" and wsrc.domain == QONNX_DOMAIN
        w, s = inits[wsrc.input[0]], inits[wsrc.input[1]]
        assert set(np.unique(w)) <= {-1.0, 1.0}
        assert s.shape == () and float(s) == 1.0  # AQE/STE binary: no scale
        if n.op_type == "Gemm":
            assert any(a.name == "transB" and a.i == 1 for a in n.attribute)
        # activation side: Clip → BipolarQuant(x, 1.0)
        asrc = producers[n.input[0]]
        if asrc.op_type == "MaxPool" or asrc.op_type == "Flatten":
            asrc = producers[asrc.input[0]]
        assert asrc.op_type == "BipolarQuant"
        assert inits[asrc.input[1]].shape == () and float(inits[asrc.input[1]]) == 1.0
        assert producers[asrc.input[0]].op_type == "Clip"
    assert quantized == len(rep.quantized) == 7  # 5 convs + 2 FC; first conv and last FC FP


def test_xnor_scale_per_channel_shapes(tmp_path):
    model, _ = _trained_like("convnet", "xnor", 1, 1)
    m, inits, producers = _graph(export_onnx(model, tmp_path / "m.onnx", (1, 8, 8)))
    for n in m.graph.node:
        src = producers.get(n.input[1]) if n.op_type in ("Conv", "Gemm") else None
        if src is None:
            continue
        w, s = inits[src.input[0]], inits[src.input[1]]
        assert s.shape == (w.shape[0],) + (1,) * (w.ndim - 1)  # [M,1,1,1] / [M,1]


def test_quant_weight_initializers_reproduce_exactly(tmp_path):
    for method, wb, ab in (("twn", 2, 2), ("dorefa", 2, 2)):
        model, _ = _trained_like("convnet", method, wb, ab)
        m, inits, _producers = _graph(export_onnx(model, tmp_path / "m.onnx", (1, 8, 8)))
        n_q = 0
        for n in m.graph.node:
            if n.op_type != "Quant" or n.input[0] not in inits:
                continue
            n_q += 1
            w, s, zp, b = (inits[i] for i in n.input)
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
            assert attrs["signed"] == 1 and attrs["narrow"] == 1 and float(zp) == 0.0
            q = np.round(w / s)
            lim = 2 ** (float(b) - 1) - 1
            assert np.all(np.abs(q) <= lim)
            assert np.array_equal((q * s).astype(np.float32), w)  # Quant reproduces the values
        assert n_q == 7, method


def test_aqe_pow2_weights_with_layer_scale_are_exact_pow2_quant(tmp_path):
    """With the per-layer power-of-two scale S (the default), >= 3-bit h weights export as a
    4-bit narrow Quant with scale S/4 over S·{0, ±1/4, ±1/2, ±1}: SHIFT-able, exact."""
    from qcompile.analysis import pow2_decomposition

    model, _ = _trained_like("convnet", "aqe", 3, 3)
    m, inits, producers = _graph(export_onnx(model, tmp_path / "m.onnx", (1, 8, 8)))
    n_q = 0
    for n in m.graph.node:
        if n.op_type != "Quant" or n.input[0] not in inits:
            continue
        n_q += 1
        w, s, bits = (inits[n.input[i]] for i in (0, 1, 3))
        assert float(bits) == 4 and np.log2(float(s)) == np.round(np.log2(float(s)))
        assert set(np.unique(np.abs(w / s))) <= {0.0, 1.0, 2.0, 4.0}
        assert pow2_decomposition(w) is not None
    assert n_q == 7
    # activations stay qcompile::Pow2Quant
    convs = [n for n in m.graph.node if n.op_type == "Conv"][1:]
    assert all(producers[n.input[0]].op_type == "Pow2Quant" for n in convs)


def test_aqe_pow2_weights_and_activations_are_pow2quant(tmp_path):
    """Without a scale (``pow2_scale="none"``, the paper's h), AQE >= 3-bit weights and
    activations export as qcompile::Pow2Quant with pow2_h's thresholds."""
    model, _ = _trained_like("convnet", "aqe", 3, 3, pow2_scale="none")
    m, _, producers = _graph(export_onnx(model, tmp_path / "m.onnx", (1, 8, 8)))
    assert not [n for n in m.graph.node if n.domain == QONNX_DOMAIN]
    pow2 = [n for n in m.graph.node if n.domain == "qcompile" and n.op_type == "Pow2Quant"]
    assert not {"GreaterOrEqual", "Where", "Abs"} & {n.op_type for n in m.graph.node}
    # weights: Pow2Quant over an initializer holding the exact levels (idempotent), 7 layers
    weights = [n for n in pow2 if n.input[0] in {t.name for t in m.graph.initializer}]
    assert len(weights) == 7 and len(pow2) > 7
    for n in weights:
        w = numpy_helper.to_array(next(t for t in m.graph.initializer if t.name == n.input[0]))
        assert set(np.unique(np.abs(w))) <= {0.0, 0.25, 0.5, 1.0}
    for n in pow2:
        (attr,) = n.attribute
        assert attr.name == "thresholds"
        assert list(attr.floats) == pytest.approx(pow2_thresholds(3), rel=1e-7)
    assert any(o.domain == "qcompile" for o in m.opset_import)
    # every quantized conv after the first reads a Pow2Quant
    convs = [n for n in m.graph.node if n.op_type == "Conv"][1:]
    assert all(producers[n.input[0]].op_type == "Pow2Quant" for n in convs)


@pytest.mark.parametrize("bits,zero_threshold", [(3, "log"), (4, "log"), (3, "linear")])
def test_pow2_h_matches_the_pow2quant_reference(bits, zero_threshold):
    """The trainer's h and the op's numpy oracle agree on every input, thresholds and ties
    included."""
    t = pow2_thresholds(bits, zero_threshold)
    x = np.concatenate([np.random.default_rng(0).uniform(-1.5, 1.5, 5000), t, -np.asarray(t),
                        np.nextafter(np.float32(t), np.float32(0)),
                        [0.0, -0.0, 1.0, -1.0, 1e30]]).astype(np.float32)
    want = pow2_h(torch.from_numpy(x), bits, zero_threshold).numpy()
    got = pow2_quant(x, t)
    assert np.array_equal(want, got)  # == treats -0.0 and +0.0 alike, which a conv does too
