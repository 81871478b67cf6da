"""compile(): bit-width checks, the pass pipeline, the per-layer table, parity on the spot."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir

from qcompile.analysis import Layer, analyze_model, impl_of
from qcompile.base.domains import QONNX_DOMAIN, QONNX_QUANT_OPS
from qcompile.base.ir_readers import const_array
from qcompile.base.metadata import FOLDED_KEY, LAYER_KEY
from qcompile.errors import BitWidthError, ModelLoadError, QCompileError, UnsupportedError
from qcompile.fileio import check_writable_output
from qcompile.modelio import check_proto, load_proto, save_atomic
from qcompile.passes.fuse_dense_chain import FUSED_LAYERS_KEY, FuseDenseChainPass
from qcompile.passes.pipeline import CompileOptions, compile_pipeline, run_frontend
from qcompile.passes.report import CompileReport
from qcompile.verify import VerifyReport, verify

# every width a lowering exists for (XNOR / SHIFT at 1-3 bits, bit-serial planes up to 8 bits)
SUPPORTED_WBITS = tuple(range(1, 9))
SUPPORTED_ABITS = tuple(range(1, 9))
# Below this top-1 agreement between a post-training-quantized model and its float original, the
# CLI warns (and with --strict refuses): the quantization has changed what the model predicts.
PTQ_TOP1_WARN = 0.9
FLOAT_MODEL_HINT = ("for a float model, pass --wbits N --abits N --calib x.npz (calibration inputs) to "
                    "quantize it post-training")


@dataclass
class LayerRow:
    """One line of the compile table."""

    name: str
    op_before: str
    op_after: str
    wbits: str
    abits: str
    kernel: str
    bytes_before: int
    bytes_after: int
    binary_ops: int | None  # low-bit multiply-adds per sample, for lowered layers with known shapes
    note: str = ""
    impl: str = ""  # the implementation it runs (compile) or would run (inspect): xnor, int8, float...
    why: str = ""  # how it was chosen: "estimated", "measured", "--impl", "default", "only option"
    variant: str = ""  # the kernel variant the op library runs it with (avx512vpopcnt, avx2...)
    options: list[str] | None = None  # every implementation the layer has
    time_ms: float | None = None  # the chosen implementation's time, alone, batch 1 (timed_by says how)
    float_ms: float | None = None  # the layer's float twin's (no quantizers; else compiled to stay float)
    timed_by: str = ""  # "estimated" (the cost model) or "measured" (--tune); "" without times


@dataclass
class CompileResult:
    model: onnx.ModelProto
    rows: list[LayerRow]
    wbits: int | None
    abits: int | None
    output_path: Path | None = None
    input_bytes: int = 0
    output_bytes: int = 0
    parity: VerifyReport | None = None
    ptq: object | None = None  # ptq.PtqReport when the input was a float model
    reference: onnx.ModelProto | None = None  # what parity was checked against (the PTQ model for floats)
    report: CompileReport | None = None  # what each rule and pass declined to do, and why
    notes: list[str] = field(default_factory=list)  # whole-model remarks the CLI prints after the table


def _bits_text(bits: int | None) -> str:
    return "fp32" if bits is None else str(bits)


def _mode(widths: list[int]) -> int | None:
    """The most common width (the lowest among equally common ones: the low-bit body), or None."""
    if not widths:
        return None
    counts = Counter(widths)
    return min(counts, key=lambda w: (-counts[w], w))


def model_bit_widths(layers: list[Layer]) -> tuple[int | None, int | None]:
    """(weight bits, input bits) most common among `layers`: a ResNet's 8-bit classifier next to
    its 4-bit body does not make the model "mixed"; None where no layer holds a width."""
    return (_mode([layer.weight.bits for layer in layers if layer.weight.bits is not None]),
            _mode([layer.input.bits for layer in layers if layer.input.bits is not None]))


# ops through which a first layer's input still is the graph input (preprocessing by constants)
_INPUT_PREPROCESSING = ("Mul", "Div", "Add", "Sub", "Reshape", "Flatten", "Identity", "Transpose")


def reads_graph_input(layer: Layer) -> bool:
    """A first layer: its input (or the quantizer in front of it) reads a graph input, directly or
    through a normalisation by constants (Brevitas's CNV/LFC compute 2x-1 before the first Quant)."""
    quant = layer.input.quant_node
    source = quant.inputs[0] if quant is not None else layer.node.inputs[0]
    while source is not None and source.producer() is not None:
        node = source.producer()
        if node.domain != "" or node.op_type not in _INPUT_PREPROCESSING:
            return False
        varying = [v for v in node.inputs if v is not None and const_array(v) is None]
        if len(varying) != 1:
            return False
        source = varying[0]
    return source is not None and source.const_value is None


def nominal_layers(layers: list[Layer]) -> list[Layer]:
    """The layers whose widths are the model's nominal ones: those that are lowered, less a first
    layer reading the input (often 8 bits in Brevitas models: not a contradiction). Falls back to
    every lowered, then every quantized layer, when that leaves none."""
    quantized = [layer for layer in layers if layer.quantized]
    lowered = [layer for layer in quantized if layer.target is not None]
    body = [layer for layer in lowered if not reads_graph_input(layer)]
    return body or lowered or quantized


def check_bit_widths(layers: list[Layer], wbits: int | None, abits: int | None) -> tuple[int | None, int | None]:
    """Detect the model's weight/activation bit widths; refuse a request the model contradicts.

    The nominal widths are the most common ones among the nominal layers (nominal_layers); a
    request must be those. Other layers (an 8-bit classifier) are lowered, or kept float, at the
    widths they hold, as the table shows."""
    quantized = nominal_layers(layers)
    if not quantized:
        raise QCompileError(
            "the model has no quantized Conv/Gemm/MatMul layer (no BipolarQuant or Quant on their weights "
            f"or inputs); export it with quantizers (qcompile train, or Brevitas export_qonnx), or {FLOAT_MODEL_HINT}"
        )
    model_wbits, model_abits = model_bit_widths(quantized)
    for flag, requested, supported, attr, nominal in (
        ("--wbits", wbits, SUPPORTED_WBITS, "weight", model_wbits),
        ("--abits", abits, SUPPORTED_ABITS, "input", model_abits),
    ):
        if requested is None:
            continue
        for layer in quantized:
            info = getattr(layer, attr)
            if info.bits is not None and info.bits == nominal and info.bits != requested:
                what = info.describe() if attr == "weight" else f"{info.bits}-bit ({info.source})"
                raise BitWidthError(
                    f"{flag} {requested}, but layer {layer.name!r} ({layer.op_type}) has {attr}s that are "
                    f"{what}; " + (f"pass {flag} {info.bits} or " if info.bits in supported else "")
                    + f"leave {flag} out to use what the model holds"
                )
        if not any(getattr(layer, attr).bits == requested for layer in quantized):
            found = sorted({getattr(layer, attr).bits for layer in quantized if getattr(layer, attr).bits})
            raise BitWidthError(
                f"{flag} {requested}, but no layer of the model has {requested}-bit {attr}s "
                f"(found: {', '.join(map(str, found)) or 'none, all fp32'})"
            )
        if requested not in supported:
            raise UnsupportedError(
                f"{flag} {requested}: {requested}-bit {attr}s are not supported by this version "
                f"(supported: {', '.join(map(str, supported))})"
            )
    return wbits or model_wbits, abits or model_abits


def _shape_model(proto: onnx.ModelProto) -> dict[str, list[int | None]]:
    """Tensor shapes of the reference, with QONNX quantizers seen as Identity (they keep shape)."""
    copy = onnx.ModelProto()
    copy.CopyFrom(proto)
    for node in copy.graph.node:
        if node.domain == QONNX_DOMAIN and node.op_type in ("BipolarQuant", *QONNX_QUANT_OPS):
            del node.input[1:]
            node.op_type, node.domain = "Identity", ""
            del node.attribute[:]
    try:
        inferred = onnx.shape_inference.infer_shapes(copy)
    except Exception:  # shape inference is only used for the ops column; never fail a compile on it
        return {}
    shapes = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.output):
        dims = [d.dim_value if d.HasField("dim_value") else None for d in vi.type.tensor_type.shape.dim]
        shapes[vi.name] = dims
    return shapes


