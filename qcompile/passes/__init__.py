"""Compiler passes. Each module holds one pass or one family of rewrite rules; `pipeline` orders them.

Import from the modules (e.g. `qcompile.passes.pipeline`); passes sit above `qcompile.analysis` and
`qcompile.base`, and nothing below them imports this package.
"""
