"""Every test reads and writes its own (empty) cost cache, never the user's ~/.cache/qcompile, and
estimates costs from the cost model's fixed table (QCOMPILE_COSTMODEL=static: nothing calibrates,
module-scoped fixtures included); the end-to-end, trainer and tool tests are marked `slow`
(`pytest -m "not slow"` is the inner loop)."""

from __future__ import annotations

import os

import pytest

os.environ["QCOMPILE_COSTMODEL"] = "static"


@pytest.fixture(autouse=True)
def _private_cost_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("QCOMPILE_CACHE_DIR", str(tmp_path_factory.mktemp("qcompile-cache")))


_SLOW_DIRS = ("e2e", "train", "tooling")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.path.parent.name in _SLOW_DIRS:
            item.add_marker(pytest.mark.slow)
