"""Errors that reach users: each says what was expected, what was found, where, and what to do."""

from __future__ import annotations


class QCompileError(Exception):
    """A problem with the user's input or request; the CLI prints it without a traceback (exit 1)."""


class ModelLoadError(QCompileError):
    """The file is missing or is not an ONNX model."""


class InputsError(QCompileError):
    """The inputs given for a parity check or benchmark do not fit the model."""


class OutputPathError(QCompileError):
    """The output cannot be written where asked (it is the input, or its folder cannot exist)."""


class BitWidthError(QCompileError):
    """The requested bit width does not match what the model holds."""


class UnsupportedError(QCompileError):
    """The model asks for something this version cannot compile."""


class RuntimeRunError(QCompileError):
    """onnxruntime refused to load or run a model."""
