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


def paired_stats(diffs: list[float], level: float = 0.90) -> dict[str, float | None]:
    """Mean, standard error and the two-sided ``level`` t-interval of paired differences.

    One pair has no spread: the interval is then unknown (None), never a zero-width one."""
    from scipy import stats

    n = len(diffs)
    mean = sum(diffs) / n
    if n < 2:
        return {"mean": mean, "se": None, "ci_low": None, "ci_high": None}
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1))
    se = sd / math.sqrt(n)
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * se
    return {"mean": mean, "se": se, "ci_low": mean - half, "ci_high": mean + half}


def mcnemar(better_right: int, worse_right: int) -> float:
    """Exact two-sided McNemar p-value from the discordant pairs: ``better_right`` images only
    the better arm classifies correctly, ``worse_right`` only the worse arm does."""
    from scipy import stats

    n = better_right + worse_right
    if n == 0:
        return 1.0
    return float(stats.binomtest(better_right, n, 0.5).pvalue)


def load_predictions(root: Path, seeds: int) -> tuple[Any, dict[tuple[str, int], Any]]:
    """The test labels and each finished run's PyTorch predictions ((experiment, seed) → array),
    as the runner saved them (``test_labels.npy``, ``<run>/predictions.npy``)."""
    import numpy as np

    labels_path = root / "test_labels.npy"
    labels = np.load(labels_path) if labels_path.is_file() else None
    preds = {}
    for e in EXPERIMENTS:
        for k in range(seeds):
            p = root / e.name / f"seed{k}" / "predictions.npy"
            if p.is_file():
                preds[(e.name, k)] = np.load(p)
    return labels, preds


def discordant(claim: Claim, seeds: list[int], labels: Any,
               preds: dict[tuple[str, int], Any]) -> tuple[int, int] | None:
    """Discordant counts pooled over the paired seeds (None when a run has no predictions)."""
    b_only = w_only = 0
    for k in seeds:
        pb, pw = preds.get((claim.better, k)), preds.get((claim.worse, k))
        if pb is None or pw is None or labels is None:
            return None
        ok_b, ok_w = pb == labels, pw == labels
        b_only += int((ok_b & ~ok_w).sum())
        w_only += int((ok_w & ~ok_b).sum())
    return b_only, w_only


def judge(claim: Claim, results: dict[str, list[dict[str, Any]]], labels: Any = None,
          preds: dict[tuple[str, int], Any] | None = None) -> dict[str, Any]:
    """Paired by seed: per-seed differences (better − worse) of test accuracy, their mean ±
    standard error and 90 % t-interval, and McNemar's test on the pooled paired predictions.
    The claim holds only when the whole interval lies above 0."""
    out: dict[str, Any] = {"claim": claim.text, "better": claim.better, "worse": claim.worse,
                           "held": None, "ci_low": None, "ci_high": None}
    by_seed_b = {r["seed"]: r for r in results.get(claim.better, [])}
    by_seed_w = {r["seed"]: r for r in results.get(claim.worse, [])}
    seeds = sorted(set(by_seed_b) & set(by_seed_w))
    if not seeds:
        out["verdict"] = "not run yet"
        return out
    rb = [by_seed_b[k] for k in seeds]
    rw = [by_seed_w[k] for k in seeds]
    diffs = [b["pytorch_acc"] - w["pytorch_acc"] for b, w in zip(rb, rw, strict=True)]
    st = paired_stats(diffs)
    disc = discordant(claim, seeds, labels, preds or {})
    p = mcnemar(*disc) if disc is not None else None
    held = None if st["ci_low"] is None else bool(st["ci_low"] > 0)
    out.update(held=held, seeds=seeds, diffs_pp=[100 * d for d in diffs],
               delta_pp=100 * st["mean"], se_pp=None if st["se"] is None else 100 * st["se"],
               ci_low=st["ci_low"], ci_high=st["ci_high"], mcnemar_p=p,
               discordant=None if disc is None else {"better_only": disc[0],
                                                     "worse_only": disc[1]})
    if st["ci_low"] is None:
        word, ci = "undecided (one paired seed, no interval)", ""
    else:
        word = "held" if held else ("contradicted" if st["ci_high"] < 0 else "not shown")
        ci = (f" ± {100 * st['se']:.2f} (s.e.), 90 % CI [{100 * st['ci_low']:+.2f}, "
              f"{100 * st['ci_high']:+.2f}]")
    mc = "" if p is None else f"; McNemar p = {p:.3g} ({disc[0]} vs {disc[1]} discordant)"
    out["verdict"] = (f"{word}: Δ {100 * st['mean']:+.2f} pp{ci} over {len(seeds)} paired "
                      f"seed(s){mc}")
    return out


def pct(m: float | None, s: float | None) -> str:
    return "—" if m is None else f"{100 * m:.2f} ± {100 * (s or 0):.2f} %"
