"""Parity validator: run a reference and a compiled model on the same inputs and compare.

Tolerance: binary and integer parts are computed exactly in both models, so differences come only
from float rounding of the parts the compiler re-associated (BatchNorm, conv bias and alpha folded
into one per-channel multiply-add, computed once in float64 and rounded to float32). Each folded
layer adds a few float32 ulps relative to the layer's output magnitude, and float layers after it
(a classifier summing thousands of terms) carry that forward. The default bound is
|compiled - reference| <= RTOL * max|reference| per output, with RTOL = 1e-4: two orders of magnitude
above what rounding produces (about 1e-6 on the models in tests/), and far below the effect of a
single flipped binary activation. Classification outputs must also agree on top-1 for every input.

Rounding ties: when outputs differ, activation codes that differ only at a quantizer's rounding
boundary are found and the reference continues from the compiled codes there (qcompile.tie_check);
the report counts them, and parity passes only if every differing code is such a tie and the
outputs then agree within the bound above.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass

import numpy as np
import onnx

from qcompile.base.metadata import LAYER_KEY, REF_KEY, SIGN_BITS_ENCODING, parse_ref_entry
from qcompile.errors import QCompileError
from qcompile.modelio import load_proto
from qcompile.ops.packing import negative_bits, unpack_activations
from qcompile.tie_check import TieSite, adjust_for_ties

RTOL = 1e-4

_NP_TYPES = {
    onnx.TensorProto.FLOAT: np.float32,
    onnx.TensorProto.DOUBLE: np.float64,
    onnx.TensorProto.INT64: np.int64,
    onnx.TensorProto.INT32: np.int32,
    onnx.TensorProto.UINT8: np.uint8,
    onnx.TensorProto.INT8: np.int8,
    onnx.TensorProto.BOOL: np.bool_,
}


@dataclass
class OutputParity:
    name: str
    shape: list[int]
    max_abs_error: float
    max_abs_reference: float
    rel_error: float  # max_abs_error / max|reference|
    top1_agreement: float | None  # fraction of rows with the same argmax, for [N, classes] outputs
    differing_top1: int | None
    passed: bool


@dataclass
class Divergence:
    tensor: str
    reference_node: str
    compiled_node: str
    max_abs_error: float
    rel_error: float
    layer: str | None = None  # the lowered layer whose value diverges, when per-layer data named one


@dataclass
class LayerParity:
    """One lowered layer: its compiled value against the reference tensor it stands for."""

    layer: str
    reference_tensor: str
    compiled_tensor: str
    encoding: str  # "float", or "sign-bits" (packed bits compared with the reference's sign)
    reference_node: str
    compiled_node: str
    max_abs_error: float  # for sign-bits: the number of differing bits
    rel_error: float
    passed: bool


@dataclass
class VerifyReport:
    passed: bool
    outputs: list[OutputParity]
    inputs: dict[str, list[int]]
    rtol: float
    first_divergence: Divergence | None = None
    layers: list[LayerParity] | None = None  # per lowered layer, in the compiled graph's order
    ties: list[TieSite] | None = None  # activation codes that differ at rounding ties (tie_check)
    tie_mismatch: str | None = None  # a code difference that is not a tie, when the outputs differ

    @property
    def tie_codes(self) -> int:
        return sum(site.codes for site in self.ties or [])

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


def _as_proto(model: onnx.ModelProto | str | os.PathLike) -> onnx.ModelProto:
    return model if isinstance(model, onnx.ModelProto) else load_proto(model)


def random_inputs(model: onnx.ModelProto, batch: int = 8, seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded inputs with the model's shapes; symbolic or unknown dims become `batch` (first) or 1."""
    rng = np.random.default_rng(seed)
    initializers = {i.name for i in model.graph.initializer}
    feeds = {}
    for inp in model.graph.input:
        if inp.name in initializers:
            continue
        ttype = inp.type.tensor_type
        dims = [
            d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else (batch if i == 0 else 1)
            for i, d in enumerate(ttype.shape.dim)
        ]
        dtype = _NP_TYPES.get(ttype.elem_type)
        if dtype is None:
            raise ValueError(f"input {inp.name!r}: element type {ttype.elem_type} is not supported")
        if np.issubdtype(dtype, np.floating):
            feeds[inp.name] = rng.standard_normal(dims).astype(dtype)
        else:
            feeds[inp.name] = rng.integers(0, 2, dims).astype(dtype)
    return feeds


