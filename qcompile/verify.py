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
from qcompile.errors import InputsError, QCompileError, RuntimeRunError
from qcompile.fileio import check_readable_file
from qcompile.modelio import check_proto, load_proto
from qcompile.ops.packing import negative_bits, unpack_activations
from qcompile.tie_check import TieSite, adjust_for_ties

RTOL = 1e-4

# Random inputs bigger than this are refused (a dim of 2^31 would ask numpy for terabytes).
MAX_RANDOM_INPUT_BYTES = 1 << 30
# An .npz of inputs is read whole; bounded like a model.
MAX_INPUTS_FILE_BYTES = 1 << 31

_NP_TYPES = {
    onnx.TensorProto.FLOAT: np.float32,
    onnx.TensorProto.FLOAT16: np.float16,
    onnx.TensorProto.DOUBLE: np.float64,
    onnx.TensorProto.INT64: np.int64,
    onnx.TensorProto.INT32: np.int32,
    onnx.TensorProto.INT16: np.int16,
    onnx.TensorProto.UINT16: np.uint16,
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
    input_source: str = "given"  # "random (seed S, ...)", "file PATH" or "given"
    input_dtypes: dict[str, str] | None = None

    def to_dict(self) -> dict:
        return {"schema": "qcompile.verify/1", **asdict(self)}

    @property
    def tie_codes(self) -> int:
        return sum(site.codes for site in self.ties or [])

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=True)


def _as_proto(model: onnx.ModelProto | str | os.PathLike) -> onnx.ModelProto:
    return check_proto(model, "the model given") if isinstance(model, onnx.ModelProto) else load_proto(model)


def graph_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    """The inputs a caller feeds (initializers listed as inputs are not among them)."""
    initializers = {i.name for i in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in initializers]


def _dtype_of(inp: onnx.ValueInfoProto):
    if not inp.type.HasField("tensor_type"):
        raise InputsError(f"input {inp.name!r} is not a tensor; pass its values with --inputs x.npz")
    elem = inp.type.tensor_type.elem_type
    dtype = _NP_TYPES.get(elem)
    if dtype is None:
        name = onnx.TensorProto.DataType.Name(elem) if elem in onnx.TensorProto.DataType.values() else str(elem)
        raise InputsError(f"input {inp.name!r} has element type {name}, for which no random inputs are made; "
                          "pass its values with --inputs x.npz")
    return dtype


def fixed_batch(model: onnx.ModelProto) -> int | None:
    """The first dim that every graph input fixes, or None when one of them leaves it symbolic."""
    batches = set()
    for inp in graph_inputs(model):
        dims = inp.type.tensor_type.shape.dim
        if not dims or not (dims[0].HasField("dim_value") and dims[0].dim_value > 0):
            return None
        batches.add(dims[0].dim_value)
    return next(iter(batches)) if len(batches) == 1 else None


