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

Where the compiled model no longer computes the quantizer's input (a multi-bit layer that writes the
next layer's codes, qcompile.passes.multibit_thresholds), the node that writes the codes names the
quantizer's input tensor in its CODES_KEY metadata. Its codes q_comp (decoded from the packed planes,
plus the zero point) are compared with the reference's q_ref instead: a difference is a tie when it
is one step and the reference value lies within the same float bound of the rounding boundary
between the two codes, b = (min(q_ref, q_comp) + 1/2 - z) * s (ROUND; other rounding modes are not
judged from codes). The reference is then fed, at those elements, the centre of the compiled code's
step, (q_comp - z) * s, which its quantizer maps to q_comp.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

from qcompile.ops.bitserial import from_planes, plane_coeffs, unpack_act_planes
from qcompile.ops.packing import unpack_last_axis, words_for
from qcompile.ops.qonnx import quant_int
from qcompile.passes.multibit_thresholds import CODES_KEY

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


def _code_outputs(comp: onnx.ModelProto) -> dict[str, tuple[str, dict]]:
    """Reference tensor -> (the compiled output holding its quantizer's codes, how they are packed)."""
    found = {}
    for node in comp.graph.node:
        meta = {e.key: e.value for e in node.metadata_props}
        if CODES_KEY in meta and node.output and node.output[0]:
            entry = json.loads(meta[CODES_KEY])
            found[entry["tensor"]] = (node.output[0], entry)
    return found


def _decode(packed: np.ndarray, entry: dict, shape: tuple[int, ...]) -> np.ndarray | None:
    """The integer codes v [N, C, ...] held in packed planes, or None when the shapes disagree."""
    coeffs = plane_coeffs(int(entry["planes"]), bool(entry["signed"]))
    if len(shape) == 4 and packed.ndim == 4:
        v = unpack_act_planes(packed, shape[1], int(entry["group"]), coeffs)
    elif packed.ndim == 2 and int(np.prod(shape[2:])) == 1 and packed.shape[1] == len(coeffs) * words_for(shape[1]):
        # dense codes [N, P*Kw]; also those of a 1x1 image flattened for a dense layer
        bits = unpack_last_axis(packed.reshape(packed.shape[0], len(coeffs), words_for(shape[1])), shape[1])
        v = from_planes(bits.transpose(1, 0, 2), coeffs).reshape(shape)
    else:
        return None
    return v if v.shape == tuple(shape) else None


def _code_ties(q: onnx.NodeProto, x_ref: np.ndarray, packed: np.ndarray, entry: dict,
               consts: dict[str, np.ndarray], rtol: float) -> tuple[np.ndarray, np.ndarray] | str:
    """(differing elements, the values to feed there) for a quantizer judged from compiled codes, or
    why a difference is not a tie (module docstring)."""
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in q.attribute}
    mode = attrs.get("rounding_mode", b"ROUND")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    scale, zp = (np.asarray(consts[n], np.float64) for n in q.input[1:3])
    v = _decode(np.asarray(packed), entry, x_ref.shape)
    if v is None:
        return f"{q.input[0]!r}: compiled codes {tuple(np.shape(packed))} do not match the reference {x_ref.shape}"
    if zp.size != 1:
        return f"quantizer {q.name!r}: a per-channel zero point is not judged from codes"
    q_comp = v + int(zp.reshape(-1)[0])
    q_ref = _codes(q, x_ref, consts).astype(np.int64)
    differ = q_ref != q_comp
    if not differ.any():
        return differ, x_ref
    if mode.upper() != "ROUND":
        return f"quantizer {q.name!r}: {int(differ.sum())} codes differ; only ROUND ties are judged from codes"
    steps = np.abs(q_ref - q_comp)
    boundary = (np.minimum(q_ref, q_comp) + 0.5 - zp) * scale
    gap = np.abs(x_ref.astype(np.float64) - boundary)[differ]
    bound = rtol * float(np.max(np.abs(x_ref)))
    if steps.max() > 1 or gap.max() > bound:
        return (f"quantizer {q.name!r}: {int(differ.sum())} codes differ, up to {int(steps.max())} steps, "
                f"reference values up to {gap.max():.3g} from the rounding boundary (tie bound {bound:.3g})")
    centre = ((q_comp - zp) * scale).astype(np.float32)
    return differ, np.where(differ, centre, x_ref)


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
    code_outputs = {t: c for t, c in _code_outputs(comp).items() if t not in comp_tensors}
    quantizers = _activation_quantizers(ref, comp_tensors | set(code_outputs))
    if not quantizers:
        return None
    consts = _constants(ref)
    names = [q.input[0] for q in quantizers]
    comp_names = [code_outputs[t][0] if t in code_outputs else t for t in names]
    comp_vals = dict(zip(names, run(comp, comp_names, feeds), strict=True))
    adjusted = onnx.ModelProto()
    adjusted.CopyFrom(ref)
    feeds = dict(feeds)
    sites: list[TieSite] = []
    ref_vals = dict(zip(names, run(adjusted, names, feeds), strict=True))
    for q in quantizers:
        if q.input[0] in code_outputs:
            x_ref = np.asarray(ref_vals[q.input[0]], np.float32)
            judged = _code_ties(q, x_ref, comp_vals[q.input[0]], code_outputs[q.input[0]][1], consts, rtol)
            if isinstance(judged, str):
                return TieAdjustment(adjusted, feeds, sites, judged)
            differ, fed = judged
            if differ.any():
                sites.append(TieSite(q.name, q.input[0], int(differ.sum())))
                feeds[_cut(adjusted, q.name, q.input[0])] = fed
                ref_vals = dict(zip(names, run(adjusted, names, feeds), strict=True))
            continue
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
