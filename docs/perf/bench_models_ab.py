"""bench_models before/after, interleaved in one process: ste-w1a1 vs its float twin."""

import json
import sys

import qcompile.runtime as rt
from qcompile.bench import bench_models

R = "/work/main/runs/reproduce/fashion-mnist-e2-n10000-w0.5"
libs = {"before": sys.argv[2], "after": rt.get_library_path()}
orig = rt.get_library_path
out = {"libraries": libs, "models": {}}
for v in ["ste-w1a1"]:
    res = {k: [] for k in libs}
    for r in range(3):
        for k, lib in libs.items():
            rt.get_library_path = lambda lib=lib: lib
            b = bench_models(
                f"{R}/{v}/seed0/model.q.onnx",
                f"{R}/float_reference.onnx",
                threads=(1,),
                repeats=300,
            )[0]
            res[k].append(b)
            print(k, v, "compiled/float %.3f" % (b["compiled_ms"] / b["reference_ms"]), flush=True)
    rt.get_library_path = orig
    out["models"][v] = {
        k: {"compiled_over_float": [b["compiled_ms"] / b["reference_ms"] for b in rs], "runs": rs}
        for k, rs in res.items()
    }
with open(sys.argv[1], "w") as f:
    json.dump(out, f, indent=1)
