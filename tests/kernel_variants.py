"""The library's kernel-variant tables as pytest parameters, and the one way the op tests pick a
variant: the node attribute `kernel` (qcompile.runtime.kernel_variants(op_type)).

A variant this CPU cannot run is skipped, with the ISA it lacks as the reason. Which path a run
took is seen through libqcompile_ops_testhooks.so, the library built with test-only counters
(CMake option QCOMPILE_TEST_HOOKS, on for editable installs); the shipped library has none.
"""

from __future__ import annotations

import ctypes
import functools
from pathlib import Path
from typing import Any

import onnx
import pytest

from qcompile import runtime


def variant_params(op_type: str) -> list:
    """One pytest.param per row of op_type's table, best first; unsupported rows skipped."""
    return [
        pytest.param(
            v.name,
            id=v.name,
            marks=[] if v.supported else pytest.mark.skip(reason=f"CPU lacks {v.isa} for variant {v.name}"),
        )
        for v in runtime.kernel_table(op_type)
    ]


def with_kernel(model: bytes | onnx.ModelProto, name: str | None) -> bytes:
    """The model with attribute kernel=name on its qcompile nodes (runtime.with_kernel)."""
    return runtime.with_kernel(model, name)


# XnorConv, XnorConvThreshold and XnorGemm share one table.
XNOR_TABLE = runtime.kernel_table("XnorConv")
VARIANT_PARAMS = variant_params("XnorConv")


# ------------------------------------------------------------------------------- test hooks

HOOKS_LIBRARY = Path(runtime.get_library_path()).with_name("libqcompile_ops_testhooks.so")


@functools.lru_cache(maxsize=1)
def _hooks() -> ctypes.CDLL:
    if not HOOKS_LIBRARY.is_file():
        pytest.skip(f"needs the test-hooks build of the op library ({HOOKS_LIBRARY}; editable install)")
    lib = ctypes.CDLL(str(HOOKS_LIBRARY))
    lib.qcompile_shift_kernel_runs.restype = ctypes.c_longlong
    lib.qcompile_shift_kernel_runs.argtypes = [ctypes.c_char_p]
    lib.qcompile_xnor_tap_concat_runs.restype = ctypes.c_uint64
    lib.qcompile_lut_runs.restype = ctypes.c_uint64
    return lib


def have_hooks() -> bool:
    return HOOKS_LIBRARY.is_file()


def hooks_session(model: bytes, threads: int = 1) -> Any:
    """An onnxruntime session on the test-hooks library (same kernels, plus the counters); on
    the shipped library when there is no test-hooks build (the counters then skip)."""
    if not have_hooks():
        return runtime.InferenceSession(model, threads=threads)
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.register_custom_ops_library(str(HOOKS_LIBRARY))
    so.intra_op_num_threads = threads
    return ort.InferenceSession(model, sess_options=so, providers=["CPUExecutionProvider"])


def shift_kernel_runs(name: str) -> int:
    """ShiftConv/ShiftGemm runs (in hooks sessions) whose D shift kernel `name` computed."""
    return int(_hooks().qcompile_shift_kernel_runs(name.encode()))


def tap_concat_runs() -> int:
    """XnorConv/XnorConvThreshold runs (in hooks sessions) that took the tap-concatenated path."""
    return int(_hooks().qcompile_xnor_tap_concat_runs())


def lut_runs() -> int:
    """XnorConv/XnorConvThreshold/BitSerialConv runs (in hooks sessions) that took a
    table-lookup kernel."""
    return int(_hooks().qcompile_lut_runs())


def lut_always(name: str) -> bool:
    """Variants named *_lut run the table-lookup kernel on every convolution it can run
    (custom_ops/xnor/xnor_variants.cc), instead of their row kernels and tap concatenation."""
    return name.endswith("_lut")
