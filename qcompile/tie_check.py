"""Activation codes that differ only because a value sits on a quantizer's rounding boundary.

A quantizer rounds x / s + z to an integer. When the real value x lies on (or within float
rounding of) a boundary between two codes, the reference and the compiled model, which compute x
by different float32 op sequences (a float conv then BatchNorm, against an exact integer dot
product times a folded scale plus a bias), can round it to neighbouring codes, and either code is
a correct rounding: neither program knows on which side the real value lies. From there on the two
models legitimately compute different numbers, so comparing outputs alone cannot tell such a tie
from a bug.

The check, per activation quantizer of the reference whose input tensor the compiled model also
computes (same name), in graph order:
  * codes equal everywhere: nothing to do;
  * every differing code is a tie: it differs by exactly one step, and the two pre-quantization
    values agree within the float bound the validator applies to any float tensor,
    |x_ref - x_comp| <= rtol * max|x_ref| (qcompile.verify's derivation). Codes are a monotone
    function of x, so a boundary b lies between x_ref and x_comp, hence |x_ref - b| <= that bound:
    the reference value is within the float bound of the step. The reference is then cut there and
    fed, at those elements only, the compiled model's value, so both continue from the same codes;
  * any other difference (two steps, or values further apart than the bound) is a mismatch.
Parity passes after ties only if the outputs then agree within the usual bound; the report says
how many codes differed at rounding ties, and where.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

from qcompile.ops.qonnx import quant_int

QUANT_OPS = ("Quant", "IntQuant")
_SUFFIX = "/tie_adjusted"


@dataclass
class TieSite:
    quantizer: str  # the reference Quant node
    tensor: str  # its input tensor, computed by both models
    codes: int  # how many codes differ at a rounding tie


@dataclass
class TieAdjustment:
    reference: onnx.ModelProto  # the reference cut at each tie site, fed the compiled values there
    feeds: dict[str, np.ndarray]  # the original feeds plus those values
    sites: list[TieSite]
    mismatch: str | None = None  # why a code difference is not a tie (None: all were ties)


def _constants(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    values = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant" and node.domain == "" and node.attribute and node.attribute[0].name == "value":
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return values


def _codes(node: onnx.NodeProto, x: np.ndarray, consts: dict[str, np.ndarray]) -> np.ndarray:
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    mode = attrs.get("rounding_mode", b"ROUND")
    return quant_int(x, *(consts[n] for n in node.input[1:4]), signed=int(attrs.get("signed", 1)),
                     narrow=int(attrs.get("narrow", 0)),
                     rounding_mode=mode.decode() if isinstance(mode, bytes) else mode)


def _activation_quantizers(ref: onnx.ModelProto, comp_tensors: set[str]) -> list[onnx.NodeProto]:
    """Reference quantizers of a computed tensor that the compiled model computes too, in order."""
    consts = _constants(ref)
    return [n for n in ref.graph.node
            if n.domain.startswith("qonnx") and n.op_type in QUANT_OPS and n.input[0] not in consts
            and all(p in consts for p in n.input[1:4]) and n.input[0] in comp_tensors]


def _cut(ref: onnx.ModelProto, node_name: str, tensor: str) -> str:
    """Make the quantizer `node_name` read a new graph input instead of `tensor`; its name."""
    name = tensor + _SUFFIX
    for node in ref.graph.node:
        if node.name == node_name:
            node.input[0] = name
    ref.graph.input.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    return name


def adjust_for_ties(ref: onnx.ModelProto, comp: onnx.ModelProto, feeds: dict[str, np.ndarray], rtol: float,
                    run) -> TieAdjustment | None:
    """The reference with every tie site cut (module docstring), or None when no code differs.

    `run(model, names, feeds)` evaluates tensors `names` of `model` (verify's sessions)."""
    comp_tensors = {o for n in comp.graph.node for o in n.output if o}
    quantizers = _activation_quantizers(ref, comp_tensors)
    if not quantizers:
        return None
    consts = _constants(ref)
    names = [q.input[0] for q in quantizers]
    comp_vals = dict(zip(names, run(comp, names, feeds), strict=True))
    adjusted = onnx.ModelProto()
    adjusted.CopyFrom(ref)
    feeds = dict(feeds)
    sites: list[TieSite] = []
    ref_vals = dict(zip(names, run(adjusted, names, feeds), strict=True))
    for q in quantizers:
        x_ref, x_comp = np.asarray(ref_vals[q.input[0]], np.float32), np.asarray(comp_vals[q.input[0]], np.float32)
        if x_ref.shape != x_comp.shape:
            return TieAdjustment(adjusted, feeds, sites, f"{q.input[0]!r}: shapes {x_ref.shape} vs {x_comp.shape}")
        differ = _codes(q, x_ref, consts) != _codes(q, x_comp, consts)
        if not differ.any():
            continue
        steps = np.abs(_codes(q, x_ref, consts) - _codes(q, x_comp, consts))[differ]
        gap = np.abs(x_ref.astype(np.float64) - x_comp)[differ]
        bound = rtol * float(np.max(np.abs(x_ref)))
        if steps.max() > 1 or gap.max() > bound:
            return TieAdjustment(adjusted, feeds, sites,
                                 f"quantizer {q.name!r}: {int(differ.sum())} codes differ, up to {int(steps.max())} "
                                 f"steps, pre-quantization values up to {gap.max():.3g} apart (tie bound {bound:.3g})")
        sites.append(TieSite(q.name, q.input[0], int(differ.sum())))
        feeds[_cut(adjusted, q.name, q.input[0])] = np.where(differ, x_comp, x_ref)
        ref_vals = dict(zip(names, run(adjusted, names, feeds), strict=True))
    return TieAdjustment(adjusted, feeds, sites) if sites else None
