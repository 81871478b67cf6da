"""Side-by-side latency of two models in one process: alternating runs, median and spread."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Sequence

import numpy as np
import onnx

from qcompile.base.domains import QCOMPILE_DOMAIN
from qcompile.modelio import load_proto
from qcompile.verify import check_feeds, random_inputs, run_session


def time_sessions_samples(sessions: dict[str, object], feeds: dict[str, np.ndarray], repeats: int,
                          warmup: int = 3) -> dict[str, list[float]]:
    """Milliseconds of every timed run of each session, runs interleaved so drift hits all alike."""
    for _ in range(warmup):
        for name, sess in sessions.items():
            run_session(sess, feeds, f"the {name}")
    samples: dict[str, list[float]] = {name: [] for name in sessions}
    for _ in range(repeats):
        for name, sess in sessions.items():
            t0 = time.perf_counter()
            sess.run(None, feeds)
            samples[name].append((time.perf_counter() - t0) * 1e3)
    return samples


def time_sessions(sessions: dict[str, object], feeds: dict[str, np.ndarray], repeats: int, warmup: int = 3) -> dict[str, float]:
    """Median milliseconds per run of each session."""
    return {name: float(np.median(v)) for name, v in time_sessions_samples(sessions, feeds, repeats, warmup).items()}


def spread(samples: list[float]) -> dict[str, float]:
    """Median and the spread around it, in milliseconds."""
    a = np.asarray(samples)
    p10, p25, p50, p75, p90 = np.percentile(a, [10, 25, 50, 75, 90])
    return {"median": float(p50), "p10": float(p10), "p90": float(p90), "iqr": float(p75 - p25),
            "min": float(a.min()), "max": float(a.max())}


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo), as benchmarks and the cost cache record it."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_name() -> str:
    return f"{cpu_model()} ({os.cpu_count()} logical CPUs)"


def _sessions(comp: onnx.ModelProto, ref: onnx.ModelProto, threads: int) -> dict[str, object]:
    from qcompile.verify import open_session

    return {"compiled": open_session(comp, threads, "the compiled"), "reference": open_session(ref, threads, "the reference")}


def bench(
    compiled: str | os.PathLike,
    reference: str | os.PathLike,
    *,
    threads: Sequence[int] = (1,),
    batch: int = 1,
    repeats: int = 30,
) -> dict:
    """Time a compiled model against its reference or float model; the `qcompile.bench/1` report."""
    from qcompile.runtime import KERNEL_OPS, kernel_variants, selected_kernel

    comp, ref = load_proto(compiled), load_proto(reference)
    feeds = check_feeds(comp, random_inputs(ref, batch=batch, seed=0), f"inputs made for {reference}")
    runs = []
    for t in threads:
        samples = time_sessions_samples(_sessions(comp, ref, t), feeds, repeats)
        c, r = spread(samples["compiled"]), spread(samples["reference"])
        runs.append({"threads": t, "batch": batch, "repeats": repeats, "compiled_ms": c, "reference_ms": r,
                     "speedup": r["median"] / c["median"]})
    return {
        "schema": "qcompile.bench/1", "compiled": str(compiled), "reference": str(reference),
        "cpu": cpu_name(),
        # per qcompile op of the compiled model that has kernel variants: the one its nodes run
        # (unless a node's `kernel` attribute names another) and all this CPU runs
        "kernels": {op: {"selected": selected_kernel(op), "supported": kernel_variants(op)}
                    for op in sorted({n.op_type for n in comp.graph.node if n.domain == QCOMPILE_DOMAIN})
                    if op in KERNEL_OPS},
        "compiled_bytes": comp.ByteSize(), "reference_bytes": ref.ByteSize(),
        "inputs": {k: list(v.shape) for k, v in feeds.items()}, "runs": runs,
    }


def bench_models(
    compiled: str | os.PathLike,
    reference: str | os.PathLike,
    *,
    threads: Sequence[int] = (1,),
    batch: int = 1,
    repeats: int = 30,
) -> list[dict]:
    """One flat row per thread count (medians), as tools/ scripts read it."""
    report = bench(compiled, reference, threads=threads, batch=batch, repeats=repeats)
    return [
        {"threads": r["threads"], "batch": r["batch"], "repeats": r["repeats"],
         "compiled_ms": r["compiled_ms"]["median"], "reference_ms": r["reference_ms"]["median"],
         "speedup": r["speedup"], "compiled_bytes": report["compiled_bytes"],
         "reference_bytes": report["reference_bytes"]}
        for r in report["runs"]
    ]
