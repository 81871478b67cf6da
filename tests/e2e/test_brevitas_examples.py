"""Brevitas's own example models (brevitas_examples.bnn_pynq, random weights with non-degenerate
BatchNorm statistics, export_qonnx) compiled by qcompile, run in onnxruntime and compared with
qonnx's executor (issue 11).

Every config is compiled with its widths inferred and with its nominal widths passed; every layer
is lowered except a first layer reading the float graph input. The TorchScript exporter is used
for speed (dynamo=False); one test covers the default dynamo exporter."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from qcompile import runtime
from qcompile.compiler import compile as compile_model
from tools.brevitas_report import export_example, qonnx_run

pytest.importorskip("brevitas_examples")
pytest.importorskip("qonnx")

# config -> its nominal (weight, activation) widths, as the Brevitas names say
CONFIGS = {
    "cnv_1w1a": (1, 1), "cnv_1w2a": (1, 2), "cnv_2w2a": (2, 2),
    "lfc_1w1a": (1, 1), "lfc_1w2a": (1, 2),
    "sfc_1w1a": (1, 1), "sfc_1w2a": (1, 2), "sfc_2w2a": (2, 2),
    "tfc_1w1a": (1, 1), "tfc_1w2a": (1, 2), "tfc_2w2a": (2, 2),
    "resnet18_4w4a": (4, 4),
}
# why layers stayed float before issue 11; none may stay float for these any more
OLD_REASONS = ("(MaxPool)", "activation Quant scale is not a positive scalar", "Gemm's C is not a constant",
               "non-constant", "Trunc")


IMAGENET = {"quant_mobilenet_v1_4b": (4, 4), "quant_proxylessnas_mobile14_4b": (4, 4)}


def _export(name: str, path, dynamo: bool = False) -> tuple[str, np.ndarray]:
    # the same models, weights and inputs as the closing table (tools/brevitas_report.py)
    return export_example(name, path, dynamo=dynamo)


def _ort_run(model, x: np.ndarray) -> np.ndarray:
    data = model.SerializeToString() if isinstance(model, onnx.ModelProto) else onnx.load(model).SerializeToString()
    sess = ort.InferenceSession(data, runtime.session_options(threads=1), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def _assert_matches_qonnx(ours: np.ndarray, theirs: np.ndarray) -> None:
    assert ours.argmax(-1).tolist() == theirs.argmax(-1).tolist()
    # integer parts are exact; the float parts (BatchNorm folded into the per-channel scale, the
    # scales multiplied in another order) differ by float32 rounding, a few ulps of each output
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5 * float(np.abs(theirs).max()))


def _assert_float_layers_have_new_reasons(result) -> None:
    float_rows = [r for r in result.rows if r.op_after == r.op_before]
    for row in float_rows:
        assert not any(old in row.note for old in OLD_REASONS), (row.name, row.note)
        # the only layer left float: a first conv reading the float image
        assert "graph input" in row.note, (row.name, row.note)
    assert len(float_rows) <= 1, [r.name for r in float_rows]


@pytest.fixture(scope="session")
def brevitas(tmp_path_factory):
    """name -> (reference path, input, qonnx output, compile result with widths inferred), cached."""
    cache: dict[str, tuple] = {}

    def get(name: str):
        if name not in cache:
            path, x = _export(name, tmp_path_factory.mktemp(name) / f"{name}.onnx")
            cache[name] = (path, x, qonnx_run(path, x), compile_model(path, None))
        return cache[name]

    return get


@pytest.mark.parametrize("name", list(CONFIGS))
def test_inferred_widths_lower_every_layer_and_match_qonnx(brevitas, name):
    _, x, theirs, result = brevitas(name)
    assert result.parity is not None and result.parity.passed
    assert (result.wbits, result.abits) == CONFIGS[name]  # an 8-bit first layer / classifier aside
    _assert_float_layers_have_new_reasons(result)
    _assert_matches_qonnx(_ort_run(result.model, x), theirs)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_nominal_widths_accepted_and_compile_the_same(brevitas, name):
    path, x, theirs, inferred = brevitas(name)
    wbits, abits = CONFIGS[name]
    result = compile_model(path, None, wbits=wbits, abits=abits, check_parity=False)
    assert [(r.name, r.op_after) for r in result.rows] == [(r.name, r.op_after) for r in inferred.rows]
    ours = _ort_run(result.model, x)
    np.testing.assert_array_equal(ours, _ort_run(inferred.model, x))  # the same compiled arithmetic
    _assert_matches_qonnx(ours, theirs)


def test_resnet18_reference_with_trunc_runs_in_ort_and_matches_qonnx(brevitas):
    path, x, theirs, _ = brevitas("resnet18_4w4a")
    assert any(n.op_type == "Trunc" for n in onnx.load(path).graph.node)
    # the same float32 ops in the same order (the Trunc kernel is bit-exact with qonnx's numpy)
    np.testing.assert_array_equal(_ort_run(path, x), theirs)


def test_default_dynamo_export_compiles_and_matches_qonnx(tmp_path):
    path, x = _export("tfc_2w2a", tmp_path / "tfc_2w2a.onnx", dynamo=True)
    # --impl bitserial: the layers the dynamo export gives must lower (the cost model may leave
    # these tiny ones float by default)
    result = compile_model(path, None, impl=["bitserial"])
    assert result.parity is not None and result.parity.passed
    assert (result.wbits, result.abits) == (2, 2)
    assert all(r.op_after.startswith("BitSerialGemm") for r in result.rows), [(r.name, r.op_after, r.note) for r in result.rows]
    _assert_matches_qonnx(_ort_run(result.model, x), qonnx_run(path, x))


def _assert_pool_is_integer(model: onnx.ModelProto) -> None:
    """TruncAvgPool2d (AveragePool -> Trunc) became the integer sum-pool on codes: no float pool, no Trunc."""
    ops = [n.op_type for n in model.graph.node]
    assert not {"AveragePool", "GlobalAveragePool", "Trunc"} & set(ops), ops
    assert "ReduceSum" in ops


def test_resnet18_classifier_takes_int8_arithmetic(brevitas):
    _, _, _, result = brevitas("resnet18_4w4a")
    _assert_pool_is_integer(result.model)
    # the classifier reads the pool's uint8 codes: MatMulInteger <- Reshape <- Cast <- Clip (int32)
    producers = {n.output[0]: n for n in result.model.graph.node}
    mm = next(n for n in result.model.graph.node if n.op_type == "MatMulInteger")
    reshape = producers[mm.input[0]]
    assert [reshape.op_type, producers[reshape.input[0]].op_type] == ["Reshape", "Cast"]
    lowered = {r.name: r.op_after for r in result.rows}
    body = [n for n in lowered if n != "/conv1/Conv"]  # the first conv reads the float input
    # the 8-bit classifier takes int8 arithmetic (MatMulInteger), not 8 bit planes
    assert all(lowered[n].startswith(("BitSerial", "Xnor", "Shift", "ConvInteger", "DirectConv", "MatMulInteger"))
               for n in body), lowered
    assert lowered["/linear/Gemm"] == "MatMulInteger"


@pytest.mark.parametrize("name", list(IMAGENET))
def test_imagenet_qat_models_lower_depthwise_convs_and_match_reference(tmp_path, name):
    """MobileNet / ProxylessNAS at 224x224 (their pooling needs it): every conv but the first is
    lowered, the depthwise ones behind per-channel QuantReLU scales included. Compared with the
    reference in stock onnxruntime (the compile's parity check on its outputs), not
    with qonnx's executor: its numpy convs at 224x224 would take this file past its time budget."""
    path, x = _export(name, tmp_path / f"{name}.onnx")
    # --impl bitserial: every layer that can lower does (by default the cost model leaves the
    # depthwise ones float where float is faster)
    result = compile_model(path, None, impl=["bitserial"])
    assert result.parity is not None and result.parity.passed
    assert (result.wbits, result.abits) == IMAGENET[name]
    _assert_float_layers_have_new_reasons(result)
    _assert_pool_is_integer(result.model)
    nominal = compile_model(path, None, wbits=4, abits=4, check_parity=False, impl=["bitserial"])
    np.testing.assert_array_equal(_ort_run(nominal.model, x), _ort_run(result.model, x))
