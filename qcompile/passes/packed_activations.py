"""Keep activations packed between consecutive binary layers.

After lowering, a binary layer feeding another one reads

    XnorConv (float) -> [MaxPool] -> [BatchNormalization] -> [Clip] -> [MaxPool] -> BinarizePack

(at most one MaxPool). This pass replaces the whole chain by

    XnorConvThreshold (packed bits out) -> [PackedMaxPool]

so no float tensor exists between the two layers. The reference graph is unchanged.

Exactness. With y = s*D + b the conv output for integer D, and g the BatchNorm (identity if none),
the reference's bit is +1 iff clip(g(y)) >= 0, which equals g(y) >= 0 for a Clip whose range contains
0 on both sides. g is monotone in y, so the bit is a monotone predicate of the integer D: one
threshold per channel, found by binary search over D in [-Dmax, Dmax] with the predicate evaluated in
exact rational arithmetic from the model's float32 parameters (sqrt compared by squaring), ties
(g(y) == 0 exactly) giving +1 as BipolarQuant does. A max-pool commutes with a non-decreasing map;
before a decreasing BatchNorm (gamma < 0) it turns into a min, i.e. an OR of bits, which
PackedMaxPool's or_mask selects per channel.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import onnx_ir as ir

from qcompile.base.domains import QCOMPILE_DOMAIN
from qcompile.base.ir_readers import const_array, float_attr, int_attr, is_qonnx
from qcompile.base.metadata import FOLDED_KEY, LAYER_KEY, REF_KEY, SIGN_BITS_ENCODING, ref_entry
from qcompile.passes.chains import maxpool_refusal, maxpool_window, single_use, walk_back
from qcompile.passes.report import PipelineRun
from qcompile.passes.rewrite import NamedPass

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


@dataclass
class Chain:
    conv: ir.Node  # the XnorConv, or the int8 epilogue's Add (then acc is set)
    pack: ir.Node
    pool: ir.Node | None = None
    pool_before_bn: bool = False
    bn: ir.Node | None = None
    clip: ir.Node | None = None
    acc: ir.Value | None = None  # an int8 conv's int32 sums (ConvInteger): Add(Mul(Cast(acc), s), b)

    def scale_bias(self) -> tuple[np.ndarray | None, np.ndarray | None]:
        """The per-channel s, b of y = s * D + b (XnorConv's inputs 2-3; the int8 epilogue's constants)."""
        if self.acc is None:
            return const_array(self.conv.inputs[2]), const_array(self.conv.inputs[3])
        return const_array(self.conv.inputs[0].producer().inputs[1]), const_array(self.conv.inputs[1])

    @property
    def folded(self) -> list[str]:
        ops = [n.op_type for n in (self.bn, self.clip) if n is not None]
        return [*ops, "BipolarQuant"]


def _clip_bounds(node: ir.Node) -> tuple[float, float] | None:
    lo = const_array(node.inputs[1]) if len(node.inputs) > 1 and node.inputs[1] is not None else None
    hi = const_array(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] is not None else None
    if (len(node.inputs) > 1 and node.inputs[1] is not None and lo is None) or (
        len(node.inputs) > 2 and node.inputs[2] is not None and hi is None
    ):
        return None
    return (float(lo) if lo is not None else -np.inf, float(hi) if hi is not None else np.inf)


def match_chain(pack: ir.Node) -> Chain | str:
    """The chain XnorConv -> ... -> `pack`, or why there is none."""
    walked = walk_back(pack, lambda n: (n.domain == "" and n.op_type in ("MaxPool", "BatchNormalization", "Clip"))
                       or is_qonnx(n, "BipolarQuant"))
    if isinstance(walked, str):
        return walked
    node, steps = walked
    if node is None:
        return "chain starts at a graph input"
    acc = _int8_conv_sums(node)
    if acc is None and (node.domain != QCOMPILE_DOMAIN or node.op_type != "XnorConv"):
        return f"{node.op_type} between the binary layers"
    chain = Chain(conv=node, pack=pack, acc=acc)
    order = [n.op_type for n in reversed(steps)]  # from the conv towards the pack
    if any(order.count(op) > 1 for op in ("MaxPool", "BatchNormalization", "Clip", "BipolarQuant")):
        return f"unsupported chain {order}"
    if "BipolarQuant" in order and any(op != "MaxPool" for op in order[order.index("BipolarQuant") + 1:]):
        return f"unsupported chain {order}: only a MaxPool may follow the BipolarQuant"
    for n in reversed(steps):
        if n.op_type == "BipolarQuant":
            # the reference's own sign quantizer, left in front of a MaxPool whose output the pack
            # binarizes again: with a positive scale it keeps every sign (x >= 0 -> +s, as the pack
            # reads v >= 0), and the max of signs is the sign of the max, so it folds away
            scale = const_array(n.inputs[1]) if len(n.inputs) > 1 else None
            if scale is None or scale.size != 1 or not float(scale.reshape(-1)[0]) > 0:
                return "BipolarQuant between the binary layers has no positive scalar scale"
        elif n.op_type == "MaxPool":
            reason = maxpool_refusal(n)
            if reason:
                return reason
            chain.pool = n
            chain.pool_before_bn = "BatchNormalization" in order and order.index("MaxPool") < order.index("BatchNormalization")
        elif n.op_type == "BatchNormalization":
            chain.bn = n
        else:
            chain.clip = n
    if chain.clip is not None and "BatchNormalization" in order and order.index("Clip") < order.index("BatchNormalization"):
        return "Clip before BatchNormalization"
    if chain.clip is not None:
        bounds = _clip_bounds(chain.clip)
        if bounds is None or not (bounds[0] < 0 <= bounds[1]):
            return "Clip range does not keep the sign"
    if chain.bn is not None:
        if int_attr(chain.bn, "training_mode", 0):
            return "BatchNormalization in training mode"
        if any(const_array(v) is None for v in chain.bn.inputs[1:5]):
            return "BatchNormalization parameters are not constant"
    scale, bias = chain.scale_bias()
    if scale is None or bias is None:
        return f"{'the int8 epilogue' if acc is not None else 'XnorConv'} scale/bias are not constant"
    if acc is not None and (scale.size != bias.size or scale.size != acc.producer().inputs[1].const_value.shape[0]):
        return "the int8 epilogue's scale/bias are not per output channel"
    return chain


def _int8_conv_sums(node: ir.Node) -> ir.Value | None:
    """acc when `node` is the epilogue Add(Mul(Cast(acc), s), b) the int8 lowering wrote after a
    ConvInteger (an 8-bit-input first layer feeding a binary one: Brevitas CNV 1w1a), else None."""
    if node.domain != "" or node.op_type != "Add" or LAYER_KEY not in node.metadata_props:
        return None
    mul = node.inputs[0].producer()
    cast = mul.inputs[0].producer() if mul is not None and mul.op_type == "Mul" else None
    acc = cast.inputs[0] if cast is not None and cast.op_type == "Cast" else None
    conv = acc.producer() if acc is not None else None
    if conv is None or conv.op_type != "ConvInteger" or conv.inputs[1].const_value is None:
        return None
    return acc if single_use(node.inputs[0]) and single_use(mul.inputs[0]) else None


def _bit_is_positive(d: int, s: Fraction, b: Fraction, bn: tuple[Fraction, ...] | None) -> bool:
    """Exactly: is the reference's pre-binarization value >= 0 for integer dot product d?"""
    y = s * d + b
    if bn is None:
        return y >= 0
    gamma, beta, mean, var_eps = bn
    u = gamma * (y - mean)  # z = u / sqrt(var_eps) + beta;  z >= 0  <=>  u + beta*sqrt(var_eps) >= 0
    if u >= 0 and beta >= 0:
        return True
    if u <= 0 and beta <= 0:
        return u == 0 and beta == 0
    if u >= 0:  # beta < 0
        return u * u >= beta * beta * var_eps
    return beta * beta * var_eps >= u * u  # u < 0 < beta


