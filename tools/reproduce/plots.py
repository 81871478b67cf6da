"""The reproduction's figures: accuracy vs bits, learning curves, claims with their intervals.

Every method (plot series) keeps one colour and one marker in all figures, both distinct from
every other series' (tab20 has 20 colours; the catalogue has fewer series)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .experiments import EXPERIMENTS, GROUPS

MARKERS = "osD^v<>pPX*hH8d"


def series_styles() -> dict[str, dict[str, Any]]:
    """Series name → colour and marker, in catalogue order (stable across figures and runs)."""
    import matplotlib

    cmap = matplotlib.colormaps["tab20"]
    names = list(dict.fromkeys(e.series for e in EXPERIMENTS))
    return {n: {"color": cmap(i % 20), "marker": MARKERS[i % len(MARKERS)]}
            for i, n in enumerate(names)}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> None:
    from qcompile.fileio import atomic_path

    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=110)


def _title(summary: dict[str, Any]) -> str:
    s = summary["settings"]
    return (f"{s['data']}: ConvNet width {s['width']:g}, {s['epochs']} epoch(s), "
            f"{s['seeds']} seed(s)")


def accuracy_vs_bits(summary: dict[str, Any], path: Path) -> None:
    plt = _pyplot()
    styles = series_styles()
    done = [a for a in summary["experiments"] if a["n"]]
    labels = sorted({(a["wbits"], a["abits"]) for a in done})
    xpos = {wa: i for i, wa in enumerate(labels)}
    fig, ax = plt.subplots(figsize=(10, 5.5))
    series: dict[str, list[dict[str, Any]]] = {}
    for a in done:
        series.setdefault(a["series"], []).append(a)
    for i, (name, pts) in enumerate(series.items()):
        pts = sorted(pts, key=lambda a: (a["wbits"], a["abits"]))
        # several series share a W/A column (the schemes at 2/2): jitter them apart
        xs = [xpos[(a["wbits"], a["abits"])] + 0.06 * (i % 7 - 3) for a in pts]
        ys = [100 * a["pytorch_acc"]["mean"] for a in pts]
        es = [100 * a["pytorch_acc"]["std"] for a in pts]
        ax.errorbar(xs, ys, yerr=es, capsize=3, linestyle="-" if len(pts) > 1 else "none",
                    label=name, **styles[name])
        cx = [x for x, a in zip(xs, pts, strict=True) if a["compiled"]]
        cy = [100 * a["compiled_acc"]["mean"] for a in pts if a["compiled"]]
        ax.scatter(cx, cy, marker="x", color="k", s=18, zorder=5)
    if "fp32" in {a["name"] for a in done}:
        fp = next(a for a in done if a["name"] == "fp32")
        ax.axhline(100 * fp["pytorch_acc"]["mean"], color="grey", linestyle="--", linewidth=1)
    ax.scatter([], [], marker="x", color="k", s=18, label="compiled model (ORT)")
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels([f"W{w}/A{a}" for w, a in labels])
    ax.set_xlabel("bits (weights / activations)")
    ax.set_ylabel("test accuracy % (mean ± std over seeds)")
    ax.set_title(_title(summary))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best", ncol=2)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def learning_curves(summary: dict[str, Any], path: Path) -> None:
    """Test accuracy per epoch (mean over seeds), one panel per comparison group."""
    from matplotlib.ticker import MaxNLocator

    plt = _pyplot()
    styles = series_styles()
    runs: dict[str, list[dict[str, Any]]] = {}
    for r in summary["runs"]:
        runs.setdefault(r["experiment"], []).append(r)
    fig, axes = plt.subplots(1, len(GROUPS), figsize=(4 * len(GROUPS), 3.8), squeeze=False)
    for ax, g in zip(axes[0], GROUPS, strict=True):
        for e in EXPERIMENTS:
            if g.key not in e.groups or e.name not in runs:
                continue
            hists = [r["history"] for r in runs[e.name]]
            n_ep = min(len(h) for h in hists)
            ys = [100 * sum(h[i]["test_acc"] for h in hists) / len(hists) for i in range(n_ep)]
            ax.plot(range(1, n_ep + 1), ys, label=e.name, linewidth=1.2, markersize=4,
                    **styles[e.series])
        ax.set_title(g.key, fontsize=9)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
        ax.grid(alpha=0.3)
        if ax.get_lines():
            ax.legend(fontsize=6, loc="lower right")
    axes[0][0].set_ylabel("test accuracy % (mean over seeds)")
    fig.suptitle(_title(summary), fontsize=10)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def claims_plot(summary: dict[str, Any], path: Path) -> None:
    """Each claim's mean paired difference with its 90 % interval; a claim holds when the
    interval lies right of 0."""
    plt = _pyplot()
    claims = [c for c in summary["claims"] if "delta_pp" in c]
    fig, ax = plt.subplots(figsize=(8, 0.45 * max(1, len(claims)) + 1.2))
    for i, c in enumerate(claims):
        colour = "tab:green" if c["held"] else ("tab:grey" if c["held"] is None else "tab:red")
        if c["ci_low"] is not None:
            ax.plot([100 * c["ci_low"], 100 * c["ci_high"]], [i, i], color=colour, linewidth=2)
        ax.plot([c["delta_pp"]], [i], marker="o", color=colour)
    ax.axvline(0, color="k", linewidth=0.8)
    ax.set_yticks(range(len(claims)))
    ax.set_yticklabels([c["claim"] for c in claims], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("paired difference better − worse, pp (mean and 90 % CI over seeds)")
    ax.set_title(_title(summary), fontsize=9)
    ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
