"""qcompile: run 1-4 bit neural networks fast and exactly in onnxruntime on CPUs.

    import qcompile
    result = qcompile.compile("model.onnx", wbits=1)       # writes model.q.onnx, checks parity
    report = qcompile.verify("model.onnx", "model.q.onnx")
    sess = qcompile.InferenceSession("model.q.onnx")        # onnxruntime with the op library
    so.register_custom_ops_library(qcompile.get_library_path())  # plain onnxruntime
"""

from __future__ import annotations

import importlib
import sys
import types

__version__ = "0.1.0"

# Lazy attributes: `import qcompile` stays cheap (no onnx / onnxscript import until used).
_EXPORTS = {
    "compile": ("qcompile.compiler", "compile"),
    "inspect": ("qcompile.compiler", "inspect"),
    "verify": ("qcompile.verify", "verify"),
    "bench": ("qcompile.bench", "bench"),
    "get_library_path": ("qcompile.runtime", "get_library_path"),
    "InferenceSession": ("qcompile.runtime", "InferenceSession"),
    "QCompileError": ("qcompile.errors", "QCompileError"),
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        module, attr = _EXPORTS[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'qcompile' has no attribute {name!r}")


class _Package(types.ModuleType):
    """Importing the submodule qcompile.verify (or .bench) would make the import system set the
    attribute `qcompile.verify` to that module, hiding the function; keep the function instead."""

    def __setattr__(self, name: str, value) -> None:
        if name in _EXPORTS and isinstance(value, types.ModuleType) and value.__name__ == _EXPORTS[name][0]:
            value = getattr(value, _EXPORTS[name][1])
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
