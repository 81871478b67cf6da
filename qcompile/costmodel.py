"""The per-layer choice among a layer's exact implementations: user overrides, else the cheapest by a
cost source, else the analysis' default.

Two cost sources: `MeasuredCosts` (--tune: every option of every layer timed alone, cached) and,
by default where nothing is measured, `EstimatedCosts`, an analytic model of each implementation
from the layer's shape and a few constants per CPU calibrated once by microbenchmarks (cached;
QCOMPILE_COSTMODEL=static: a fixed table).

A cost source answers `cost(layer_model, layer, impl, threads)` in seconds (None: unknown), impl
one of the layer's options or "twin". The measured one (`MeasuredCosts`) times the layer alone, on
its real input shape, compiled each way ("float": left float, its activation quantizer still
running) and as its float twin ("twin": quantizers -> Identity, stock onnxruntime, what the table
compares with), and caches the figure per CPU
model, qcompile and onnxruntime version in a JSON file. Tests inject their own source: the choice
logic is tested on given costs, never on timings.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import onnx

from qcompile.analysis import IMPLS, SHAPE_OPS, Layer
from qcompile.base.domains import QONNX_DOMAIN, QONNX_QUANT_OPS
from qcompile.bench import cpu_model
from qcompile.errors import QCompileError


class CostSource(Protocol):
    def cost(self, layer_model: onnx.ModelProto, layer: Layer, impl: str, threads: int) -> float | None: ...


@dataclass
class Choice:
    impl: str
    why: str  # "--impl", "measured", "estimated", or "default" (no cost known: the analysis' choice)
    seconds: dict[str, float] = field(default_factory=dict)  # impl (or "twin": the float twin) -> cost
    timed_by: str = ""  # what the seconds are: "measured" or "estimated" ("" when there are none)


def parse_impl_overrides(values: tuple[str, ...] | list[str]) -> tuple[str | None, dict[str, str]]:
    """--impl IMPL (every layer that has it) and --impl LAYER=IMPL: (global, per layer)."""
    overall, per_layer = None, {}
    for value in values:
        name, _, impl = value.rpartition("=")
        if impl not in IMPLS:
            raise QCompileError(f"--impl {value}: expected an implementation in {', '.join(IMPLS)}, got {impl!r}")
        if name:
            per_layer[name] = impl
        else:
            overall = impl
    return overall, per_layer


def _costs_of(layer: Layer, model: onnx.ModelProto | None, sources: list, threads: int) -> tuple[dict[str, float], str]:
    """Every option's cost (and the twin's) from the first source that knows all options, and what
    kind that source is ("measured" / "estimated"); ({}, "") when none does."""
    if model is None:
        return {}, ""
    for source in sources:
        seconds = {impl: source.cost(model, layer, impl, threads) for impl in layer.options}
        if any(s is None for s in seconds.values()):
            continue
        twin = source.cost(model, layer, "twin", threads)
        if twin is not None:
            seconds["twin"] = twin
        return seconds, getattr(source, "kind", "measured")
    return {}, ""


def choose_impls(layers: list[Layer], layer_models: dict[str, onnx.ModelProto] | None = None,
                 costs: CostSource | list[CostSource] | None = None, overrides: dict[str, str] | None = None,
                 overall: str | None = None, threads: int = 1) -> dict[str, Choice]:
    """The implementation of every layer with a choice (more than "float"): an --impl override,
    else the cheapest by the first of `costs` (sources, in order) that knows every option of the
    layer, else the analysis' default."""
    overrides, layer_models = overrides or {}, layer_models or {}
    sources = [] if costs is None else list(costs) if isinstance(costs, (list, tuple)) else [costs]
    unknown = sorted(set(overrides) - {layer.name for layer in layers})
    if unknown:
        raise QCompileError(f"--impl names no layer {', '.join(map(repr, unknown))}; "
                            f"layers: {', '.join(layer.name for layer in layers)}")
    choices = {}
    for layer in layers:
        wanted = overrides.get(layer.name)
        if wanted is not None and wanted not in layer.options:
            raise QCompileError(f"--impl {layer.name}={wanted}: layer {layer.name!r} can run as "
                                f"{', '.join(layer.options)} only")
        if len(layer.options) < 2:
            continue
        seconds, kind = _costs_of(layer, layer_models.get(layer.name), sources, threads)
        wanted = wanted or (overall if overall in layer.options else None)
        if wanted is not None:
            choices[layer.name] = Choice(wanted, "--impl", seconds, kind)
        elif kind in ("estimated", "") and "float" in layer.options and is_depthwise(layer):
            choices[layer.name] = Choice("float", kind or "default", seconds, kind)  # DEPTHWISE_FLOAT
        elif kind == "estimated":
            choices[layer.name] = Choice(_cheapest(layer.options, seconds), kind, seconds, kind)
        elif kind:
            choices[layer.name] = Choice(_fastest(layer.options, seconds), kind, seconds, kind)
        else:
            choices[layer.name] = Choice(layer.impl, "default")
    _credit_dense_chains(layers, choices, sources, overrides, overall)
    return choices


