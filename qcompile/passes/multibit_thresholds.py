"""Multi-bit layers write the next layer's codes: fold the float chain between two bit-serial layers.

After lowering and affine folding, a bit-serial layer feeding another one reads

    BitSerialConv/Gemm (float y = float(D)*s + b) -> [Mul/Add/Sub/Div by per-channel constants]
        -> [Relu/Clip] -> [Quant] -> [MaxPool] -> ... -> QuantizePack (the next layer's planes)

This pass replaces the chain by

    BitSerialConvThreshold / BitSerialGemmThreshold (packed codes out) -> [PlaneMaxPool]

A Reshape / Flatten of a conv output with a 1x1 image (CNV's last conv before its classifier: the
dense consumer reads in_features == M) is a no-op on the values, and on the packed codes too: with
one pixel, [N, 1, 1, P*Wg] and the dense [N, P*Kw] are the same words, so it becomes a Reshape of
the codes.

so no float tensor exists between the two layers (FINN's MultiThreshold, exact in the integer domain).
The reference graph is unchanged.

Exactness. The output code is a function f_m(D) of the integer dot product alone, per output channel
m. Its values on every reachable D (the range the layer's constant weights allow: each term
w*a with a in the activation planes' range, 0 for padding) are computed here by the numpy twins of
the very float32 ops the compiled graph ran (BitSerialConv's one multiply and one add, IEEE Mul /
Add / Sub / Div / Relu / Clip, QONNX Quant, QuantizePack's rounding) -- so the thresholds reproduce the
compiled float chain bit for bit on every input, not an approximation of it. Each op is monotone in
its input (float rounding is monotone), so f_m is too; it is checked on the whole range and the
rewrite refused when it is not. Level k is reached for D >= T[m, k] (non-decreasing f_m) or
D <= T[m, k] (non-increasing). A max-pool commutes with the monotone part before it; what follows
it decides max or min: a decreasing per-channel scale after the pool makes it a min of the codes,
which PlaneMaxPool's or_mask selects.

Rounding ties against the reference (a float conv, summed in another order) are the validator's to
judge: the threshold node records which reference quantizer its codes are the codes of
(CODES_KEY), and qcompile.tie_check reads them where the float tensor no longer exists.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import onnx_ir as ir

from qcompile.base.domains import QCOMPILE_DOMAIN
from qcompile.base.ir_readers import const_array, float_attr, int_attr, ints_attr, str_attr
from qcompile.base.metadata import FOLDED_KEY, LAYER_KEY, REF_KEY
from qcompile.ops.bitserial import act_codes, planes_needed, unpack_weight_planes
from qcompile.ops.packing import pack_last_axis, unpack_last_axis, words_for
from qcompile.ops.qonnx import int_range, quant
from qcompile.passes.chains import maxpool_refusal, maxpool_window, walk_back
from qcompile.passes.report import PipelineRun
from qcompile.passes.rewrite import NamedPass

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
# The threshold ops read D back exactly from float32 (custom_ops/SPEC.md): |D| <= 2^24.
EXACT_FLOAT_D = 2**24
# node metadata: the reference quantizer whose codes (v = q - zero point) the node writes
CODES_KEY = "qcompile.codes"
BITSERIAL_OPS = {"BitSerialConv": "BitSerialConvThreshold", "BitSerialGemm": "BitSerialGemmThreshold"}
_STEP_OPS = ("Mul", "Add", "Sub", "Div", "Relu", "Clip", "MaxPool", "Reshape", "Flatten")
_LAYOUT_OPS = ("Reshape", "Flatten")
_QUANT_OPS = ("Quant", "IntQuant")


@dataclass
class Chain:
    layer: ir.Node  # BitSerialConv / BitSerialGemm
    pack: ir.Node  # QuantizePack
    steps: list[ir.Node] = field(default_factory=list)  # from the layer towards the pack

    @property
    def pool(self) -> ir.Node | None:
        return next((n for n in self.steps if n.op_type == "MaxPool"), None)

    @property
    def conv(self) -> bool:
        return self.layer.op_type == "BitSerialConv"

    @property
    def flatten(self) -> ir.Node | None:
        return next((n for n in self.steps if n.op_type in _LAYOUT_OPS), None)

    def rank4(self, node: ir.Node) -> bool:
        """Does `node` read a conv-shaped [N, M, H, W] tensor (before any flatten)?"""
        flat = self.flatten
        return self.conv and (flat is None or self.steps.index(node) <= self.steps.index(flat))


def _is_quant(node: ir.Node) -> bool:
    return node.domain.startswith("qonnx") and node.op_type in _QUANT_OPS


def _per_channel(c: np.ndarray | None, m: int, conv: bool) -> np.ndarray | None:
    """A constant as a float32 [M] vector if it broadcasts per output channel, else None."""
    if c is None or c.dtype != np.float32:
        return None
    # a conv output is [N, M, H, W]: a plain [M] constant would broadcast along W, not M
    ok = c.size == 1 or (c.size == m and tuple(c.shape) in (((m, 1, 1), (1, m, 1, 1)) if conv else ((m,), (1, m))))
    return np.broadcast_to(c.reshape(-1), (m,)).astype(np.float32) if ok else None


def _pool_refusal(node: ir.Node) -> str:
    reason = maxpool_refusal(node)
    if reason:
        return reason
    k = ints_attr(node, "kernel_shape", [])
    pads, dil = ints_attr(node, "pads", [0, 0, 0, 0]), ints_attr(node, "dilations", [1, 1])
    if any(p >= d * (kk - 1) + 1 for p, kk, d in zip(pads, k + k, dil + dil, strict=True)):
        return "MaxPool pads reach a whole window (an all-padding window has no code)"
    return ""


def _step_refusal(node: ir.Node, m: int, conv: bool) -> str:
    if node.op_type in ("Mul", "Add", "Sub", "Div"):
        c = _per_channel(const_array(node.inputs[1]), m, conv)
        if c is None:
            return f"{node.op_type} by something other than a per-channel float constant"
        if not np.isfinite(c).all() or (node.op_type == "Div" and (c == 0).any()):
            return f"{node.op_type} by a non-finite constant or by 0 (no code for NaN)"
    elif node.op_type == "Clip":
        for v in node.inputs[1:]:
            if v is not None and const_array(v) is None:
                return "Clip bounds are not constant"
    elif node.op_type == "MaxPool":
        return "MaxPool after a dense layer" if not conv else _pool_refusal(node)
    elif node.op_type in _LAYOUT_OPS and not conv:
        return f"{node.op_type} after a dense layer"
    elif _is_quant(node) and (any(_per_channel(const_array(v), m, conv) is None for v in node.inputs[1:3])
                              or const_array(node.inputs[3]) is None):
        return "Quant parameters are not constant per channel"
    return ""


def match_chain(pack: ir.Node) -> Chain | str:
    """The chain BitSerialConv/Gemm -> ... -> `pack`, or why there is none."""
    walked = walk_back(pack, lambda n: (n.domain == "" and n.op_type in _STEP_OPS) or _is_quant(n))
    if isinstance(walked, str):
        return walked
    node, steps = walked
    if node is None:
        return "the pack reads a graph input"
    if node.domain != QCOMPILE_DOMAIN or node.op_type not in BITSERIAL_OPS:
        return f"{node.op_type} before the pack (only a bit-serial layer's float chain folds)"
    chain = Chain(layer=node, pack=pack, steps=steps[::-1])
    kinds = [n.op_type for n in chain.steps]
    if kinds.count("MaxPool") > 1 or sum(kinds.count(k) for k in _LAYOUT_OPS) > 1:
        return "more than one MaxPool or Reshape between the layers"
    if any(const_array(v) is None for v in node.inputs[1:4]):
        return f"{node.op_type} weights/scale/bias are not constant"
    m = const_array(node.inputs[2]).size
    for n in chain.steps:
        reason = _step_refusal(n, m, chain.rank4(n) if n.op_type not in _LAYOUT_OPS else chain.conv)
        if reason:
            return reason
    if chain.flatten is not None:
        reason = _flatten_refusal(chain, m)
        if reason:
            return reason
    return chain


def _flatten_refusal(chain: Chain, m: int) -> str:
    """'' when the chain's Reshape/Flatten flattens a 1x1 image for dense consumers, else why not."""
    flat = chain.flatten
    if chain.pool is not None and chain.steps.index(chain.pool) > chain.steps.index(flat):
        return "MaxPool after a Reshape"
    if int_attr(chain.pack, "group", 1) != 1:
        return "a grouped pack after a Reshape"
    if flat.op_type == "Flatten" and int_attr(flat, "axis", 1) != 1:
        return "Flatten with axis other than 1"
    if flat.op_type == "Reshape":
        shape = const_array(flat.inputs[1])
        if shape is None or shape.size != 2:
            return "Reshape to something other than a constant 2-D shape"
    users = [u.node for u in chain.pack.outputs[0].uses()]
    if not users or any(u.domain != QCOMPILE_DOMAIN or u.op_type != "BitSerialGemm"
                        or int_attr(u, "in_features", 0) != m for u in users):
        return "Reshape of a conv output that is not a 1x1 image read by dense layers (in_features == M)"
    return ''


