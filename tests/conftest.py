"""Every test reads and writes its own (empty) cost cache, never the user's ~/.cache/qcompile;
the end-to-end, trainer and tool tests are marked `slow` (`pytest -m "not slow"` is the inner loop)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _private_cost_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("QCOMPILE_CACHE_DIR", str(tmp_path_factory.mktemp("qcompile-cache")))
    # the cost model's fixed constants: no test calibrates (seconds) unless it asks to
    monkeypatch.setenv("QCOMPILE_COSTMODEL", "static")


_SLOW_DIRS = ("e2e", "train", "tooling")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.path.parent.name in _SLOW_DIRS:
            item.add_marker(pytest.mark.slow)
