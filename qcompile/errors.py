"""Errors that reach users: each says what was expected, what was found, where, and what to do."""

from __future__ import annotations


class QCompileError(Exception):
    """A problem with the user's input or request; the CLI prints it without a traceback."""


class ModelLoadError(QCompileError):
    """The file is missing or is not an ONNX model."""


class BitWidthError(QCompileError):
    """The requested bit width does not match what the model holds."""


class UnsupportedError(QCompileError):
    """The model asks for something this version cannot compile."""
