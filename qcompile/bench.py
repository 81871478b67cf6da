"""Side-by-side latency of two models in one process: alternating runs, medians."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

import numpy as np
import onnx

from qcompile.modelio import load_proto
from qcompile.verify import random_inputs


def time_sessions(sessions: dict[str, object], feeds: dict[str, np.ndarray], repeats: int, warmup: int = 3) -> dict[str, float]:
    """Median milliseconds per run of each session, runs interleaved so drift hits all alike."""
    for _ in range(warmup):
        for sess in sessions.values():
            sess.run(None, feeds)
    samples: dict[str, list[float]] = {name: [] for name in sessions}
    for _ in range(repeats):
        for name, sess in sessions.items():
            t0 = time.perf_counter()
            sess.run(None, feeds)
            samples[name].append((time.perf_counter() - t0) * 1e3)
    return {name: float(np.median(v)) for name, v in samples.items()}


def bench_models(
    compiled: str | os.PathLike,
    reference: str | os.PathLike,
    *,
    threads: Sequence[int] = (1,),
    batch: int = 1,
    repeats: int = 30,
) -> list[dict]:
    from qcompile.runtime import InferenceSession

    comp: onnx.ModelProto = load_proto(compiled)
    ref: onnx.ModelProto = load_proto(reference)
    feeds = random_inputs(ref, batch=batch, seed=0)
    results = []
    for t in threads:
        sessions = {
            "compiled": InferenceSession(comp.SerializeToString(), threads=t),
            "reference": InferenceSession(ref.SerializeToString(), threads=t),
        }
        ms = time_sessions(sessions, feeds, repeats)
        results.append(
            {
                "threads": t,
                "batch": batch,
                "repeats": repeats,
                "compiled_ms": ms["compiled"],
                "reference_ms": ms["reference"],
                "speedup": ms["reference"] / ms["compiled"],
                "compiled_bytes": comp.ByteSize(),
                "reference_bytes": ref.ByteSize(),
            }
        )
    return results