def load_inputs(path: str | os.PathLike) -> dict[str, np.ndarray]:
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def compare_output(name: str, ref: np.ndarray, out: np.ndarray, rtol: float) -> OutputParity:
    if ref.shape != out.shape:
        return OutputParity(name, list(ref.shape), float("inf"), 0.0, float("inf"), None, None, False)
    ref64, out64 = ref.astype(np.float64), out.astype(np.float64)
    err = float(np.max(np.abs(ref64 - out64))) if ref.size else 0.0
    scale = float(np.max(np.abs(ref64))) if ref.size else 0.0
    rel = err / scale if scale > 0 else err
    agree = differing = None
    if ref.ndim == 2 and ref.shape[1] > 1:
        same = np.argmax(ref, axis=1) == np.argmax(out, axis=1)
        agree, differing = float(np.mean(same)), int(np.sum(~same))
    passed = err <= rtol * scale + 1e-30 and (differing in (None, 0))
    return OutputParity(name, list(ref.shape), err, scale, rel, agree, differing, passed)


def open_session(model: onnx.ModelProto, threads: int | None, which: str = "the"):
    from qcompile.runtime import InferenceSession

    try:
        return InferenceSession(model.SerializeToString(), threads=threads)
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/... types
        raise QCompileError(f"onnxruntime could not load {which} model: {exc}") from exc


def with_outputs(model: onnx.ModelProto, names: list[str]) -> onnx.ModelProto:
    extended = onnx.ModelProto()
    extended.CopyFrom(model)
    present = {o.name for o in extended.graph.output}
    for name in names:
        if name not in present:
            extended.graph.output.append(onnx.ValueInfoProto(name=name))
    return extended


def _tensors_in_order(model: onnx.ModelProto) -> dict[str, str]:
    """Every node output in graph order -> the name of the node producing it."""
    return {o: (n.name or n.op_type) for n in model.graph.node for o in n.output if o}


def find_divergence(
    ref: onnx.ModelProto, comp: onnx.ModelProto, feeds: dict[str, np.ndarray], rtol: float, threads: int | None,
    ref_feeds: dict[str, np.ndarray] | None = None,
) -> Divergence | None:
    """The first tensor (in the reference's order) that both graphs compute and that differs.

    Compiled ops keep the names of the reference tensors they replace, so every tensor name the
    two graphs share is a point where their values must agree.
    """
    ref_tensors = _tensors_in_order(ref)
    comp_tensors = _tensors_in_order(comp)
    shared = [t for t in ref_tensors if t in comp_tensors]
    if not shared:
        return None
    ref_vals = dict(zip(shared, open_session(with_outputs(ref, shared), threads).run(shared, ref_feeds or feeds),
                        strict=False))
    comp_vals = dict(zip(shared, open_session(with_outputs(comp, shared), threads).run(shared, feeds), strict=False))
    for t in shared:
        r, c = np.asarray(ref_vals[t]), np.asarray(comp_vals[t])
        if not np.issubdtype(r.dtype, np.floating) and r.dtype == c.dtype:
            if not np.array_equal(r, c):
                return Divergence(t, ref_tensors[t], comp_tensors[t], float("nan"), float("nan"))
            continue
        parity = compare_output(t, r, c, rtol)
        if parity.max_abs_error > rtol * parity.max_abs_reference + 1e-30:
            return Divergence(t, ref_tensors[t], comp_tensors[t], parity.max_abs_error, parity.rel_error)
    return None


def _layer_points(comp: onnx.ModelProto) -> list[tuple[onnx.NodeProto, dict]]:
    """Compiled nodes that say which reference tensor they stand for, in graph order."""
    points = []
    for node in comp.graph.node:
        meta = {e.key: e.value for e in node.metadata_props}
        entry = parse_ref_entry(meta.get(REF_KEY, ""))
        if entry is not None and node.output and node.output[0]:
            entry["layer"] = meta.get(LAYER_KEY, node.name)
            points.append((node, entry))
    return points


def _layer_parity(node: onnx.NodeProto, entry: dict, producers: dict[str, str], ref: np.ndarray,
                  got: np.ndarray, rtol: float) -> LayerParity:
    ref_name, comp_name = entry["tensor"], node.output[0]
    base = dict(layer=entry["layer"], reference_tensor=ref_name, compiled_tensor=comp_name,
                encoding=entry.get("encoding", "float"), reference_node=producers.get(ref_name, "?"),
                compiled_node=node.name or node.op_type)
    if base["encoding"] == SIGN_BITS_ENCODING:  # exact: the compiled bits against the reference's signs
        want = negative_bits(ref)
        bits = unpack_activations(got, ref.shape[1], int(entry.get("group", 1))) if ref.ndim == 4 else None
        if bits is None or bits.shape != want.shape:
            return LayerParity(**base, max_abs_error=float("inf"), rel_error=float("inf"), passed=False)
        wrong = int(np.count_nonzero(bits != want))
        return LayerParity(**base, max_abs_error=float(wrong), rel_error=wrong / max(want.size, 1), passed=wrong == 0)
    parity = compare_output(comp_name, ref, got, rtol)
    passed = parity.max_abs_error <= rtol * parity.max_abs_reference + 1e-30
    return LayerParity(**base, max_abs_error=parity.max_abs_error, rel_error=parity.rel_error, passed=passed)