# ---------------------------------------------------------------- the chain, evaluated exactly


def _apply(node: ir.Node, x: np.ndarray, m: int, conv: bool, ch: int) -> np.ndarray:
    """One step of the chain on channel `ch`'s float32 values x, exactly as onnxruntime computes it."""
    if node.op_type in ("Mul", "Add", "Sub", "Div"):
        c = _per_channel(const_array(node.inputs[1]), m, conv)[ch]
        ops = {"Mul": np.multiply, "Add": np.add, "Sub": np.subtract, "Div": np.divide}
        return ops[node.op_type](x, c, dtype=np.float32)
    if node.op_type == "Relu":
        return np.maximum(x, np.float32(0))
    if node.op_type == "Clip":
        lo = const_array(node.inputs[1]) if len(node.inputs) > 1 and node.inputs[1] is not None else None
        hi = const_array(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] is not None else None
        if lo is not None:
            x = np.maximum(x, np.float32(lo))
        return np.minimum(x, np.float32(hi)) if hi is not None else x
    if node.op_type == "MaxPool":
        return x  # commutes with the monotone chain (module docstring)
    if node.op_type in _LAYOUT_OPS:
        return x  # a 1x1 image: feature m is channel m
    scale, zp = (_per_channel(const_array(v), m, conv)[ch] for v in node.inputs[1:3])
    return quant(x, scale, zp, float(const_array(node.inputs[3])), signed=int_attr(node, "signed", 1),
                 narrow=int_attr(node, "narrow", 0), rounding_mode=str_attr(node, "rounding_mode", "ROUND"))


