"""The op library's hostile-input corpus (tests/hostile_ops.py): every qcompile and QONNX reference
op with malformed attributes, shapes, dtypes, omitted inputs, wrong ranks, zero and huge dims and
NaN/Inf values, each case in a worker process so a crash or hang is counted against its case
instead of killing the test run. Every case must end in a clean onnxruntime error or a result
equal to the numpy twin's. tools/sanitize.sh runs the same corpus on the AddressSanitizer build.
"""

from __future__ import annotations

import json

import hostile_ops
import numpy as np
import pytest

from qcompile import runtime


def test_corpus_has_no_crash_hang_or_unclean_error():
    report = hostile_ops.run_corpus()
    bad = [r for r in report["results"] if r["outcome"] in hostile_ops.FAILURES]
    print(json.dumps({k: v for k, v in report.items() if k != "results"}))
    assert report["cases"] >= 500
    assert not bad, "\n".join(f"{r['outcome']}: {r['id']}: {r['detail']}" for r in bad[:20])
    # Both kinds of ending occur: the corpus is not all refusals, nor all accepted.
    assert report["counts"].get("error", 0) >= 300 and report["counts"].get("ok", 0) >= 100


def test_corpus_covers_every_op_and_input_position():
    ids = [c.id for c in hostile_ops.cases()]
    ops = {i.split("/")[0] for i in ids}
    assert ops == {s.op for s in hostile_ops.base_specs()}
    assert len(ops) == 25
    for spec in hostile_ops.base_specs():
        for name in spec.inputs:
            assert f"{spec.op}/omit_input_{name}" in ids


def test_runner_attributes_a_crash_and_a_hang_to_their_case():
    ids = ["XnorConv/valid", hostile_ops.SELFTEST_CRASH, "XnorConv/omit_input_W",
           hostile_ops.SELFTEST_HANG, "Quant/valid"]
    # a generous limit: a case starts a process (about 1.5 s, more under ASan on a loaded machine)
    report = hostile_ops.run_corpus(ids, case_timeout=12.0)
    got = {r["id"]: r["outcome"] for r in report["results"]}
    assert got == {"XnorConv/valid": "ok", hostile_ops.SELFTEST_CRASH: "crash",
                   "XnorConv/omit_input_W": "error", hostile_ops.SELFTEST_HANG: "hang",
                   "Quant/valid": "ok"}


@pytest.mark.parametrize("position", range(4))
def test_omitted_input_is_refused_when_the_session_is_created(position):
    """Stock onnxruntime's lite API marks every input optional; the library declares them
    required, so an omitted one is a load error naming the node, never a null tensor."""
    spec = next(s for s in hostile_ops.base_specs() if s.op == "ShiftConv")
    names = list(spec.inputs)
    case = hostile_ops.Case("t", spec, node_inputs=[("" if i == position else n) for i, n in enumerate(names)])
    model, _ = hostile_ops.build_model(case)
    with pytest.raises(Exception, match="marked single but has an empty string"):
        runtime.InferenceSession(model.SerializeToString())


def test_model_builder_keeps_the_valid_case_valid():
    model, feeds = hostile_ops.build_model(hostile_ops.Case("t", hostile_ops.base_specs()[1]))
    (y,) = runtime.InferenceSession(model.SerializeToString()).run(None, feeds)
    assert y.shape == (1, 8, 5, 5) and np.isfinite(y).all()
