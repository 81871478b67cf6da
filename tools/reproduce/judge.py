"""Aggregation over seeds and the claim judge."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from .experiments import EXPERIMENTS, Claim

METRICS = ("pytorch_acc", "reference_acc", "compiled_acc", "differing_compiled_vs_reference",
           "differing_compiled_vs_pytorch", "differing_reference_vs_pytorch",
           "size_ratio_vs_reference", "size_ratio_vs_float", "latency_ratio_vs_float",
           "latency_ratio_vs_reference", "compiled_bytes", "reference_bytes")


def mean_std(vals: list[float]) -> tuple[float | None, float | None]:
    vals = [v for v in vals if v is not None]
    if not vals:
        return None, None
    m = sum(vals) / len(vals)
    sd = math.sqrt(sum((v - m) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0
    return m, sd


def load_results(root: Path, seeds: int) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for e in EXPERIMENTS:
        runs = []
        for k in range(seeds):
            p = root / e.name / f"seed{k}" / "result.json"
            if p.is_file():
                runs.append(json.loads(p.read_text()))
        out[e.name] = runs
    return out


def aggregate(results: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    rows = []
    for e in EXPERIMENTS:
        runs = results.get(e.name, [])
        agg: dict[str, Any] = {"name": e.name, "groups": list(e.groups), "method": e.method,
                               "wbits": e.wbits, "abits": e.abits, "series": e.series,
                               "overrides": dict(e.overrides), "note": e.note,
                               "seeds": [r["seed"] for r in runs], "n": len(runs)}
        for m in METRICS:
            mu, sd = mean_std([r.get(m) for r in runs])
            agg[m] = {"mean": mu, "std": sd}
        agg["compiled"] = bool(runs) and all(r["compiled"] for r in runs)
        agg["lowered"] = runs[0]["compile"]["lowered"] if runs else None
        agg["compile_error"] = runs[0]["compile"]["compile_error"] if runs else None
        agg["differing_total"] = sum(r["differing_compiled_vs_pytorch"] for r in runs)
        rows.append(agg)
    return rows


def judge(claim: Claim, by: dict[str, dict[str, Any]]) -> dict[str, Any]:
    a, b = by[claim.better], by[claim.worse]
    out: dict[str, Any] = {"claim": claim.text, "better": claim.better, "worse": claim.worse}
    if not a["n"] or not b["n"]:
        out.update(held=None, verdict="not run yet")
        return out
    ma, sa = a["pytorch_acc"]["mean"], a["pytorch_acc"]["std"]
    mb, sb = b["pytorch_acc"]["mean"], b["pytorch_acc"]["std"]
    d = ma - mb
    noise = math.sqrt(sa ** 2 + sb ** 2)
    held = d > 0
    clear = abs(d) > noise and min(a["n"], b["n"]) > 1
    word = "held" if held else "did not hold"
    if not clear:
        word += " (within the seed spread)" if min(a["n"], b["n"]) > 1 else " (one seed)"
    out.update(held=held, clear=clear, delta_pp=100 * d, noise_pp=100 * noise,
               verdict=f"{word}: {claim.better} {pct(ma, sa)} vs {claim.worse} {pct(mb, sb)} "
                       f"(Δ {100 * d:+.2f} pp, seed spread ±{100 * noise:.2f} pp)")
    return out


def pct(m: float | None, s: float | None) -> str:
    return "—" if m is None else f"{100 * m:.2f} ± {100 * (s or 0):.2f} %"