def _packed_bytes(node: ir.Node) -> int:
    """Bytes of a compiled layer's constants: packed weights and its per-channel scale/bias or thresholds."""
    arrays = (const_array(v) for v in node.inputs[1:4])
    return sum(int(a.nbytes) for a in arrays if a is not None)


def _binary_ops(layer: Layer, out_shape: list[int | None] | None) -> int | None:
    values = layer.weight.values
    if values is None or not out_shape or any(d is None for d in out_shape[1:]):
        return None
    per_output = int(np.prod(values.shape[1:]))  # Cg*KH*KW for conv, K for dense
    return per_output * int(np.prod(out_shape[1:]))


def layer_rows(
    reference: onnx.ModelProto, layers: list[Layer], compiled: ir.Model | None, report: CompileReport | None = None,
    choices: dict | None = None,
) -> list[LayerRow]:
    """The table: one row per conv/dense layer, before -> after; why a layer stays float comes from
    the compile report (what the lowering rules said), else from the layer's analysis."""
    lowered = {}
    if compiled is not None:
        for n in compiled.graph:  # a layer's first tagged node is its op (an int8 layer's epilogue follows it)
            if LAYER_KEY in n.metadata_props:
                lowered.setdefault(n.metadata_props[LAYER_KEY], n)
    shapes = _shape_model(reference)
    rows = []
    for layer in layers:
        row = _layer_row(layer, lowered, shapes, compiled, report)
        op = None  # the op the layer became, if compiled and lowered
        if compiled is None:  # inspect: what compile would take
            choice = (choices or {}).get(layer.name)
            row.impl = choice.impl if choice is not None else layer.impl
        else:  # what the layer became (a dense layer's quantizer is hoisted to it only in the pipeline)
            op = row.op_after.split(" ")[0] if row.op_after != layer.op_type else None
            row.impl = impl_of(op) if op is not None else "float"
        _explain_choice(row, layer, (choices or {}).get(layer.name), op)
        rows.append(row)
    return rows


