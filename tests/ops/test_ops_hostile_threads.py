"""8 threads sharing one InferenceSession over every op family (XNOR, threshold, packed max-pool,
bit-serial, SHIFT, the quantizers and the QONNX reference ops), weights as constant initializers
so the kernels' prepared weights are shared too: every output identical to a one-thread run of
the same inputs. tools/sanitize.sh runs it on the AddressSanitizer build."""

from __future__ import annotations

import threading

import hostile_ops
import numpy as np
import onnx
from onnx import helper, numpy_helper

from qcompile import runtime

THREADS, ROUNDS = 8, 12


def _all_ops_model() -> tuple[bytes, dict[str, np.ndarray]]:
    """One graph holding every base spec's node, its inputs and outputs prefixed by the op."""
    nodes, ins, outs, inits, feeds = [], [], [], [], {}
    for spec in hostile_ops.base_specs():
        p = spec.op + "_"
        node = helper.make_node(spec.op, [p + n for n in spec.inputs], [p + "Y"], domain=spec.domain,
                                name=p + "node", **spec.attrs)
        nodes.append(node)
        for n, a in spec.inputs.items():
            if n in spec.constant:
                inits.append(numpy_helper.from_array(a, p + n))
            else:
                ins.append(helper.make_tensor_value_info(p + n, hostile_ops.TYPE_OF[a.dtype], None))
                feeds[p + n] = a
        outs.append(helper.make_tensor_value_info(p + "Y", spec.outputs[0], None))
    graph = helper.make_graph(nodes, "all_ops", ins, outs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("qcompile", 1),
                                                    helper.make_opsetid(hostile_ops.QONNX, 1)])
    model.ir_version = 8
    return model.SerializeToString(), feeds


def _feeds(base: dict[str, np.ndarray], seed: int) -> dict[str, np.ndarray]:
    """The base inputs with float tensors redrawn and packed ones permuted along the batch."""
    rng = np.random.default_rng(seed)
    out = {}
    for n, a in base.items():
        if a.dtype == np.float32 and not n.endswith(("scale", "zeropt", "bitwidth")):
            out[n] = rng.standard_normal(a.shape).astype(np.float32)
        elif a.dtype == np.uint64 and a.ndim > 1:
            out[n] = a[rng.permutation(a.shape[0])]
        else:
            out[n] = a
    return out


def test_eight_threads_one_session_match_one_thread():
    model, base = _all_ops_model()
    sess_ops = {n.op_type for n in onnx.load_from_string(model).graph.node}
    assert sess_ops == {s.op for s in hostile_ops.base_specs()} and len(sess_ops) == 25
    shared = runtime.InferenceSession(model, threads=2)  # ORT's pool inside each run too
    single = runtime.InferenceSession(model, threads=1)
    work = [[_feeds(base, 1000 * t + r) for r in range(ROUNDS)] for t in range(THREADS)]
    want = [[single.run(None, f) for f in rounds] for rounds in work]
    got: list[list] = [[None] * ROUNDS for _ in range(THREADS)]
    errors: list[BaseException] = []
    start = threading.Barrier(THREADS)

    def body(t: int) -> None:
        try:
            start.wait()
            for r in range(ROUNDS):
                got[t][r] = shared.run(None, work[t][r])
        except BaseException as e:  # reported below; a thread must not die silently
            errors.append(e)

    threads = [threading.Thread(target=body, args=(t,)) for t in range(THREADS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=300)
    assert not any(th.is_alive() for th in threads), "a thread hung"
    assert not errors, errors[0]
    names = [o.name for o in shared.get_outputs()]
    for t in range(THREADS):
        for r in range(ROUNDS):
            for name, g, w in zip(names, got[t][r], want[t][r], strict=True):
                assert g.dtype == w.dtype and g.shape == w.shape, name
                assert g.tobytes() == w.tobytes(), f"{name} differs in thread {t}, round {r}"