def _pack_attrs(pack: ir.Node) -> dict:
    return dict(scale=np.float32(float_attr(pack, "scale", 1.0)), zero_point=float_attr(pack, "zero_point", 0.0),
                bitwidth=int_attr(pack, "bitwidth", 8), signed=int_attr(pack, "signed", 0),
                narrow=int_attr(pack, "narrow", 0), rounding_mode=str_attr(pack, "rounding_mode", "ROUND"))


def channel_codes(chain: Chain, ch: int, d: np.ndarray) -> np.ndarray:
    """The code v = q - zero_point the compiled float chain gives channel `ch` for integer D values d."""
    layer = chain.layer
    scale, bias = (const_array(v).astype(np.float32).reshape(-1) for v in layer.inputs[2:4])
    x = np.add(np.multiply(d.astype(np.float32), scale[ch], dtype=np.float32), bias[ch], dtype=np.float32)
    for node in chain.steps:
        x = _apply(node, x, scale.size, chain.rank4(node), ch)
    return act_codes(x, **_pack_attrs(chain.pack))


def d_ranges(chain: Chain) -> tuple[np.ndarray, np.ndarray, int]:
    """Per channel, the least and greatest D the constant weights allow; and the op's worst |D|."""
    layer = chain.layer
    wp = const_array(layer.inputs[1])
    a_coeffs = ints_attr(layer, "act_coeffs", [])
    w_coeffs, w_off = ints_attr(layer, "weight_coeffs", []), int_attr(layer, "weight_offset", 0)
    a_lo, a_hi = sum(c for c in a_coeffs if c < 0), sum(c for c in a_coeffs if c > 0)
    if chain.conv:
        cg = int_attr(layer, "in_channels", 0) // int_attr(layer, "group", 1)
        w = unpack_weight_planes(wp, cg, w_coeffs, w_off).reshape(wp.shape[0], -1)
    else:
        k = int_attr(layer, "in_features", 0)
        bits = unpack_last_axis(wp.reshape(wp.shape[0], len(w_coeffs), words_for(k)), k)  # [M, Q, K]
        w = w_off + np.tensordot(bits.astype(np.int64), np.asarray(w_coeffs, np.int64), axes=([1], [0]))
    lo = np.minimum(w * a_lo, w * a_hi).sum(axis=1)
    hi = np.maximum(w * a_lo, w * a_hi).sum(axis=1)
    # what the op checks when it is created: terms x sum|act coeffs| x (sum|weight coeffs| + |offset|)
    worst = w.shape[1] * sum(abs(c) for c in a_coeffs) * (sum(abs(c) for c in w_coeffs) + abs(w_off))
    return lo, hi, worst