def compare_layers(
    ref: onnx.ModelProto, comp: onnx.ModelProto, feeds: dict[str, np.ndarray], rtol: float, threads: int | None,
    ref_feeds: dict[str, np.ndarray] | None = None,
) -> list[LayerParity]:
    """Every lowered layer of `comp` against the reference tensor it records (qcompile.ref)."""
    ref_tensors = _tensors_in_order(ref)
    points = [(n, e) for n, e in _layer_points(comp) if e["tensor"] in ref_tensors]
    if not points:
        return []
    ref_names = list(dict.fromkeys(e["tensor"] for _, e in points))
    comp_names = [n.output[0] for n, _ in points]
    ref_vals = dict(zip(ref_names, open_session(with_outputs(ref, ref_names), threads).run(ref_names, ref_feeds or feeds),
                        strict=True))
    comp_vals = open_session(with_outputs(comp, comp_names), threads).run(comp_names, feeds)
    return [_layer_parity(n, e, ref_tensors, np.asarray(ref_vals[e["tensor"]]), np.asarray(got), rtol)
            for (n, e), got in zip(points, comp_vals, strict=True)]


def _run(model: onnx.ModelProto, names: list[str], feeds: dict[str, np.ndarray], threads: int | None) -> list:
    return open_session(with_outputs(model, names), threads).run(names, feeds)


def verify(
    reference: onnx.ModelProto | str | os.PathLike,
    compiled: onnx.ModelProto | str | os.PathLike,
    inputs: dict[str, np.ndarray] | str | os.PathLike | None = None,
    *,
    batch: int = 8,
    seed: int = 0,
    rtol: float = RTOL,
    threads: int | None = None,
    per_layer: bool = True,
) -> VerifyReport:
    """Run both models on the same inputs; report per-output error, top-1 agreement, and (with
    `per_layer`, or whenever parity fails) each lowered layer and the first that diverges."""
    ref, comp = _as_proto(reference), _as_proto(compiled)
    if inputs is None:
        feeds = random_inputs(ref, batch=batch, seed=seed)
    elif isinstance(inputs, dict):
        feeds = inputs
    else:
        feeds = load_inputs(inputs)
    ref_sess, comp_sess = open_session(ref, threads, "the reference"), open_session(comp, threads, "the compiled")
    ref_names = [o.name for o in ref_sess.get_outputs()]
    comp_names = [o.name for o in comp_sess.get_outputs()]
    if ref_names != comp_names:
        raise ValueError(f"expected the compiled model to have outputs {ref_names}, got {comp_names}")
    ref_out = ref_sess.run(None, feeds)
    comp_out = comp_sess.run(None, feeds)
    outputs = [compare_output(n, np.asarray(r), np.asarray(c), rtol) for n, r, c in zip(ref_names, ref_out, comp_out, strict=False)]
    passed = all(o.passed for o in outputs)
    ref_feeds = feeds
    ties, tie_mismatch = None, None
    if not passed:  # are the differences codes at rounding ties? then compare from the same codes
        adjusted = adjust_for_ties(ref, comp, feeds, rtol, lambda m, names, f: _run(m, names, f, threads))
        if adjusted is not None and adjusted.mismatch is None:
            ref, ref_feeds, ties = adjusted.reference, adjusted.feeds, adjusted.sites
            ref_out = open_session(ref, threads, "the reference").run(ref_names, ref_feeds)
            outputs = [compare_output(n, np.asarray(r), np.asarray(c), rtol)
                       for n, r, c in zip(ref_names, ref_out, comp_out, strict=True)]
            passed = all(o.passed for o in outputs)
        elif adjusted is not None:
            tie_mismatch = adjusted.mismatch
    report = VerifyReport(passed, outputs, {k: list(v.shape) for k, v in feeds.items()}, rtol, ties=ties,
                          tie_mismatch=tie_mismatch)
    if per_layer or not passed:
        report.layers = compare_layers(ref, comp, feeds, rtol, threads, ref_feeds)
    if not passed:
        bad = next((layer for layer in report.layers or [] if not layer.passed), None)
        if bad is not None:  # the first lowered layer (in compiled order) whose value differs
            report.first_divergence = Divergence(bad.reference_tensor, bad.reference_node, bad.compiled_node,
                                                 bad.max_abs_error, bad.rel_error, bad.layer)
        else:
            report.first_divergence = find_divergence(ref, comp, feeds, rtol, threads, ref_feeds)
    return report