# A chain of dense bit-serial layers runs as one BitSerialMlp node (passes/fuse_dense_chain.py):
# only its first layer pays the per-node cost that the estimates put on every layer (the "dense
# overhead" constant). Scored per layer, the 64-wide layers of Brevitas's tfc went float
# (estimated 10.3 us bit-serial against 8.3 us float each), though the fused chain runs them in a
# fraction of one node's cost.
_CHAIN_HOPS = 8  # nodes between two chained layers: quantizer, BatchNorm, activation, reshape


def _feeds(a: Layer, b: Layer) -> bool:
    """Whether a's output reaches b's node through single-use nodes only (the chain the fused op replaces)."""
    value = a.node.outputs[0]
    for _ in range(_CHAIN_HOPS):
        uses = value.uses()
        if len(uses) != 1 or value.is_graph_output():
            return False
        node = uses[0].node
        if node is b.node:
            return True
        if not node.outputs:
            return False
        value = node.outputs[0]
    return False


def _credit_dense_chains(layers: list[Layer], choices: dict[str, Choice], sources: list, overrides: dict,
                         overall: str | None) -> None:
    """Runs of estimated dense layers that each feed the next go bit-serial together when that is
    estimated cheaper as one fused node than the per-layer choices."""
    est = next((s for s in sources if isinstance(s, EstimatedCosts)), None)
    if est is None or overall is not None or "bitserial" not in est.constants:
        return
    node_cost = est.constants["bitserial"][FEATURES.index("dense overhead")]
    run: list[Layer] = []

    def settle() -> None:
        if len(run) < 2:
            return
        cs = [choices[layer.name] for layer in run]
        chain = sum(c.seconds["bitserial"] for c in cs) - (len(run) - 1) * node_cost
        if all(c.impl == "bitserial" for c in cs) or chain >= sum(c.seconds[c.impl] for c in cs):
            return
        for layer, c in zip(run, cs, strict=True):
            choices[layer.name] = Choice("bitserial", "estimated, one BitSerialMlp", c.seconds, c.timed_by)

    for layer in layers:
        c = choices.get(layer.name)
        ok = (c is not None and c.why == "estimated" and layer.op_type != "Conv" and layer.name not in overrides
              and "bitserial" in c.seconds and c.impl in c.seconds)
        if ok and run and _feeds(run[-1], layer):
            run.append(layer)
            continue
        settle()
        run = [layer] if ok else []
    settle()


# Estimates closer than this (20%) are a tie, which goes to the exact option: the model's error
# on a layer is about that (the calibration fits to 5-20%), a whole-model race found such near
# ties equal (Brevitas tfc_1w1a: 64-wide binary layers estimated 0.86-0.93x float, the model
# 0.0558 ms with them float, 0.0564 ms lowered), and a float layer can lose parity (see
# FLOAT_MARGIN). Past it, float is taken: no layer is lowered to something clearly slower.
ESTIMATE_TIE = 1 / 1.2


# DEPTHWISE_FLOAT: a depthwise layer with a float option stays float unless measured (--tune) or
# asked (--impl): its int8 kernel (DepthwiseConvRequantize) measured 0.29-1.13x onnxruntime's float
# depthwise conv on MobileNet v1's shapes (tools/bench_depthwise.py), and whole MobileNet the same,
# ProxylessNAS (5x5 and 7x7 depthwise) ~7% slower, with it; one calibrated 3x3 layer prices it too
# cheaply. (A float layer that fails parity is still lowered after all, by the compiler.)


