"""The metadata_props keys qcompile writes on compiled nodes, read by the compile table and verify."""

from __future__ import annotations

LAYER_KEY = "qcompile.layer"  # node metadata: which reference layer a compiled node stands for
FOLDED_KEY = "qcompile.folded"  # node metadata: ops folded into its output transform
