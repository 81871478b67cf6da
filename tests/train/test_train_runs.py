"""A short training run on scikit-learn's digits with each method beats chance (10 %) widely."""

from __future__ import annotations

import pytest
import torch

from qcompile.train import train
from qcompile.train.registry import METHODS

# sq: the paper's weight-only setting; progressive2 steps 32 → 8 → 4 → 2 (a final 1-bit stage
# of ~25 steps is too short to recover from the drop in a 3-epoch run)
BITS = {"twn": (2, 2), "sq": (1, 32), "progressive2": (2, 2)}
EXTRA = {
    # the AQE-blend ablation evaluates with h alone; a fixed α = ½ leaves the BatchNorm
    # statistics of the blended training forward, so a 3-epoch run anneals α to 1.
    "aqe-blend": {"aqe_anneal_to": 1.0},
}


@pytest.fixture(autouse=True)
def _one_thread():
    # tiny models: one intra-op thread is several times faster than oversubscribed cores
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.parametrize("method", METHODS)
def test_short_run_beats_chance(method):
    wb, ab = BITS.get(method, (1, 1))
    r = train(model="convnet", data="digits", method=method, wbits=wb, abits=ab, epochs=3,
              batch_size=32, width=0.5, progress=False, export=False, seed=0,
              **EXTRA.get(method, {}))
    assert r.test_acc > 0.5, (method, [h["test_acc"] for h in r.history])