def is_depthwise(layer: Layer) -> bool:
    """A conv with one input channel per group and a group per output channel."""
    from qcompile.analysis import conv_attrs

    w = layer.weight.values
    if layer.op_type != "Conv" or w is None or w.ndim != 4 or w.shape[1] != 1:
        return False
    return int(conv_attrs(layer.node, tuple(w.shape[2:]))["group"]) == w.shape[0]


def _cheapest(options: list[str], seconds: dict[str, float]) -> str:
    """By estimates: the cheapest exact option, or float when it is estimated cheaper by more than
    the model's error (ESTIMATE_TIE); among exact options a tie goes to the earlier one."""
    exact = [impl for impl in options if impl != "float"]
    if not exact:
        return "float"
    best = min(exact, key=lambda impl: seconds[impl])
    return "float" if "float" in options and seconds["float"] < ESTIMATE_TIE * seconds[best] else best


# With measured costs, float must beat the fastest exact option by this factor (1.5x): timings of a layer
# alone vary by 10-30% on a loaded machine, and a layer left float rounds differently from the
# reference's (onnxruntime fuses its now-constant weights with the BatchNorm after), which a
# following sign quantizer turns into flipped bits (seen on Brevitas CNV's first layer: parity
# lost); an exact integer layer has no such risk.
FLOAT_MARGIN = 1 / 1.5


def _fastest(options: list[str], seconds: dict[str, float]) -> str:
    """The cheapest option; float only when it is clearly cheaper than every exact one."""
    exact = [impl for impl in options if impl != "float"]
    if not exact:
        return "float"
    best = min(exact, key=lambda impl: seconds[impl])  # a tie goes to the earlier option
    return "float" if "float" in options and seconds["float"] < FLOAT_MARGIN * seconds[best] else best


def kernel_variant(op_type: str | None) -> str:
    """The kernel variant a node of op_type runs here: the op library's pick (qcompile ops with
    variants), "onnxruntime" for the standard ops of the int8 path and float, "" for none."""
    from qcompile.runtime import KERNEL_OPS, selected_kernel

    if op_type is None or op_type in ("ConvInteger", "MatMulInteger"):
        return "onnxruntime"
    return (selected_kernel(op_type) or "") if op_type in KERNEL_OPS else ""


def layer_model(proto: onnx.ModelProto, layer: Layer, shapes: dict[str, list]) -> onnx.ModelProto | None:
    """The layer alone, batch 1: its activation quantizer (through Flatten/Reshape), its weight
    quantizer and the layer node, with their constants; None when the input shape is not known."""
    producers = {o: n for n in proto.graph.node for o in n.output}
    inits = {t.name: t for t in proto.graph.initializer}
    node = next((n for n in proto.graph.node if layer.node.outputs[0].name in n.output), None)
    if node is None:
        return None
    chain, tensor = [node], node.input[0]
    while tensor in producers and producers[tensor].op_type in (*SHAPE_OPS, "BipolarQuant", *QONNX_QUANT_OPS):
        prod = producers[tensor]
        chain.insert(0, prod)
        tensor = prod.input[0]
        if prod.domain == QONNX_DOMAIN:
            break
    for name in node.input[1:]:
        if name in producers:
            chain.insert(-1, producers[name])
    dims = shapes.get(tensor)
    if not dims or any(d is None for d in dims[1:]):
        return None
    needed = {i for n in chain for i in n.input} - {o for n in chain for o in n.output}
    consts = [inits[i] for i in needed if i in inits]
    if needed - set(inits) - {tensor}:
        return None  # something else feeds the layer (a non-constant weight)
    x = onnx.helper.make_tensor_value_info(tensor, onnx.TensorProto.FLOAT, [1, *dims[1:]])
    y = onnx.helper.make_tensor_value_info(node.output[0], onnx.TensorProto.FLOAT, None)
    graph = onnx.helper.make_graph(chain, f"layer_{layer.name}", [x], [y], consts)
    model = onnx.helper.make_model(graph, opset_imports=list(proto.opset_import), ir_version=proto.ir_version)
    return model