def _explain_choice(row: LayerRow, layer: Layer, choice, op: str | None) -> None:
    """The row's why, times and kernel variant for the implementation it shows (the variant of
    `op`, the op the layer became, when given: a depthwise int8 layer's is qcompile's own)."""
    from qcompile.analysis import target_of
    from qcompile.costmodel import kernel_variant

    row.options = list(layer.options)
    if op is not None:
        row.variant = kernel_variant(op)
    else:
        row.variant = kernel_variant(target_of(row.impl, layer.op_type)) if row.impl in layer.options else ""
    if choice is None:
        row.why = "only option" if len(layer.options) < 2 else "default"
        return
    row.why = choice.why if choice.impl == row.impl else f"{choice.impl} chosen ({choice.why}), not applied"
    if row.impl in choice.seconds:
        row.time_ms = choice.seconds[row.impl] * 1e3
        twin = choice.seconds.get("twin", choice.seconds.get("float"))
        row.float_ms = twin * 1e3 if twin is not None else None
        row.timed_by = choice.timed_by


def _layer_row(layer: Layer, lowered: dict, shapes: dict, compiled: ir.Model | None,
               report: CompileReport | None) -> LayerRow:
    node = lowered.get(layer.name)
    kernel = "x".join(map(str, layer.kernel)) if layer.kernel else "dense"
    if node is not None:
        folded = node.metadata_props.get(FOLDED_KEY, "")
        after = node.op_type + (f" (+{folded.replace(',', ', +')})" if folded else "")
        out_shape = shapes.get(layer.node.outputs[0].name)
        return LayerRow(layer.name, layer.op_type, after, _bits_text(layer.weight.bits),
                        _bits_text(layer.input.bits), kernel, layer.float_weight_bytes, _packed_bytes(node),
                        _binary_ops(layer, out_shape))
    reason = (report.layer_reason(layer.name) if report is not None else None) or layer.reason
    note = reason if compiled is not None or not layer.target else f"-> {layer.target}"
    return LayerRow(layer.name, layer.op_type, layer.op_type, _bits_text(layer.weight.bits),
                    _bits_text(layer.input.bits), kernel, layer.float_weight_bytes,
                    layer.float_weight_bytes, None, "stays float: " + note if compiled is not None else note)


def _quantizer_count(model: onnx.ModelProto) -> int:
    """QONNX / qcompile quantizer nodes in the graph (weight and activation quantizers alike)."""
    return sum(1 for n in model.graph.node if (n.domain == QONNX_DOMAIN and n.op_type in ("BipolarQuant", *QONNX_QUANT_OPS))
               or (n.domain == "qcompile" and n.op_type == "Pow2Quant"))


def _root_cause(exc: BaseException) -> BaseException:
    while exc.__cause__ is not None:
        exc = exc.__cause__
    return exc


