"""The pass tests check each pass's own rewrite (op names and sequences such as ConvInteger ->
Requantize), so they compile with the direct int8 conv rewrite off (QCOMPILE_DIRECT_CONV=0),
which would otherwise rename those ops last on a CPU with AMX or AVX-512 VNNI;
test_direct_integer.py tests that rewrite itself, and the end-to-end tests compile with it as a
user's machine does."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _no_direct_conv_rewrite(request, monkeypatch):
    if request.path.name != "test_direct_integer.py":
        monkeypatch.setenv("QCOMPILE_DIRECT_CONV", "0")