def channel_threshold(dmax: int, s: Fraction, b: Fraction, bn: tuple[Fraction, ...] | None) -> tuple[int, int]:
    """(threshold, direction) reproducing _bit_is_positive on every integer D in [-dmax, dmax]."""
    lo_pos, hi_pos = _bit_is_positive(-dmax, s, b, bn), _bit_is_positive(dmax, s, b, bn)
    if lo_pos == hi_pos:  # constant over the range (the predicate is monotone)
        return (INT32_MIN, 1) if lo_pos else (INT32_MAX, 1)
    lo, hi = -dmax, dmax  # invariant: predicate(lo) != predicate(hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _bit_is_positive(mid, s, b, bn) == hi_pos:
            hi = mid
        else:
            lo = mid
    return (hi, 1) if hi_pos else (lo, -1)


def thresholds_for(chain: Chain, dmax: int) -> tuple[np.ndarray, np.ndarray]:
    f = Fraction
    scale, bias = (a.astype(np.float32).reshape(-1) for a in chain.scale_bias())
    bn_params = None
    if chain.bn is not None:
        gamma, beta, mean, var = (const_array(v).astype(np.float32).reshape(-1) for v in chain.bn.inputs[1:5])
        eps = np.float32(float_attr(chain.bn, "epsilon", 1e-5))
        bn_params = (gamma, beta, mean, var, eps)
    th = np.empty(scale.size, np.int32)
    direction = np.empty(scale.size, np.int32)
    for m in range(scale.size):
        bn = None
        if bn_params is not None:
            gamma, beta, mean, var, eps = bn_params
            bn = (f(float(gamma[m])), f(float(beta[m])), f(float(mean[m])), f(float(var[m])) + f(float(eps)))
        th[m], direction[m] = channel_threshold(dmax, f(float(scale[m])), f(float(bias[m])), bn)
    return th, direction