def front_end(proto: onnx.ModelProto) -> tuple[onnx.ModelProto, list[Layer]]:
    """The normalized model and its layers: what inspect shows and compile starts from."""
    try:
        model = ir.serde.deserialize_model(proto)
    except ir.serde.SerdeError as exc:  # e.g. an element type number that ONNX does not define
        raise ModelLoadError(f"the model cannot be read into onnx-ir: {_root_cause(exc)}") from None
    try:
        model = run_frontend(model)
        normalized = ir.serde.serialize_model(model)
    except ir.passes.PassError as exc:  # a pass refused the input (an attribute of the wrong type...)
        cause = _root_cause(exc)
        if isinstance(cause, QCompileError):
            raise cause from None
        raise
    except ir.serde.SerdeError as exc:  # protobuf lets text that is not UTF-8 through; onnx-ir does not
        cause = _root_cause(exc)
        if not isinstance(cause, UnicodeError):
            raise
        raise ModelLoadError(f"the model holds a name or text that is not UTF-8 ({cause})") from None
    normalized_ir = ir.serde.deserialize_model(normalized)
    check_trunc_nodes(normalized_ir)
    return normalized, analyze_model(normalized_ir)


def inspect(model: str | os.PathLike | onnx.ModelProto, costs=None) -> tuple[list[LayerRow], int | None, int | None]:
    """The table without compiling: what each layer holds and what compile would choose for it
    (by `costs` as in compile(); by default the cached measurements, else the estimates)."""
    proto, layers = front_end(check_proto(model, "the model") if isinstance(model, onnx.ModelProto) else load_proto(model))
    from qcompile.analysis import choose

    choices = _choose(proto, layers, (), False, costs)
    for layer in layers:  # the table's "->" column says what the choice lowers each layer to
        if layer.name in choices:
            choose(layer, choices[layer.name].impl, f"float chosen ({choices[layer.name].why})")
    return (layer_rows(proto, layers, None, choices=choices), *model_bit_widths(layers))


def _post_training_quantize(proto: onnx.ModelProto, wbits: int, abits: int | None, calib):
    from qcompile.ptq import measure_cost, quantize_float_model
    from qcompile.verify import load_inputs, random_inputs

    feeds = load_inputs(calib) if isinstance(calib, (str, os.PathLike)) else calib
    quantized, report = quantize_float_model(proto, wbits, abits, feeds)
    measure_cost(proto, quantized, feeds if feeds is not None else random_inputs(proto), report)
    return quantized, report


def check_trunc_nodes(model: ir.Model) -> None:
    """Refuse, naming the node and the attribute, a QONNX Trunc the op library cannot run exactly
    (its kernel would only fail at run time)."""
    from qcompile.base.ir_readers import int_attr, is_qonnx, node_label, str_attr
    from qcompile.ops.trunc import TRUNC_ROUNDING, log2_near_half_integer

    for node in model.graph:
        if not is_qonnx(node, "Trunc"):
            continue
        where = f"Trunc node {node_label(node)!r}"
        if len(node.inputs) not in (5, 6):
            raise UnsupportedError(f"{where}: expected 6 inputs (version 2) or 5 (version 1), got {len(node.inputs)}")
        mode = str_attr(node, "rounding_mode", "FLOOR")
        if mode.upper() not in TRUNC_ROUNDING:
            raise UnsupportedError(f"{where}: attribute rounding_mode {mode!r} is not one of "
                                   f"{', '.join(sorted(TRUNC_ROUNDING))}")
        for name in ("signed", "narrow"):
            if int_attr(node, name, 0) not in (0, 1):
                raise UnsupportedError(f"{where}: attribute {name} must be 0 or 1, got {int_attr(node, name, 0)}")
        if len(node.inputs) == 6:  # version 2: the trunc scale 2^round(log2(output_scale / scale))
            scale, out_scale = const_array(node.inputs[1]), const_array(node.inputs[4])
            if scale is not None and out_scale is not None:
                ratio = (np.asarray(out_scale, np.float32) / np.asarray(scale, np.float32)).astype(np.float32)
                if np.any(log2_near_half_integer(ratio[np.isfinite(ratio) & (ratio > 0)])):
                    raise UnsupportedError(
                        f"{where}: input output_scale / scale is within float rounding of 2^(k+1/2), where "
                        "qonnx's float32 log2 may round the trunc scale either way; export power-of-two ratios")


