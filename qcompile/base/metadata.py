"""The metadata_props keys qcompile writes on compiled nodes, read by the compile table and verify."""

from __future__ import annotations

import json

LAYER_KEY = "qcompile.layer"  # node metadata: which reference layer a compiled node stands for
FOLDED_KEY = "qcompile.folded"  # node metadata: ops folded into its output transform
# node metadata: which reference tensor the node's first output stands for, and how it is encoded
# ("float": the same values; "sign-bits": packed bits of the reference's sign, qcompile.ops.packing)
REF_KEY = "qcompile.ref"
FLOAT_ENCODING = "float"
SIGN_BITS_ENCODING = "sign-bits"


def ref_entry(tensor: str, encoding: str, group: int = 1) -> str:
    return json.dumps({"tensor": tensor, "encoding": encoding, "group": group}, sort_keys=True)


def parse_ref_entry(text: str) -> dict | None:
    """The entry written by ref_entry, or None when it is not one."""
    try:
        entry = json.loads(text)
    except ValueError:
        return None
    if not isinstance(entry, dict) or not isinstance(entry.get("tensor"), str):
        return None
    return entry
