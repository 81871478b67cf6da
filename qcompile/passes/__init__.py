"""Compiler passes. Each module holds one pass or one family of rewrite rules; `pipeline` orders them.

Import from the modules (e.g. `qcompile.passes.pipeline`); this package imports nothing so that
`qcompile.analysis` can use the small helpers here without an import cycle.
"""
