"""Per-node time of compiled models next to their float twin, from onnxruntime's profiler.

Each model runs in its own session (qcompile's op library registered, `--threads` intra-op
threads, batch `--batch`) with SessionOptions.enable_profiling; the runs of all sessions are
interleaved so that drift on a shared machine hits every model alike. The JSON trace of each
session is parsed: every node's "<node>_kernel_time" events give its median time over the runs,
aggregated by node and by op type, and "model_run" the median time of a whole run. Wall-clock
medians come from separate sessions without profiling, timed in the same interleaved rounds, and
the ratio compiled / float of those is what the table's header reports.

With --baseline-lib OLD.so every compiled model is profiled a second time with that build of
the op library ("<name>@baseline"), in the same rounds: before/after side by side.

    python tools/profile_model.py --float float.onnx --model w2a2=model.q.onnx --out prof.json
    python tools/profile_model.py --float f.onnx --model a=a.q.onnx --model b=b.q.onnx \\
        --baseline-lib /tmp/base/libqcompile_ops.so --markdown docs/perf/profile.md
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import click
import numpy as np
import onnxruntime as ort

from qcompile import runtime
from qcompile.modelio import load_proto
from qcompile.verify import random_inputs

FLOAT = "float"
BASELINE = "@baseline"


def _options(threads: int, library: str | None, profile_prefix: str | None) -> ort.SessionOptions:
    if library is None:
        so = runtime.session_options(threads=threads)
    else:
        so = ort.SessionOptions()
        so.log_severity_level = 3
        so.register_custom_ops_library(library)
        so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    if profile_prefix is not None:
        so.enable_profiling = True
        so.profile_file_prefix = profile_prefix
    return so


def _session(model: bytes, threads: int, library: str | None, profile_prefix: str | None):
    so = _options(threads, library, profile_prefix)
    return ort.InferenceSession(model, sess_options=so, providers=["CPUExecutionProvider"])


def parse_trace(path: str | os.PathLike, op_types: dict[str, str], skip: int = 0) -> dict:
    """Median per node / op type (microseconds) over the runs recorded in an ORT profile, after
    the first `skip` (warm-up) runs of each node."""
    with open(path) as f:
        events = json.load(f)
    per_node: dict[str, list[float]] = defaultdict(list)
    node_op: dict[str, str] = {}
    runs: list[float] = []
    for ev in events:
        if ev.get("cat") == "Session" and ev.get("name") == "model_run":
            runs.append(float(ev["dur"]))
        if ev.get("cat") != "Node" or not ev.get("name", "").endswith("_kernel_time"):
            continue
        node = ev["name"][: -len("_kernel_time")]
        per_node[node].append(float(ev["dur"]))
        node_op[node] = ev.get("args", {}).get("op_name") or op_types.get(node, "?")
    nodes = []
    runs = runs[skip:] if len(runs) > skip else runs
    for node, durs in per_node.items():
        durs = durs[skip:] if len(durs) > skip else durs
        nodes.append({"node": node, "op_type": node_op[node], "median_us": statistics.median(durs),
                      "calls": len(durs)})
    nodes.sort(key=lambda r: -r["median_us"])
    kernel_total = sum(r["median_us"] for r in nodes)
    by_op: dict[str, dict] = {}
    for r in nodes:
        o = by_op.setdefault(r["op_type"], {"op_type": r["op_type"], "nodes": 0, "median_us": 0.0})
        o["nodes"] += 1
        o["median_us"] += r["median_us"]
    ops = sorted(by_op.values(), key=lambda r: -r["median_us"])
    for r in nodes + ops:
        r["share"] = r["median_us"] / kernel_total if kernel_total else 0.0
    run_us = statistics.median(runs) if runs else float("nan")
    return {
        "model_run_median_us": run_us,
        "kernel_sum_us": kernel_total,
        "overhead_us": run_us - kernel_total,
        "by_op_type": ops,
        "by_node": nodes,
    }


def profile(
    models: dict[str, str], float_path: str, threads: int, batch: int, runs: int, warmup: int,
    baseline_lib: str | None,
) -> dict:
    protos = {name: load_proto(p) for name, p in models.items()}
    ref = load_proto(float_path)
    feeds = random_inputs(ref, batch=batch, seed=0)
    contenders: dict[str, tuple[bytes, str | None]] = {FLOAT: (ref.SerializeToString(), None)}
    for name, proto in protos.items():
        contenders[name] = (proto.SerializeToString(), None)
        if baseline_lib:
            contenders[name + BASELINE] = (proto.SerializeToString(), baseline_lib)
    op_types = {n.name: n.op_type for p in [ref, *protos.values()] for n in p.graph.node}

    tmp = tempfile.mkdtemp(prefix="qc_profile_")
    profiled = {
        name: _session(m, threads, lib, os.path.join(tmp, name.replace("@", "_").replace("/", "_")))
        for name, (m, lib) in contenders.items()
    }
    plain = {name: _session(m, threads, lib, None) for name, (m, lib) in contenders.items()}
    for _ in range(warmup):
        for s in [*plain.values(), *profiled.values()]:
            s.run(None, feeds)
    wall: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(runs):
        for name, s in plain.items():
            t0 = time.perf_counter()
            s.run(None, feeds)
            wall[name].append((time.perf_counter() - t0) * 1e6)
        for s in profiled.values():
            s.run(None, feeds)
    result: dict[str, dict] = {}
    for name, s in profiled.items():
        trace = s.end_profiling()
        prof = parse_trace(trace, op_types, skip=warmup)
        os.remove(trace)
        prof["wall_median_us"] = statistics.median(wall[name])
        result[name] = prof
    os.rmdir(tmp)  # the traces were removed as they were read
    float_us = result[FLOAT]["wall_median_us"]
    for prof in result.values():
        prof["wall_vs_float"] = prof["wall_median_us"] / float_us
    return result


def format_table(name: str, prof: dict, float_prof: dict, top: int) -> str:
    lines = [
        (f"### {name}: {prof['wall_median_us']:.0f} us vs float {float_prof['wall_median_us']:.0f} us "
         f"(wall median), {prof['wall_vs_float']:.2f}x float"),
        "",
        (f"model_run {prof['model_run_median_us']:.0f} us, kernels {prof['kernel_sum_us']:.0f} us, "
         f"between kernels {prof['overhead_us']:.0f} us; float: model_run "
         f"{float_prof['model_run_median_us']:.0f} us, kernels {float_prof['kernel_sum_us']:.0f} us"),
        "",
        "| op type | nodes | median us | share |  | float op type | nodes | median us | share |",
        "|---|---:|---:|---:|---|---|---:|---:|---:|",
    ]
    a, b = prof["by_op_type"], float_prof["by_op_type"]
    for i in range(max(len(a), len(b))):
        left = f"| {a[i]['op_type']} | {a[i]['nodes']} | {a[i]['median_us']:.1f} | {a[i]['share']:.0%} |" \
            if i < len(a) else "| | | | |"
        right = f" | {b[i]['op_type']} | {b[i]['nodes']} | {b[i]['median_us']:.1f} | {b[i]['share']:.0%} |" \
            if i < len(b) else " | | | | |"
        lines.append(left + right)
    lines += ["", "| node | op type | median us | share |", "|---|---|---:|---:|"]
    for r in prof["by_node"][:top]:
        lines.append(f"| {r['node']} | {r['op_type']} | {r['median_us']:.1f} | {r['share']:.0%} |")
    return "\n".join(lines) + "\n"


def _pair(value: str) -> tuple[str, str]:
    if "=" not in value:
        return Path(value).parent.name or Path(value).stem, value
    name, path = value.split("=", 1)
    return name, path


@click.command()
@click.option("--model", "model_specs", multiple=True, required=True,
              help="NAME=PATH of a compiled model (repeatable)")
@click.option("--float", "float_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="the float twin, profiled in the same rounds")
@click.option("--threads", type=click.IntRange(1), default=1, show_default=True)
@click.option("--batch", type=click.IntRange(1), default=1, show_default=True)
@click.option("--runs", type=click.IntRange(5), default=300, show_default=True)
@click.option("--warmup", type=click.IntRange(0), default=20, show_default=True)
@click.option("--top", type=click.IntRange(1), default=8, show_default=True, help="nodes per table")
@click.option("--baseline-lib", type=click.Path(exists=True, dir_okay=False), default=None,
              help="another libqcompile_ops.so: each compiled model again as NAME@baseline")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="JSON file for every figure")
@click.option("--markdown", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="also write the tables here")
def main(model_specs, float_path, threads, batch, runs, warmup, top, baseline_lib, out, markdown):
    """Profile compiled models and their float twin per node (onnxruntime profiler)."""
    models = dict(_pair(s) for s in model_specs)
    for path in models.values():
        if not Path(path).is_file():
            raise click.BadParameter(f"expected a model file, got {path!r}", param_hint="--model")
    result = profile(models, float_path, threads, batch, runs, warmup, baseline_lib)
    text = [
        f"# Per-node profile: batch {batch}, {threads} thread(s), median of {runs} runs "
        f"(onnxruntime {ort.__version__}, {platform.processor() or platform.machine()}, "
        f"library {runtime.get_library_path()}"
        + (f", baseline {baseline_lib}" if baseline_lib else "") + ")",
        "",
        "| model | wall median us | x float | model_run us | kernels us |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, p in result.items():
        text.append(f"| {name} | {p['wall_median_us']:.0f} | {p['wall_vs_float']:.2f} | "
                    f"{p['model_run_median_us']:.0f} | {p['kernel_sum_us']:.0f} |")
    text.append("")
    for name, p in result.items():
        if name != FLOAT:
            text.append(format_table(name, p, result[FLOAT], top))
    table = "\n".join(text)
    click.echo(table)
    meta = {
        "threads": threads, "batch": batch, "runs": runs, "warmup": warmup,
        "onnxruntime": ort.__version__, "library": runtime.get_library_path(),
        "baseline_lib": baseline_lib, "float": float_path, "models": models,
        "numpy": np.__version__,
    }
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"meta": meta, "profiles": result}, indent=1) + "\n")
        click.echo(f"wrote {out}")
    if markdown:
        markdown.parent.mkdir(parents=True, exist_ok=True)
        markdown.write_text(table)
        click.echo(f"wrote {markdown}")


if __name__ == "__main__":
    main()