def thresholds_for(chain: Chain, out_base: int, levels: int) -> tuple[np.ndarray, np.ndarray] | str:
    """(thresholds [M, L], direction [M]) reproducing channel_codes on every reachable D, or why not."""
    lo, hi, _ = d_ranges(chain)
    m = lo.size
    th = np.empty((m, levels), np.int64)
    direction = np.ones(m, np.int32)
    wanted = out_base + 1 + np.arange(levels)  # level k is code out_base + k + 1
    for ch in range(m):
        d = np.arange(lo[ch], hi[ch] + 1, dtype=np.int64)
        v = channel_codes(chain, ch, d)
        step = np.diff(v)
        if (step < 0).any() and (step > 0).any():
            return f"channel {ch}: the code is not monotone in the dot product (float rounding); not provable"
        if (step < 0).any():  # non-increasing: level reached for D <= the largest D reaching it
            direction[ch] = -1
            reached = v[None, :] >= wanted[:, None]  # [L, R], a prefix of D for each level
            last = reached.shape[1] - 1 - np.argmax(reached[:, ::-1], axis=1)
            th[ch] = np.where(~reached.any(axis=1), INT32_MIN, np.where(reached.all(axis=1), INT32_MAX, d[last]))
        else:  # non-decreasing: level reached for D >= the smallest D reaching it
            reached = v[None, :] >= wanted[:, None]
            first = np.argmax(reached, axis=1)
            th[ch] = np.where(~reached.any(axis=1), INT32_MAX, np.where(reached.all(axis=1), INT32_MIN, d[first]))
    return th.astype(np.int32), direction


def pool_uses_min(chain: Chain) -> np.ndarray:
    """Per channel: does the chain after the MaxPool decrease (so the pool becomes a min of codes)?"""
    m = const_array(chain.layer.inputs[2]).size
    after = chain.steps[chain.steps.index(chain.pool) + 1:]
    sign = np.ones(m)
    for node in after:
        if node.op_type in ("Mul", "Div"):  # Add, Sub, Relu, Clip and Quant (scale > 0) do not decrease
            sign *= np.sign(_per_channel(const_array(node.inputs[1]), m, chain.rank4(node)))
    return sign < 0


def codes_entry(chain: Chain, planes: int, signed: bool, group: int) -> str | None:
    """CODES_KEY for the threshold node: the reference quantizer whose codes it writes, when there
    is exactly one (the pack itself, or a Quant followed by nothing but a MaxPool and a pack on
    the same grid); None otherwise."""
    quants = [n for n in chain.steps if _is_quant(n)]
    if not quants:
        if chain.pool is not None:
            return None
        tensor = chain.pack.inputs[0].name
        producer = chain.pack.inputs[0].producer()
        if producer is not None and producer.op_type in _LAYOUT_OPS:
            tensor = producer.inputs[0].name  # the reference quantizes before the flatten
    else:
        q = quants[0]
        rest = chain.steps[chain.steps.index(q) + 1:]
        if any(n.op_type != "MaxPool" for n in rest):
            return None
        tensor = q.inputs[0].name
        producer = q.inputs[0].producer()
        if producer is not None and producer.op_type in _LAYOUT_OPS:
            # a quantizer hoisted after the flatten reads, in the reference, the tensor before it
            tensor = producer.inputs[0].name
        scale, zp, bits = (const_array(v) for v in q.inputs[1:4])
        pa = _pack_attrs(chain.pack)
        same_grid = (scale.size == 1 and zp.size == 1 and np.float32(scale.reshape(-1)[0]) == pa["scale"]
                     and float(zp.reshape(-1)[0]) == pa["zero_point"] and int(bits) == pa["bitwidth"]
                     and int_attr(q, "signed", 1) == pa["signed"] and int_attr(q, "narrow", 0) == pa["narrow"]
                     and str_attr(q, "rounding_mode", "ROUND") == pa["rounding_mode"])
        if not same_grid:
            return None
    return json.dumps({"tensor": tensor, "planes": planes, "signed": int(signed), "group": group}, sort_keys=True)


