"""Reproduce the four papers' comparisons on Fashion-MNIST, end to end (issue #6).

For every experiment below and every seed: train the AQE ConvNet with ``qcompile.train``, export
QONNX, compile it with qcompile, run the reference and the compiled ONNX in onnxruntime with the
op library over the whole test set, count differing predictions, measure file sizes and the
latency against a float model of the same architecture. Then write, under ``--out``:

* ``results.json`` – every run and the per-experiment mean/std (the data behind the rest),
* ``results.md``   – the Markdown tables (mean ± std over seeds), one per comparison, each with
  the paper's claim and whether it held here,
* ``accuracy_vs_bits.png`` – accuracy against bit width, one series per method.

Each (experiment, seed) has its own directory ``RUNS/<settings>/<experiment>/seed<k>`` holding
the trainer's outputs (checkpoint.pt each epoch, metrics.json, model.onnx) plus ``model.q.onnx``
and ``result.json``, written atomically once the run is fully done. A rerun skips runs that have
``result.json`` and resumes half-trained ones from their checkpoint, so an interrupted
reproduction is continued by running the same command again. ``--only`` runs a subset; the
tables always cover every finished run of the same settings. ``--reevaluate`` redoes export,
compile, evaluation and timing of finished runs from their checkpoints, without retraining.

    python -m tools.reproduce --list
    python -m tools.reproduce                       # everything, defaults below
    python -m tools.reproduce --only sq --only fp32 # one group and one experiment
    python -m tools.reproduce --data digits --epochs 1 --subset 200 --seeds 1 --only fp32
    python -m tools.reproduce --report-only --readme README.md  # tables only, README section

``--readme`` replaces the text between ``<!-- reproduce:begin -->`` and ``<!-- reproduce:end -->``
in that file with the claims table and a link to the full tables.
"""


from __future__ import annotations

from .cli import main
from .experiments import (
           BY_GROUP,
           BY_NAME,
           EXPERIMENTS,
           GROUPS,
           NOTES,
           Claim,
           Experiment,
           Group,
           select,
)
from .judge import aggregate, judge, mean_std

__all__ = ["BY_GROUP", "BY_NAME", "EXPERIMENTS", "GROUPS", "NOTES", "Claim", "Experiment",
           "Group", "aggregate", "judge", "main", "mean_std", "select"]