def default_cache_path() -> Path:
    base = os.environ.get("QCOMPILE_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "qcompile")
    return Path(base) / "costs.json"


def machine_key() -> str:
    """What cached costs are valid for: the CPU model, qcompile's and onnxruntime's versions."""
    import onnxruntime as ort

    import qcompile

    return f"{cpu_model()} | qcompile {qcompile.__version__} | onnxruntime {ort.__version__}"


class MeasuredCosts:
    """Times each implementation of a layer alone (median of `repeats` runs), cached on disk."""

    kind = "measured"

    def __init__(self, cache_path: Path | None = None, repeats: int = 15, measure: bool = True):
        self.path = cache_path or default_cache_path()
        self.repeats = repeats
        self.measure = measure  # False: cached figures only (a plain compile); True: --tune
        self.machine = machine_key()
        try:
            self.cache = json.loads(self.path.read_text())
        except (OSError, ValueError):
            self.cache = {}
        self.dirty = False

    def _key(self, model: onnx.ModelProto, impl: str, threads: int) -> str:
        digest = hashlib.sha256(model.SerializeToString(deterministic=True)).hexdigest()[:24]
        return f"{digest}/{impl}/t{threads}"

    def cost(self, layer_model: onnx.ModelProto, layer: Layer, impl: str, threads: int) -> float | None:
        entries = self.cache.setdefault(self.machine, {})
        key = self._key(layer_model, impl, threads)
        if key not in entries and self.measure:
            entries[key] = self._time(layer_model, layer, impl, threads)
            self.dirty = True
        return entries.get(key)

    def _time(self, layer_model: onnx.ModelProto, layer: Layer, impl: str, threads: int) -> float:
        from qcompile.runtime import InferenceSession

        # "float" is the layer compiled to stay float: its activation quantizer still runs; "twin"
        # is the float twin (no quantizer at all), the table's reference
        model = float_twin(layer_model) if impl == "twin" else _compiled_as(layer_model, layer.name, impl)
        sess = InferenceSession(model.SerializeToString(), threads=threads)
        inp = sess.get_inputs()[0]
        x = np.random.default_rng(0).standard_normal([d if isinstance(d, int) else 1 for d in inp.shape]).astype(np.float32)
        feed = {inp.name: x}
        for _ in range(3):
            sess.run(None, feed)
        times = []
        for _ in range(self.repeats):
            start = time.perf_counter()
            sess.run(None, feed)
            times.append(time.perf_counter() - start)
        return float(np.median(times))

    def save(self) -> None:
        if not self.dirty:
            return
        from qcompile.fileio import write_bytes_atomic

        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(self.path, json.dumps(self.cache, indent=1, sort_keys=True).encode())
        self.dirty = False


def _compiled_as(layer_model: onnx.ModelProto, name: str, impl: str) -> onnx.ModelProto:
    import onnx_ir as ir

    from qcompile.passes.pipeline import CompileOptions, compile_pipeline

    run = compile_pipeline(ir.serde.deserialize_model(layer_model), CompileOptions(choices={name: (impl, "")}))
    return ir.serde.serialize_model(run.model)


def float_twin(proto: onnx.ModelProto) -> onnx.ModelProto:
    """The model with every quantizer replaced by an Identity: what stock onnxruntime runs in float."""
    twin = onnx.ModelProto()
    twin.CopyFrom(proto)
    for node in twin.graph.node:
        if node.domain in (QONNX_DOMAIN, "qcompile") and node.op_type in ("BipolarQuant", "Pow2Quant", "Trunc",
                                                                         *QONNX_QUANT_OPS):
            del node.input[1:]
            del node.attribute[:]
            node.op_type, node.domain = "Identity", ""
    used = {i for n in twin.graph.node for i in n.input}
    keep = [t for t in twin.graph.initializer if t.name in used]
    del twin.graph.initializer[:]
    twin.graph.initializer.extend(keep)
    return twin


# ---- the default cost source: an analytic model per implementation, no per-model timing ----
#
# t(impl, layer) = c0 (conv) or c1 (dense) + c2 * conv work + c3 * dense work + c4 * elements
#                  + c5 * groups * pixels
#
# (onnxruntime's Conv costs ~5 us more to run than its Gemm on a tiny layer, hence two overheads)
# work is what the implementation's inner loop counts: 64-bit words of XNOR popcounts (times the
# weight x activation plane pairs for bit-serial), so a depthwise conv (one channel per group) costs
# a whole word per tap; multiply-adds for SHIFT, int8 and float. elements (input + output values)
# price the memory passes around the kernel (packing, quantizing, the epilogue); groups * pixels
# the per-group loops a grouped conv runs. The five constants per implementation come from timing
# each implementation once on a few layer shapes picked so that each term dominates one of them
# (CALIBRATION_LAYERS), fitted by least squares on relative error, cached per machine.

FEATURES = ("conv overhead", "dense overhead", "conv work", "dense work", "elements", "groups x pixels")
ESTIMATED = (*IMPLS, "twin")  # every implementation, and the float twin (quantizers -> Identity)
WORD_BITS = 64


@dataclass(frozen=True)
class LayerShape:
    """What a layer's cost depends on, at batch 1."""

    dense: bool
    out_channels: int
    group_channels: int  # input channels per group (K for a dense layer)
    groups: int
    taps: int  # KH * KW (1 for a dense layer)
    pixels: int  # output positions OH * OW (1 for a dense layer)
    in_elems: int
    pairs: int = 1  # bit-serial: weight planes x activation planes

    @property
    def macs(self) -> int:
        return self.out_channels * self.pixels * self.taps * self.group_channels

    def work(self, impl: str) -> int:
        if impl not in ("xnor", "bitserial"):
            return self.macs
        words = self.out_channels * self.pixels * self.taps * -(-self.group_channels // WORD_BITS)
        return words * (self.pairs if impl == "bitserial" else 1)

    def features(self, impl: str) -> np.ndarray:
        work = float(self.work(impl))
        conv = 0.0 if self.dense else 1.0
        return np.array([conv, 1.0 - conv, conv * work, (1.0 - conv) * work,
                         float(self.in_elems + self.out_channels * self.pixels), float(self.groups * self.pixels)])


def layer_shape(layer: Layer, input_dims: list[int | None]) -> LayerShape | None:
    """The layer's shape from its weights, attributes and input dims (batch first); None if unknown."""
    from qcompile.analysis import activation_operand, conv_attrs, weight_operand

    w = layer.weight.values
    if w is None or not input_dims or any(not isinstance(d, int) or d < 1 for d in input_dims[1:]):
        return None
    in_elems = int(np.prod(input_dims[1:]))
    pairs = 1
    if "bitserial" in layer.options and layer.input.quant_node is not None:
        act, wop = activation_operand(layer.input.quant_node, layer.node), weight_operand(layer.node, layer.weight)
        if not isinstance(act, str) and not isinstance(wop, str):
            pairs = act.planes * wop.planes
    if layer.op_type != "Conv":
        return LayerShape(True, w.shape[0], int(np.prod(w.shape[1:])), 1, 1, 1, in_elems, pairs)
    if len(input_dims) != 4 or w.ndim != 4:
        return None
    a = conv_attrs(layer.node, tuple(w.shape[2:]))
    (kh, kw), (sh, sw), (dh, dw), (pt, pl, pb, pr) = a["kernel_shape"], a["strides"], a["dilations"], a["pads"]
    oh = (input_dims[2] + pt + pb - dh * (kh - 1) - 1) // sh + 1
    ow = (input_dims[3] + pl + pr - dw * (kw - 1) - 1) // sw + 1
    if oh < 1 or ow < 1:
        return None
    return LayerShape(False, w.shape[0], w.shape[1], int(a["group"]), kh * kw, oh * ow, in_elems, pairs)


# Seconds per feature unit (FEATURES) for each implementation, used when measuring is off
# (QCOMPILE_COSTMODEL=static, the tests) or fails: calibrate() on the 2-vCPU Xeon VM (AVX-512
# VPOPCNTDQ, onnxruntime 1.32, 1 thread), rounded. Another CPU measures its own.
STATIC_CONSTANTS: dict[str, tuple[float, ...]] = {
    "xnor": (1.7e-05, 1.6e-05, 1.3e-10, 7.6e-10, 1.1e-09, 1.9e-08),
    "bitserial": (1.8e-05, 1.5e-05, 3.4e-10, 6.3e-10, 2.8e-09, 9.2e-09),
    "shift": (1.6e-05, 1.2e-05, 2.0e-11, 2.0e-11, 7.8e-09, 6.1e-09),
    "int8": (1.6e-05, 1.5e-05, 1.1e-11, 4.8e-11, 4.2e-10, 1.1e-08),
    # float: measured with QONNX Quant's per-element kernel (~9 ns/value); its SSE2 rows now take
    # ~1 ns (calibrate() gives 9.3e-10): kept, so the fixed table errs towards lowering
    "float": (1.4e-05, 1.3e-05, 2.3e-11, 2.1e-10, 9.6e-09, 0.0),
    "twin": (1.3e-05, 9.7e-06, 2.0e-11, 2.1e-10, 1.7e-10, 1.8e-10),
}


class EstimatedCosts:
    """The analytic cost model on given constants (seconds per FEATURES unit, per implementation)."""

    kind = "estimated"

    def __init__(self, constants: dict[str, tuple[float, ...]] | None = None, source: str = "static"):
        self.constants = dict(STATIC_CONSTANTS if constants is None else constants)
        self.source = source  # "static", "calibrated" or "cached": where the constants came from

    def estimate(self, shape: LayerShape, impl: str) -> float | None:
        coeffs = self.constants.get(impl)
        return None if coeffs is None else float(shape.features(impl) @ np.asarray(coeffs, np.float64))

    def cost(self, layer_model: onnx.ModelProto | None, layer: Layer, impl: str, threads: int) -> float | None:
        if threads != 1 or layer_model is None:  # the constants are one core's
            return None
        dims = [d.dim_value if d.HasField("dim_value") else None
                for d in layer_model.graph.input[0].type.tensor_type.shape.dim]
        shape = layer_shape(layer, dims)
        return None if shape is None else self.estimate(shape, impl)


def _calibration_layer(family: str, shape: str) -> onnx.ModelProto:
    """One layer alone for calibrate(): `family` binary (xnor), uniform (2-bit x 2-bit: bit-serial,
    int8, float, the twin) or pow2 (4-bit x power-of-two weights: SHIFT); `shape` a CALIBRATION_LAYERS key."""
    from qcompile.onnx_builder import GraphBuilder

    dense, cin, cout, k, size, group = CALIBRATION_LAYERS[shape]
    g = GraphBuilder(7)
    wshape = (cout, cin) if dense else (cout, cin // group, k, k)
    x = "x"
    if family == "binary":
        x, w = g.bipolar(x), g.binary_weight(wshape)
    elif family == "pow2":
        x, w = g.quant(x, 0.1, 4, signed=0), g.pow2_weight(wshape)
    else:
        wv = g.rng.integers(-2, 2, wshape).astype(np.float32) * np.float32(0.1)
        x, w = g.quant(x, 0.1, 2, signed=0), g.quant(g.const(wv, "w"), 0.1, 2)
    if dense:
        y = g.op("Gemm", [x, w], name="layer", transB=1)
        return g.model({"x": [1, cin]}, [y])
    p = k // 2
    y = g.op("Conv", [x, w], name="layer", kernel_shape=[k, k], pads=[p] * 4, group=group)
    return g.model({"x": [1, cin, size, size]}, [y])


# name -> (dense, in channels, out channels, kernel, input size, groups): each prices one term
CALIBRATION_LAYERS = {
    "tiny": (False, 8, 8, 1, 4, 1),  # the per-layer overhead
    "compute": (False, 128, 128, 3, 14, 1),  # conv work
    "mid": (False, 64, 64, 3, 28, 1),  # conv work at another balance
    "stream": (False, 16, 16, 1, 56, 1),  # elements
    "depthwise": (False, 64, 64, 3, 28, 64),  # groups x pixels
    "dense": (True, 1024, 1024, 1, 1, 1),  # dense work
    "dense_small": (True, 256, 64, 1, 1, 1),
}
_FAMILIES = {"binary": ("xnor",), "uniform": ("bitserial", "int8", "float", "twin"), "pow2": ("shift",)}
# bump when the features, the layers, what they compile to or the kernels change (4: depthwise int8
# layers run DepthwiseConvInteger; 5: faster XnorConv and Requantize kernels; 6: stride-1 int8
# convs run DirectConvInteger where AMX / AVX-512 VNNI is there; 7: dense bit-serial kernels and
# the op library's own kernel adapter, ~1 us less per custom op): cached constants of another
# version are re-measured
CALIBRATION_VERSION = 7


def _run_seconds(model: onnx.ModelProto, budget_s: float) -> float:
    """Seconds per run: the 25th percentile, which other work on a shared machine disturbs least."""
    from qcompile.runtime import InferenceSession

    sess = InferenceSession(model.SerializeToString(), threads=1)
    inp = sess.get_inputs()[0]
    feed = {inp.name: np.random.default_rng(0).standard_normal(inp.shape).astype(np.float32)}
    sess.run(None, feed)
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < 5 or (time.perf_counter() - start < budget_s and len(times) < 200):
        t0 = time.perf_counter()
        sess.run(None, feed)
        times.append(time.perf_counter() - t0)
    return float(np.percentile(times, 25))


def fit_constants(rows: list[tuple[np.ndarray, float]]) -> tuple[float, ...] | None:
    """Non-negative constants c with features @ c ~ seconds, least squares on relative error; a
    term that would come out negative is dropped (0) and the rest refitted. None: too few rows."""
    if len(rows) < len(FEATURES):
        return None
    a = np.array([f / t for f, t in rows])  # row i divided by its time: relative error
    b = np.ones(len(rows))
    active = [j for j in range(len(FEATURES)) if np.any(a[:, j] > 0)]
    while active:
        sol, *_ = np.linalg.lstsq(a[:, active], b, rcond=None)
        if np.all(sol >= 0):
            coeffs = np.zeros(len(FEATURES))
            coeffs[active] = sol
            return tuple(float(c) for c in coeffs)
        active.pop(int(np.argmin(sol)))
    return None


def calibrate(budget_s: float = 0.01) -> dict[str, tuple[float, ...]]:
    """Time every implementation on CALIBRATION_LAYERS (a few seconds) and fit its constants; an
    implementation whose layers could not all run keeps STATIC_CONSTANTS."""
    import onnx_ir as ir

    from qcompile.analysis import analyze_model

    rows: dict[str, list[tuple[np.ndarray, float]]] = {impl: [] for impl in ESTIMATED}
    for family, impls in _FAMILIES.items():
        for shape_name in CALIBRATION_LAYERS:
            proto = _calibration_layer(family, shape_name)
            (layer,) = analyze_model(ir.serde.deserialize_model(proto))
            dims = [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
            shape = layer_shape(layer, dims)
            for impl in impls:
                if impl != "twin" and impl not in layer.options:
                    continue
                model = float_twin(proto) if impl == "twin" else _compiled_as(proto, layer.name, impl)
                rows[impl].append((shape.features(impl), _run_seconds(model, budget_s)))
    fitted = {impl: fit_constants(r) if len(r) == len(CALIBRATION_LAYERS) else None for impl, r in rows.items()}
    return {impl: c if c is not None else STATIC_CONSTANTS[impl] for impl, c in fitted.items()}


COSTMODEL_ENV = "QCOMPILE_COSTMODEL"  # "static": STATIC_CONSTANTS, never measured; "calibrated" (default)


def estimated_costs(cache_path: Path | None = None) -> EstimatedCosts:
    """The default cost source: this machine's constants, calibrated once and cached per CPU
    model, qcompile and onnxruntime version (like MeasuredCosts); QCOMPILE_COSTMODEL=static uses
    the fixed table instead."""
    mode = os.environ.get(COSTMODEL_ENV, "calibrated").strip().lower() or "calibrated"
    if mode not in ("static", "calibrated"):
        raise QCompileError(f"{COSTMODEL_ENV}={os.environ[COSTMODEL_ENV]!r}: expected 'static' or 'calibrated'")
    if mode == "static":
        return EstimatedCosts()
    path = cache_path or default_cache_path().with_name("costmodel.json")
    machine = machine_key()
    try:
        cache = json.loads(path.read_text())
    except (OSError, ValueError):
        cache = {}
    entry = cache.get(machine)
    if isinstance(entry, dict) and entry.get("version") == CALIBRATION_VERSION and \
            set(entry.get("constants", {})) == set(ESTIMATED):
        return EstimatedCosts({k: tuple(v) for k, v in entry["constants"].items()}, "cached")
    constants = calibrate()
    cache[machine] = {"version": CALIBRATION_VERSION, "features": list(FEATURES),
                      "constants": {k: list(v) for k, v in constants.items()}}
    from qcompile.fileio import write_bytes_atomic

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(path, json.dumps(cache, indent=1, sort_keys=True).encode())
    except OSError:  # a read-only cache: the constants still serve this compile
        pass
    return EstimatedCosts(constants, "calibrated")
