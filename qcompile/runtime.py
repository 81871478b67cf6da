"""Run models that use qcompile's ops: find the op library and open onnxruntime sessions with it.

``get_library_path()`` is what any onnxruntime host needs::

    so = onnxruntime.SessionOptions()
    so.register_custom_ops_library(qcompile.runtime.get_library_path())
"""

from __future__ import annotations

import ctypes
import functools
import os
from dataclasses import dataclass
from importlib import resources
from typing import Any

LIBRARY_NAME = "libqcompile_ops.so"

_BUILD_HINT = (
    "build it with `pip install -e . --no-build-isolation --no-deps` (or `pip install .`) from the "
    "qcompile source tree; onnxruntime headers come from ORT_INCLUDE_DIR, /usr/include/onnxruntime "
    "or a fetch of Debian's libonnxruntime-dev"
)


def get_library_path() -> str:
    """Absolute path of libqcompile_ops.so inside the installed qcompile package."""
    path = resources.files("qcompile").joinpath(LIBRARY_NAME)
    if not path.is_file():
        raise FileNotFoundError(
            f"expected the qcompile op library at {path}, got no file; {_BUILD_HINT}"
        )
    return os.fspath(path)


def session_options(threads: int | None = None, options: Any | None = None) -> Any:
    """onnxruntime.SessionOptions with the qcompile op library registered.

    threads: intra-op thread count (None keeps onnxruntime's default). options: an existing
    SessionOptions to extend instead of a new one.
    """
    import onnxruntime as ort

    if options is None:
        so = ort.SessionOptions()
        # errors only: onnxruntime warns once per initializer listed as a graph input (common in
        # exported QONNX models), which buries what qcompile prints
        so.log_severity_level = 3
    else:
        so = options
    so.register_custom_ops_library(get_library_path())
    if threads is not None:
        if threads < 1:
            raise ValueError(f"expected threads >= 1, got {threads}")
        so.intra_op_num_threads = threads
    return so


def InferenceSession(  # noqa: N802 - mirrors onnxruntime.InferenceSession
    path_or_bytes: str | bytes | os.PathLike[str],
    threads: int | None = None,
    sess_options: Any | None = None,
    **kwargs: Any,
) -> Any:
    """onnxruntime.InferenceSession with the qcompile op library registered.

    The XnorConv/XnorGemm kernel variant is chosen when the session creates its kernels:
    QCOMPILE_KERNEL=<name> forces one (see kernel_variants()).
    """
    import onnxruntime as ort

    so = session_options(threads, sess_options)
    kwargs.setdefault("providers", ["CPUExecutionProvider"])
    if isinstance(path_or_bytes, os.PathLike):
        path_or_bytes = os.fspath(path_or_bytes)
    return ort.InferenceSession(path_or_bytes, sess_options=so, **kwargs)


@dataclass(frozen=True)
class KernelVariant:
    """One XnorConv/XnorGemm kernel variant of the op library."""

    name: str  # value for QCOMPILE_KERNEL
    isa: str  # CPU features it needs ("" for none)
    supported: bool  # runnable on this CPU


@functools.lru_cache(maxsize=1)
def _library() -> ctypes.CDLL:
    lib = ctypes.CDLL(get_library_path())
    lib.qcompile_kernel_variant_count.restype = ctypes.c_int
    for fn in ("qcompile_kernel_variant_name", "qcompile_kernel_variant_isa"):
        getattr(lib, fn).restype = ctypes.c_char_p
        getattr(lib, fn).argtypes = [ctypes.c_int]
    lib.qcompile_kernel_variant_supported.restype = ctypes.c_int
    lib.qcompile_kernel_variant_supported.argtypes = [ctypes.c_int]
    lib.qcompile_kernel_selected.restype = ctypes.c_char_p
    lib.qcompile_shift_kernel_runs.restype = ctypes.c_longlong
    lib.qcompile_shift_kernel_runs.argtypes = [ctypes.c_char_p]
    return lib


def kernel_variants() -> list[KernelVariant]:
    """Every kernel variant in the library's table, best first, with whether this CPU runs it."""
    lib = _library()
    return [
        KernelVariant(
            name=lib.qcompile_kernel_variant_name(i).decode(),
            isa=lib.qcompile_kernel_variant_isa(i).decode(),
            supported=bool(lib.qcompile_kernel_variant_supported(i)),
        )
        for i in range(lib.qcompile_kernel_variant_count())
    ]


def shift_kernel_runs(name: str) -> int:
    """How many ShiftConv/ShiftGemm runs in this process computed D with shift kernel `name`
    ("portable" or "avx2"; QCOMPILE_SHIFT_KERNEL forces one); -1 for an unknown name."""
    return int(_library().qcompile_shift_kernel_runs(name.encode()))


def selected_kernel() -> str | None:
    """The variant a session created now would use (QCOMPILE_KERNEL honoured); None if invalid."""
    name = _library().qcompile_kernel_selected()
    return name.decode() if name else None