class MultibitThresholdsPass(NamedPass, ir.passes.InPlacePass):
    """Rewrite BitSerialConv/Gemm -> [affine/clip/quant/pool] -> QuantizePack chains into
    BitSerialConvThreshold / BitSerialGemmThreshold (+ PlaneMaxPool).

    A QuantizePack whose chain cannot be rewritten is recorded, with the reason, in the compile report."""

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        graph = model.graph
        modified = False
        with PipelineRun.ensure() as run:
            for pack in [n for n in graph if n.domain == QCOMPILE_DOMAIN and n.op_type == "QuantizePack"]:
                if pack.graph is None:
                    continue
                chain = match_chain(pack)
                refusal = chain if isinstance(chain, str) else self._rewrite(graph, chain)
                if refusal:
                    if not refusal.startswith("the pack reads"):
                        run.report.refuse(str(self), pack, refusal)
                else:
                    modified = True
        return ir.passes.PassResult(model, modified)

    def _rewrite(self, graph: ir.Graph, chain: Chain) -> str:
        """Rewrite the chain; '' when done, else why not (the graph is then unchanged)."""
        layer, pack = chain.layer, chain.pack
        pa = _pack_attrs(pack)
        qmin, qmax = (int(v) for v in int_range(pa["bitwidth"], pa["signed"], pa["narrow"]))
        zp = int(pa["zero_point"])
        out_base, levels = qmin - zp, qmax - qmin
        if levels < 1 or levels > 255:
            return f"{levels + 1} output levels (1-8 bit codes are folded)"
        needed, signed = planes_needed(out_base, qmax - zp)
        planes = int_attr(pack, "planes", 0) or needed
        group = int_attr(pack, "group", 1)
        m = const_array(layer.inputs[2]).size
        if m % group:
            return f"{m} channels not divisible by the pack's group {group}"
        _, _, worst = d_ranges(chain)
        if worst > EXACT_FLOAT_D:
            return f"the dot product can reach {worst}, more than the 2^24 the threshold ops hold exactly"
        found = thresholds_for(chain, out_base, levels)
        if isinstance(found, str):
            return found
        th, direction = found
        name = layer.metadata_props.get(LAYER_KEY, layer.name)

        def init(array: np.ndarray, suffix: str) -> ir.Value:
            value = ir.Value(name=f"{name}/{suffix}", const_value=ir.tensor(array, name=f"{name}/{suffix}"))
            graph.register_initializer(value)
            return value

        attrs = [a for key, a in layer.attributes.items()] + [
            ir.AttrInt64("out_base", out_base), ir.AttrInt64("out_planes", planes)]
        if chain.conv:
            attrs.append(ir.AttrInt64("out_group", group))
        node = ir.Node(QCOMPILE_DOMAIN, BITSERIAL_OPS[layer.op_type],
                       [layer.inputs[0], layer.inputs[1], init(th, "thresholds"), init(direction, "direction")],
                       attributes=attrs, name=layer.name)
        node.metadata_props[LAYER_KEY] = name
        folded = [f for f in layer.metadata_props.get(FOLDED_KEY, "").split(",") if f]
        node.metadata_props[FOLDED_KEY] = ",".join(folded + [n.op_type for n in chain.steps] + ["QuantizePack"])
        entry = codes_entry(chain, planes, signed, group)
        if entry is not None:
            node.metadata_props[CODES_KEY] = entry
        node.outputs[0].name = f"{name}/codes"
        new_nodes, out = [node], node.outputs[0]
        if chain.pool is not None:
            pool = chain.pool
            flags = pool_uses_min(chain).astype(np.uint8)
            or_mask = pack_last_axis(flags.reshape(group, m // group)).reshape(-1)
            pool_node = ir.Node(
                QCOMPILE_DOMAIN, "PlaneMaxPool", [out, init(or_mask, "or_mask")],
                attributes=[*(ir.AttrInt64s(name, v) for name, v in maxpool_window(pool).items()),
                            ir.AttrInt64("planes", planes), ir.AttrInt64("group", group),
                            ir.AttrInt64("signed", int(signed))],
                name=pool.name or f"{name}/pool")
            pool_node.outputs[0].name = f"{name}/pooled_codes"
            pool_node.metadata_props[LAYER_KEY] = name
            new_nodes.append(pool_node)
            out = pool_node.outputs[0]
        if chain.flatten is not None:  # [N, 1, 1, P*Wg] -> [N, P*Kw]: the same words
            shape = init(np.array([0, -1], np.int64), "flat_shape")
            flat = ir.Node("", "Reshape", [out, shape], name=f"{name}/flatten_codes")
            flat.outputs[0].name = f"{name}/flat_codes"
            new_nodes.append(flat)
            out = flat.outputs[0]
        node.metadata_props.pop(REF_KEY, None)
        graph.insert_before(pack, new_nodes)
        pack.outputs[0].replace_all_uses_with(out)
        return ""