def or_mask_for(chain: Chain, m: int, out_group: int) -> np.ndarray:
    """PackedMaxPool's or_mask: 1 for channels whose pool precedes a decreasing BatchNorm."""
    flip = np.zeros(m, np.uint8)
    if chain.pool_before_bn and chain.bn is not None:
        flip = (const_array(chain.bn.inputs[1]).reshape(-1) < 0).astype(np.uint8)
    from qcompile.ops.packing import pack_last_axis

    return pack_last_axis(flip.reshape(out_group, m // out_group)).reshape(-1)


class PackActivationsPass(NamedPass, ir.passes.InPlacePass):
    """Rewrite XnorConv -> [pool/BN/clip] -> BinarizePack chains into XnorConvThreshold (+PackedMaxPool).

    A BinarizePack whose chain cannot be rewritten is recorded, with the reason, in the compile report."""

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        graph = model.graph
        modified = False
        with PipelineRun.ensure() as run:
            for pack in [n for n in graph if n.domain == QCOMPILE_DOMAIN and n.op_type == "BinarizePack"]:
                if pack.graph is None:
                    continue
                chain = match_chain(pack)
                if isinstance(chain, str):
                    run.report.refuse(str(self), pack, chain)
                    continue
                refusal = self._rewrite(graph, chain)
                if refusal:
                    run.report.refuse(str(self), pack, refusal)
                else:
                    modified = True
        return ir.passes.PassResult(model, modified)

    def _rewrite(self, graph: ir.Graph, chain: Chain) -> str:
        """Rewrite the chain; '' when done, else why not (the graph is then unchanged)."""
        conv, pack = chain.conv, chain.pack
        out_group = int_attr(pack, "group", 1)
        if chain.acc is None:
            wp = const_array(conv.inputs[1])  # [M, KH, KW, Wg]
            m = wp.shape[0]
            dmax = int_attr(conv, "in_channels", 0) // int_attr(conv, "group", 1) * wp.shape[1] * wp.shape[2]
        else:  # ConvInteger's |D| <= K * 255 * 255 (int8_plan keeps that within int32)
            w_int = chain.acc.producer().inputs[1].const_value.numpy()
            m, dmax = w_int.shape[0], int(np.prod(w_int.shape[1:])) * 255 * 255
        if m % out_group:
            return f"{m} channels not divisible by group {out_group}"
        th, direction = thresholds_for(chain, dmax)
        layer = conv.metadata_props.get(LAYER_KEY, conv.name)

        def init(array: np.ndarray, suffix: str) -> ir.Value:
            value = ir.Value(name=f"{layer}/{suffix}", const_value=ir.tensor(array, name=f"{layer}/{suffix}"))
            graph.register_initializer(value)
            return value

        if chain.acc is None:
            attrs = [a for name, a in conv.attributes.items()] + [ir.AttrInt64("out_group", out_group)]
            new_conv = ir.Node(
                QCOMPILE_DOMAIN, "XnorConvThreshold",
                [conv.inputs[0], conv.inputs[1], init(th, "threshold"), init(direction, "direction")],
                attributes=attrs, name=conv.name,
            )
            table_node, extra = new_conv, []  # the table reads the folded ops from the layer's op
            folded = [f for f in conv.metadata_props.get(FOLDED_KEY, "").split(",") if f]
        else:  # the int8 conv stays; its sums are thresholded into the binary layer's bits
            new_conv = ir.Node(QCOMPILE_DOMAIN, "ThresholdPack",
                               [chain.acc, init(th, "threshold"), init(direction, "direction")],
                               attributes=[ir.AttrInt64("out_group", out_group)], name=f"{layer}/threshold_pack")
            table_node, extra = chain.acc.producer(), ["ThresholdPack"]
            folded = [f for f in table_node.metadata_props.get(FOLDED_KEY, "").split(",") if f]
        new_conv.metadata_props[LAYER_KEY] = layer
        table_node.metadata_props[FOLDED_KEY] = ",".join(folded + chain.folded + extra)
        new_nodes = [new_conv]
        out = new_conv.outputs[0]
        out.name = f"{layer}/bits"
        if chain.pool is not None:
            pool = chain.pool
            pool_attrs = [ir.AttrInt64s(name, v) for name, v in maxpool_window(pool).items()]
            pool_node = ir.Node(
                QCOMPILE_DOMAIN, "PackedMaxPool", [out, init(or_mask_for(chain, m, out_group), "or_mask")],
                attributes=pool_attrs, name=pool.name or f"{layer}/pool",
            )
            pool_node.outputs[0].name = f"{layer}/pooled_bits"
            new_nodes.append(pool_node)
            out = pool_node.outputs[0]
        # the last new node's bits are the sign of what the reference binarizes (the pack's input)
        sign_of = ref_entry(pack.inputs[0].name, SIGN_BITS_ENCODING, out_group)
        new_conv.metadata_props.pop(REF_KEY, None)
        new_nodes[-1].metadata_props[REF_KEY] = sign_of
        graph.insert_before(pack, new_nodes)
        pack.outputs[0].replace_all_uses_with(out)
        return ""