def check_loads(model: onnx.ModelProto) -> None:
    """Create an onnxruntime session on `model` with the op library: a model that cannot load is
    never written (--no-verify included). Raises UnsupportedError with onnxruntime's reason."""
    import onnxruntime as ort

    from qcompile.runtime import session_options

    try:
        ort.InferenceSession(model.SerializeToString(), session_options(threads=1),
                             providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own exception types; any of them means "cannot load"
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UnsupportedError(f"the compiled model does not load in onnxruntime with the qcompile library "
                               f"({first_line}); it was not written") from None


def _choose(proto: onnx.ModelProto, layers: list[Layer], impl, tune: bool, costs) -> dict:
    from qcompile import costmodel

    overall, per_layer = costmodel.parse_impl_overrides(tuple(impl))
    shapes = _shape_model(proto)
    for inp in proto.graph.input:
        shapes[inp.name] = [d.dim_value if d.HasField("dim_value") else None for d in inp.type.tensor_type.shape.dim]
    models = {}
    for layer in layers:
        if len(layer.options) > 1:
            m = costmodel.layer_model(proto, layer, shapes)
            if m is not None:
                models[layer.name] = m
    if costs is None:  # measured figures (timed now with --tune, else cached ones), then estimates
        costs = [costmodel.MeasuredCosts(measure=tune)]
        if models and not tune:
            costs.append(costmodel.estimated_costs())
    choices = costmodel.choose_impls(layers, models, costs, per_layer, overall)
    for source in costs if isinstance(costs, (list, tuple)) else [costs]:
        if hasattr(source, "save"):
            source.save()
    return choices


def _float_choices_to_undo(choices: dict) -> dict:
    """The layers a cost source left float, each with its cheapest exact option instead: what to
    try when the compiled model fails parity (a float layer is computed by onnxruntime in another
    order than the reference, e.g. its now-constant weights fused with the BatchNorm after, which
    a following sign quantizer can turn into flipped bits)."""
    from qcompile.costmodel import Choice

    undo = {}
    for name, c in choices.items():
        exact = [impl for impl in c.seconds if impl not in ("float", "twin")]
        if c.impl == "float" and c.why in ("estimated", "measured") and exact:
            best = min(exact, key=lambda impl: c.seconds[impl])
            undo[name] = Choice(best, f"{c.why}; float failed parity", c.seconds, c.timed_by)
    return undo


def _lower(proto, layers, choices, original, ptq_report, wbits, abits, check_parity, parity_inputs) -> CompileResult:
    """The pipeline with these choices, the table, the load check and parity (not written)."""
    options = CompileOptions(choices={name: (c.impl, f"{c.impl} chosen ({c.why})") for name, c in choices.items()})
    try:
        run = compile_pipeline(ir.serde.deserialize_model(proto), options)
    except ir.passes.PassError as exc:  # name the pass and its cause in one line
        root = _root_cause(exc)
        if isinstance(root, QCompileError):  # a pass refused the input: that is the error
            raise root from None
        cause = exc.__cause__.__cause__ if exc.__cause__ is not None and exc.__cause__.__cause__ else exc.__cause__
        raise QCompileError(f"{exc.__cause__ or exc}: {type(cause).__name__}: {cause} (please report this)") from exc
    rows = layer_rows(proto, layers, run.model, run.report, choices)
    # after the table, which shows each layer as the op it became: dense bit-serial chains run as
    # one BitSerialMlp node (passes/fuse_dense_chain.py)
    if FuseDenseChainPass()(run.model).modified:
        fused = {name for n in run.model.graph for name in n.metadata_props.get(FUSED_LAYERS_KEY, "").split(",")}
        for row in rows:
            if row.name in fused:
                row.op_after += " in BitSerialMlp"
    compiled = ir.serde.serialize_model(run.model)
    from qcompile import __version__

    compiled.producer_name, compiled.producer_version = "qcompile", __version__
    result = CompileResult(compiled, rows, wbits, abits, report=run.report)
    result.ptq, result.reference = ptq_report, proto if ptq_report is not None else original
    result.input_bytes = original.ByteSize()
    result.output_bytes = compiled.ByteSize()
    # every layer left float because float is faster (the cost model or --tune): a valid result,
    # which the table says layer by layer; an error only where nothing could be lowered at all
    float_by_cost = bool(choices) and all(c.impl == "float" and c.why in ("estimated", "measured")
                                          for c in choices.values())
    # a weight-only model (BWN / TWN: quantized weights, float activations) has no low-bit op to
    # lower to, but folding its weight quantizers into constants gives the same float32 weights
    # without the Quant nodes the reference runs on every inference: a valid, faster model
    # (not after post-training quantization of weights only: that would hand back the float model)
    weight_only = ptq_report is None and _quantizer_count(compiled) == 0 < _quantizer_count(proto)
    lowered_any = any(LAYER_KEY in {e.key for e in n.metadata_props} for n in compiled.graph.node)
    if weight_only and not lowered_any:
        result.notes.append("weight-only model: its weight quantizers are folded into float32 constants (the "
                            "same values); with float activations no layer has a low-bit op, so every layer "
                            "runs float, without the Quant nodes the original runs on every inference")
    if not float_by_cost and not weight_only and not lowered_any:
        notes = [f"{r.name}: {r.note}" for r in result.rows if r.note]
        reasons = "; ".join(notes[:3]) + (f"; and {len(notes) - 3} more (qcompile inspect shows all)" if len(notes) > 3 else "")
        hint = ""
        if ptq_report is not None and abits is None:
            hint = "; the activations stayed float: pass --abits N --calib x.npz to quantize them too"
        elif any(c.impl == "float" and c.why in ("estimated", "measured") for c in choices.values()):
            hint = "; a layer left float is faster so (--impl LAYER=IMPL lowers it anyway)"
        raise UnsupportedError(f"no layer could be lowered to a qcompile op ({reasons}){hint}")
    check_loads(compiled)
    if check_parity:
        # against what the user gave (a QCDQ export included); after PTQ, against the quantized model
        result.parity = verify(proto if ptq_report is not None else original, compiled, parity_inputs,
                               per_layer=False)
    return result


def default_output_path(path: str | os.PathLike) -> Path:
    p = Path(path)
    return p.with_name(p.stem + ".q.onnx")


def compile(
    model: str | os.PathLike | onnx.ModelProto,
    output: str | os.PathLike | None = None,
    *,
    wbits: int | None = None,
    abits: int | None = None,
    check_parity: bool = True,
    parity_inputs: dict[str, np.ndarray] | str | None = None,
    calib: dict[str, np.ndarray] | str | None = None,
    min_ptq_top1: float | None = None,
    impl: tuple[str, ...] | list[str] = (),
    tune: bool = False,
    costs=None,
) -> CompileResult:
    """Compile a QONNX model into qcompile ops; write it atomically when `output` (or a path) is given.

    A float model (no quantizers) with `wbits` given is first quantized post-training (qcompile.ptq),
    with activations too when `abits` and calibration inputs (`calib`) are given; with
    `min_ptq_top1`, a quantization whose top-1 agreement with the float model is lower is refused.

    Each layer's implementation: `impl` ("IMPL" or "LAYER=IMPL" overrides), else the cheapest by
    `costs` (a costmodel.CostSource, or a list tried in order; by default the figures measured on
    this machine, timed where missing when `tune`, else the cost model's estimates), else the
    analysis' default.
    """
    if output is None and not isinstance(model, onnx.ModelProto):
        output = default_output_path(model)
    if output is not None:  # before any work: -o equal to the input, or in a folder that cannot exist
        check_writable_output(output, *([] if isinstance(model, onnx.ModelProto) else [model]))
    original = check_proto(model, "the model") if isinstance(model, onnx.ModelProto) else load_proto(model)
    proto, layers = front_end(original)
    ptq_report = None
    if not any(layer.quantized for layer in layers) and wbits is not None:
        proto, ptq_report = _post_training_quantize(proto, wbits, abits, calib)
        layers = analyze_model(ir.serde.deserialize_model(proto))
        agreement = ptq_report.top1_agreement
        if min_ptq_top1 is not None and agreement is not None and agreement < min_ptq_top1:
            raise QCompileError(f"post-training quantization agrees with the float model on top-1 for only "
                                f"{agreement:.1%} of the calibration inputs (below {min_ptq_top1:.0%}); nothing written")
    wbits, abits = check_bit_widths(layers, wbits, abits)
    choices = _choose(proto, layers, impl, tune, costs)
    result = _lower(proto, layers, choices, original, ptq_report, wbits, abits, check_parity, parity_inputs)
    undo = _float_choices_to_undo(choices) if result.parity is not None and not result.parity.passed else {}
    if undo:  # a layer left float rounds differently from the reference: lower it after all
        choices.update(undo)
        result = _lower(proto, layers, choices, original, ptq_report, wbits, abits, check_parity, parity_inputs)
    if output is not None and (result.parity is None or result.parity.passed):
        # a model that fails parity is not written: nothing a user could mistake for a good one
        result.output_path = save_atomic(result.model, output)
    return result
