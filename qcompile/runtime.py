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

from qcompile.errors import QCompileError

LIBRARY_NAME = "libqcompile_ops.so"

_BUILD_HINT = (
    "build it with `pip install -e . --no-build-isolation --no-deps` (or `pip install .`) from the "
    "qcompile source tree; onnxruntime headers come from ORT_INCLUDE_DIR, /usr/include/onnxruntime "
    "or a fetch of Debian's libonnxruntime-dev"
)


# Points every session at another build of the library, e.g. the AddressSanitizer build that
# tools/sanitize.sh makes (its directory also holds that build's test-hooks library).
LIBRARY_ENV = "QCOMPILE_OPS_LIBRARY"


def get_library_path() -> str:
    """Absolute path of libqcompile_ops.so inside the installed qcompile package, or of the
    library QCOMPILE_OPS_LIBRARY names."""
    override = os.environ.get(LIBRARY_ENV)
    if override:
        if not os.path.isfile(override):
            raise FileNotFoundError(f"expected the op library {LIBRARY_ENV} names, got no file at {override}")
        return os.path.abspath(override)
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


def InferenceSession(
    path_or_bytes: str | bytes | os.PathLike[str],
    threads: int | None = None,
    sess_options: Any | None = None,
    **kwargs: Any,
) -> Any:
    """onnxruntime.InferenceSession with the qcompile op library registered.

    Each node's kernel variant is chosen when the session creates its kernels: its `kernel`
    attribute, or the best this CPU runs (see kernel_variants()); QCOMPILE_KERNEL (XNOR and
    bit-serial ops) and QCOMPILE_SHIFT_KERNEL (SHIFT ops) override it.
    """
    import onnxruntime as ort

    so = session_options(threads, sess_options)
    kwargs.setdefault("providers", ["CPUExecutionProvider"])
    if isinstance(path_or_bytes, os.PathLike):
        path_or_bytes = os.fspath(path_or_bytes)
    return ort.InferenceSession(path_or_bytes, sess_options=so, **kwargs)


@dataclass(frozen=True)
class KernelVariant:
    """One row of an op family's kernel-variant table in the op library."""

    name: str  # value of the node attribute `kernel` (and of the family's override variable)
    isa: str  # CPU features it needs ("" for none)
    supported: bool  # runnable on this CPU


@functools.lru_cache(maxsize=1)
def _library() -> ctypes.CDLL:
    lib = ctypes.CDLL(get_library_path())
    lib.qcompile_kernel_variant_count.restype = ctypes.c_int
    lib.qcompile_kernel_variant_count.argtypes = [ctypes.c_char_p]
    for fn in ("qcompile_kernel_variant_name", "qcompile_kernel_variant_isa"):
        getattr(lib, fn).restype = ctypes.c_char_p
        getattr(lib, fn).argtypes = [ctypes.c_char_p, ctypes.c_int]
    lib.qcompile_kernel_variant_supported.restype = ctypes.c_int
    lib.qcompile_kernel_variant_supported.argtypes = [ctypes.c_char_p, ctypes.c_int]
    lib.qcompile_kernel_variant_env.restype = ctypes.c_char_p
    lib.qcompile_kernel_variant_env.argtypes = [ctypes.c_char_p]
    return lib


def _count(op_type: str) -> int:
    n = _library().qcompile_kernel_variant_count(op_type.encode())
    if n < 0:
        raise ValueError(
            f"expected a qcompile op with kernel variants ({', '.join(KERNEL_OPS)}), got {op_type!r}"
        )
    return int(n)


# The ops whose kernel the node attribute `kernel` selects (custom_ops/SPEC.md).
KERNEL_OPS = (
    "XnorConv",
    "XnorConvThreshold",
    "XnorGemm",
    "QuantizePack",
    "BitSerialConv",
    "BitSerialGemm",
    "BitSerialConvThreshold",
    "BitSerialGemmThreshold",
    "BitSerialMlp",
    "ShiftConv",
    "ShiftGemm",
    "DepthwiseConvInteger",
    "DepthwiseConvRequantize",
    "DirectConvInteger",
    "DirectConvRequantize",
    "Requantize",
)


def kernel_table(op_type: str) -> list[KernelVariant]:
    """Every kernel variant in op_type's table, best first, with whether this CPU runs it."""
    lib, op = _library(), op_type.encode()
    return [
        KernelVariant(
            name=lib.qcompile_kernel_variant_name(op, i).decode(),
            isa=lib.qcompile_kernel_variant_isa(op, i).decode(),
            supported=bool(lib.qcompile_kernel_variant_supported(op, i)),
        )
        for i in range(_count(op_type))
    ]


def kernel_variants(op_type: str) -> list[str]:
    """The kernel variants of op_type this CPU can run, best first: the values the node
    attribute `kernel` accepts here (the first is what a node without it runs)."""
    return [v.name for v in kernel_table(op_type) if v.supported]


def kernel_override(op_type: str) -> str:
    """The environment variable that overrides op_type's `kernel` attributes ("" for none)."""
    _count(op_type)
    return _library().qcompile_kernel_variant_env(op_type.encode()).decode()


def selected_kernel(op_type: str) -> str | None:
    """The variant a node of op_type without a `kernel` attribute runs when its session is
    created now (the override variable honoured); None if the override names no variant this
    CPU runs."""
    env = kernel_override(op_type)
    forced = os.environ.get(env, "") if env else ""
    runnable = kernel_variants(op_type)
    if not forced:
        return runnable[0]
    return forced if forced in runnable else None


# DirectConvInteger's kernels that beat onnxruntime's ConvInteger (tools/bench_direct_conv.py);
# its AVX2 and portable kernels do not, so without these int8 convs stay on ConvInteger.
DIRECT_CONV_FAST = ("amx", "avx512vnni")
DIRECT_CONV_ENV = "QCOMPILE_DIRECT_CONV"  # "auto" (default), "1": always, "0": never


def direct_conv_is_fast() -> bool:
    """Whether the compiler lowers int8 convs (not depthwise) to qcompile::DirectConvInteger: where this
    CPU runs one of DIRECT_CONV_FAST, unless QCOMPILE_DIRECT_CONV says otherwise."""
    mode = os.environ.get(DIRECT_CONV_ENV, "auto").strip().lower() or "auto"
    if mode not in ("auto", "0", "1"):
        raise QCompileError(f"{DIRECT_CONV_ENV}={os.environ[DIRECT_CONV_ENV]!r}: expected 'auto', '1' or '0'")
    if mode != "auto":
        return mode == "1"
    return selected_kernel("DirectConvInteger") in DIRECT_CONV_FAST


def with_kernel(model: Any, name: str | None) -> bytes:
    """The model (an onnx.ModelProto or its bytes) serialized with attribute kernel=name on
    every qcompile node whose op has kernel variants; name None leaves every node on its own."""
    import onnx

    proto = onnx.load_from_string(model) if isinstance(model, bytes) else model
    if name is None:
        return proto.SerializeToString()
    proto = onnx.ModelProto.FromString(proto.SerializeToString())  # the caller's model unchanged
    for node in proto.graph.node:
        if node.domain == "qcompile" and node.op_type in KERNEL_OPS:
            kept = [a for a in node.attribute if a.name != "kernel"]
            del node.attribute[:]
            node.attribute.extend(kept)
            node.attribute.append(onnx.helper.make_attribute("kernel", name))
    return proto.SerializeToString()
