"""Every test reads and writes its own (empty) cost cache, never the user's ~/.cache/qcompile."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _private_cost_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("QCOMPILE_CACHE_DIR", str(tmp_path_factory.mktemp("qcompile-cache")))
