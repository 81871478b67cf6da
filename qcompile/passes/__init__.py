"""Compiler passes. Each module holds one pass or one family of rewrite rules; `pipeline` orders them."""

from __future__ import annotations

from qcompile.passes.pipeline import CompileOptions, build_pipeline, run_pipeline

__all__ = ["CompileOptions", "build_pipeline", "run_pipeline"]