def random_inputs(model: onnx.ModelProto, batch: int = 8, seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded inputs with the model's shapes; symbolic or unknown dims become `batch` (first) or 1."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for inp in graph_inputs(model):
        dtype = _dtype_of(inp)
        ttype = inp.type.tensor_type
        dims = [
            d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else (batch if i == 0 else 1)
            for i, d in enumerate(ttype.shape.dim)
        ]
        nbytes = int(np.prod(dims, dtype=object)) * np.dtype(dtype).itemsize
        if nbytes > MAX_RANDOM_INPUT_BYTES:
            raise InputsError(f"input {inp.name!r} has shape {dims} ({nbytes} bytes): too large for random inputs "
                              f"(limit {MAX_RANDOM_INPUT_BYTES} bytes); pass smaller ones with --inputs x.npz")
        if np.issubdtype(dtype, np.floating):
            feeds[inp.name] = rng.standard_normal(dims).astype(dtype)
        else:
            feeds[inp.name] = rng.integers(0, 2, dims).astype(dtype)
    return feeds


def load_inputs(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Arrays of an .npz file by name; never unpickles (a pickle in a file is code, not data)."""
    p = check_readable_file(path, "inputs (.npz)", MAX_INPUTS_FILE_BYTES)
    with open(p, "rb") as f:
        head = f.read(6)
    if head.startswith(b"\x93NUMPY"):
        raise InputsError(f"{p} holds one array (.npy); expected an .npz with one array per model input "
                          "(numpy.savez(path, name=array, ...))")
    if head[:1] == b"\x80":
        raise InputsError(f"{p} is a Python pickle, which is not read (it could run code); expected an .npz of arrays")
    if not head.startswith(b"PK"):
        raise InputsError(f"{p} is not an .npz of arrays (no zip header); write one with numpy.savez(path, name=array)")
    try:
        with np.load(p, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise InputsError(f"{p} holds arrays of Python objects, which are not read (unpickling could run "
                              "code); expected numeric arrays") from None
        raise InputsError(f"{p} is not an .npz of arrays ({exc})") from None
    except Exception as exc:  # zipfile.BadZipFile, OSError, EOFError...
        raise InputsError(f"{p} is not an .npz of arrays ({type(exc).__name__}: {exc})") from None


def check_feeds(model: onnx.ModelProto, feeds: dict[str, np.ndarray], source: str) -> dict[str, np.ndarray]:
    """The feeds, if they give every graph input by name with its element type and fixed dims."""
    inputs = graph_inputs(model)
    wanted = {i.name for i in inputs}
    missing, extra = sorted(wanted - set(feeds)), sorted(set(feeds) - wanted)
    if missing or extra:
        raise InputsError(f"{source}: expected arrays named {sorted(wanted)}, got {sorted(feeds)}"
                          + (f" (missing {missing})" if missing else "") + (f" (unknown {extra})" if extra else ""))
    checked = {}
    for inp in inputs:
        value = np.asarray(feeds[inp.name])
        dtype = _dtype_of(inp)
        if value.dtype != dtype:
            raise InputsError(f"{source}: input {inp.name!r} must be {np.dtype(dtype).name}, got {value.dtype.name}")
        dims = inp.type.tensor_type.shape.dim
        if inp.type.tensor_type.HasField("shape"):
            want = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in dims]
            fits = value.ndim == len(want) and all(w is None or w == g for w, g in zip(want, value.shape, strict=True))
            if not fits:
                shown = ["?" if w is None else w for w in want]
                raise InputsError(f"{source}: input {inp.name!r} must have shape {shown}, got {list(value.shape)}")
        checked[inp.name] = value
    return checked


def run_session(sess, feeds: dict[str, np.ndarray], which: str, names: list[str] | None = None) -> list:
    """sess.run, with onnxruntime's failure turned into one line naming the model and the inputs."""
    try:
        return sess.run(names, feeds)
    except Exception as exc:  # onnxruntime raises Fail/InvalidArgument/RuntimeException...
        shapes = {k: list(np.shape(v)) for k, v in feeds.items()}
        msg = " ".join(str(exc).split())
        raise RuntimeRunError(f"onnxruntime failed running {which} model on inputs {shapes}: {msg}") from None


def abs_errors(ref: np.ndarray, out: np.ndarray) -> tuple[float, float]:
    """(max |out - ref|, max |ref| over finite values). NaN-aware: a NaN in both, or the same
    infinity in both, is agreement (error 0); a NaN or infinity in only one is an infinite error."""
    ref64, out64 = ref.astype(np.float64), out.astype(np.float64)
    if not ref.size:
        return 0.0, 0.0
    same = (ref64 == out64) | (np.isnan(ref64) & np.isnan(out64))
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.where(same, 0.0, np.abs(ref64 - out64))
    diff = np.where(np.isnan(diff), np.inf, diff)
    finite = np.abs(ref64[np.isfinite(ref64)])
    return float(np.max(diff)), float(np.max(finite)) if finite.size else 0.0


def compare_output(name: str, ref: np.ndarray, out: np.ndarray, rtol: float) -> OutputParity:
    if ref.shape != out.shape:
        return OutputParity(name, list(ref.shape), float("inf"), 0.0, float("inf"), None, None, False)
    err, scale = abs_errors(ref, out)
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
        msg = " ".join(str(exc).split())
        raise RuntimeRunError(f"onnxruntime could not load {which} model: {msg}") from None


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
    ref_vals = dict(zip(shared, run_session(open_session(with_outputs(ref, shared), threads), ref_feeds or feeds,
                                            "the reference", shared), strict=False))
    comp_vals = dict(zip(shared, run_session(open_session(with_outputs(comp, shared), threads), feeds, "the compiled", shared), strict=False))
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
    ref_vals = dict(zip(ref_names, run_session(open_session(with_outputs(ref, ref_names), threads), ref_feeds or feeds,
                                               "the reference", ref_names), strict=True))
    comp_vals = run_session(open_session(with_outputs(comp, comp_names), threads), feeds, "the compiled", comp_names)
    return [_layer_parity(n, e, ref_tensors, np.asarray(ref_vals[e["tensor"]]), np.asarray(got), rtol)
            for (n, e), got in zip(points, comp_vals, strict=True)]


def _run(model: onnx.ModelProto, names: list[str], feeds: dict[str, np.ndarray], threads: int | None) -> list:
    return run_session(open_session(with_outputs(model, names), threads), feeds, "the reference", names)


def resolve_inputs(
    model: onnx.ModelProto,
    inputs: dict[str, np.ndarray] | str | os.PathLike | None,
    batch: int | None = None,
    seed: int = 0,
    strict_batch: bool = False,
) -> tuple[dict[str, np.ndarray], str]:
    """(feeds, where they came from). Random inputs use the model's own batch when it fixes one;
    `batch` is only for a symbolic batch dim (with `strict_batch`, another batch than a fixed one
    is refused; otherwise the source says it was not used)."""
    if inputs is None:
        fixed = fixed_batch(model)
        if fixed is not None and batch is not None and batch != fixed and strict_batch:
            raise InputsError(f"--batch {batch}, but the model's inputs fix the batch to {fixed}; leave --batch out "
                              "or pass inputs of that batch with --inputs")
        use = fixed if fixed is not None else (batch or 8)
        how = "the model's fixed batch" if fixed is not None else "batch dim symbolic"
        if fixed is not None and batch is not None and batch != fixed:
            how += f"; batch={batch} not used"
        return random_inputs(model, batch=use, seed=seed), f"random standard normal (seed {seed}, batch {use}: {how})"
    if isinstance(inputs, dict):
        return check_feeds(model, inputs, "the inputs given"), "given"
    return check_feeds(model, load_inputs(inputs), str(inputs)), f"file {inputs}"


def verify(
    reference: onnx.ModelProto | str | os.PathLike,
    compiled: onnx.ModelProto | str | os.PathLike,
    inputs: dict[str, np.ndarray] | str | os.PathLike | None = None,
    *,
    batch: int | None = None,
    seed: int = 0,
    rtol: float = RTOL,
    threads: int | None = None,
    per_layer: bool = True,
    strict_batch: bool = False,
) -> VerifyReport:
    """Run both models on the same inputs; report per-output error, top-1 agreement, and (with
    `per_layer`, or whenever parity fails) each lowered layer and the first that diverges.

    Random inputs (no `inputs`) take the model's fixed batch, or `batch` (default 8) if it is symbolic."""
    ref, comp = _as_proto(reference), _as_proto(compiled)
    feeds, source = resolve_inputs(ref, inputs, batch, seed, strict_batch)
    ref_sess, comp_sess = open_session(ref, threads, "the reference"), open_session(comp, threads, "the compiled")
    ref_names = [o.name for o in ref_sess.get_outputs()]
    comp_names = [o.name for o in comp_sess.get_outputs()]
    if ref_names != comp_names:
        raise QCompileError(f"expected the compiled model to have outputs {ref_names}, got {comp_names}")
    ref_out = run_session(ref_sess, feeds, "the reference")
    comp_out = run_session(comp_sess, feeds, "the compiled")
    outputs = [compare_output(n, np.asarray(r), np.asarray(c), rtol) for n, r, c in zip(ref_names, ref_out, comp_out, strict=False)]
    passed = all(o.passed for o in outputs)
    ref_feeds = feeds
    ties, tie_mismatch = None, None
    if not passed:  # are the differences codes at rounding ties? then compare from the same codes
        adjusted = adjust_for_ties(ref, comp, feeds, rtol, lambda m, names, f: _run(m, names, f, threads))
        if adjusted is not None and adjusted.mismatch is None:
            ref, ref_feeds, ties = adjusted.reference, adjusted.feeds, adjusted.sites
            ref_out = run_session(open_session(ref, threads, "the reference"), ref_feeds, "the reference", ref_names)
            outputs = [compare_output(n, np.asarray(r), np.asarray(c), rtol)
                       for n, r, c in zip(ref_names, ref_out, comp_out, strict=True)]
            passed = all(o.passed for o in outputs)
        elif adjusted is not None:
            tie_mismatch = adjusted.mismatch
    report = VerifyReport(passed, outputs, {k: list(v.shape) for k, v in feeds.items()}, rtol, input_source=source,
                          input_dtypes={k: str(np.asarray(v).dtype) for k, v in feeds.items()}, ties=ties,
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
