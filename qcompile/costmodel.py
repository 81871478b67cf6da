"""The per-layer choice among a layer's exact implementations: user overrides, else the cheapest by a
cost source (measured on this machine, cached), else the analysis' default.

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
    why: str  # "--impl", "fastest (measured)", "default"
    seconds: dict[str, float] = field(default_factory=dict)  # impl (or "twin": the float twin) -> cost


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


def choose_impls(layers: list[Layer], layer_models: dict[str, onnx.ModelProto] | None = None,
                 costs: CostSource | None = None, overrides: dict[str, str] | None = None,
                 overall: str | None = None, threads: int = 1) -> dict[str, Choice]:
    """The implementation of every layer with a choice (more than "float")."""
    overrides = overrides or {}
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
        seconds: dict[str, float] = {}
        if costs is not None and layer_models is not None and layer.name in layer_models:
            for impl in layer.options:
                s = costs.cost(layer_models[layer.name], layer, impl, threads)
                if s is not None:
                    seconds[impl] = s
            twin = costs.cost(layer_models[layer.name], layer, "twin", threads) if seconds else None
            if twin is not None:
                seconds["twin"] = twin
        wanted = wanted or (overall if overall in layer.options else None)
        if wanted is not None:
            choices[layer.name] = Choice(wanted, "--impl", seconds)
        elif all(impl in seconds for impl in layer.options):
            choices[layer.name] = Choice(_fastest(layer.options, seconds), "fastest (measured)", seconds)
        else:
            choices[layer.name] = Choice(layer.impl, "default", seconds)
    return choices


# Float must beat the fastest exact option by this factor (1.5x) to be chosen: timings of a layer
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


class MeasuredCosts:
    """Times each implementation of a layer alone (median of `repeats` runs), cached on disk."""

    def __init__(self, cache_path: Path | None = None, repeats: int = 15, measure: bool = True):
        import onnxruntime as ort

        import qcompile

        self.path = cache_path or default_cache_path()
        self.repeats = repeats
        self.measure = measure  # False: cached figures only (a plain compile); True: --tune
        self.machine = f"{cpu_model()} | qcompile {qcompile.__version__} | onnxruntime {ort.__version__}"
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
