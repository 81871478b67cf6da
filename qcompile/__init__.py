"""qcompile: run 1-3 bit neural networks fast and exactly in onnxruntime on CPUs."""

from __future__ import annotations

__version__ = "0.1.0"
