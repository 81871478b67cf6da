"""File input and output: only regular files of bounded size are read; writes are atomic.

A write goes to a temporary file beside the destination and is renamed over it, with SIGINT held
back across the rename and its bookkeeping: an interrupted run has either written a complete file
(and `completed_writes()` names it) or left nothing.
"""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from qcompile.errors import ModelLoadError, OutputPathError

# protobuf cannot parse a message over 2 GiB; larger models keep their weights as external data.
MAX_MODEL_BYTES = 2**31 - 1

_completed: list[Path] = []


def completed_writes() -> list[Path]:
    """Every file this process has written completely (renamed into place), oldest first."""
    return list(_completed)


def check_readable_file(path: str | os.PathLike, what: str = "ONNX model", limit: int = MAX_MODEL_BYTES) -> Path:
    """Refuse anything but an existing regular file of at most `limit` bytes (FIFOs, devices and
    symlinks to them would block or never end)."""
    p = Path(path)
    try:
        st = p.stat()  # follows symlinks: a link to /dev/zero is judged as /dev/zero
    except FileNotFoundError:
        raise ModelLoadError(f"no such file: {p}") from None
    except OSError as exc:
        raise ModelLoadError(f"cannot read {p}: {exc.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        raise ModelLoadError(f"expected an {what} file, got a directory: {p}")
    if not stat.S_ISREG(st.st_mode):
        kind = "a FIFO" if stat.S_ISFIFO(st.st_mode) else "a device or socket"
        raise ModelLoadError(f"expected an {what} file, got {kind}: {p}")
    if st.st_size > limit:
        raise ModelLoadError(f"{p} is {st.st_size} bytes, over the {limit}-byte limit for an {what}")
    if not os.access(p, os.R_OK):
        raise ModelLoadError(f"cannot read {p}: permission denied")
    return p


def check_writable_output(output: str | os.PathLike, *inputs: str | os.PathLike) -> Path:
    """Refuse an output that is one of the inputs, a directory, or in a folder that cannot exist."""
    out = Path(output)
    for src in inputs:
        if out.resolve() == Path(src).resolve() or (out.exists() and Path(src).exists() and out.samefile(src)):
            raise OutputPathError(f"the output {out} is the input model; pass another -o")
    if out.is_dir():
        raise OutputPathError(f"the output {out} is a directory; pass a file name")
    parent = out.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise OutputPathError(f"cannot write {out}: {parent} is not a directory")
    if not os.access(parent, os.W_OK):
        raise OutputPathError(f"cannot write {out}: {parent} is not writable")
    return out


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def _sigint_held() -> Iterator[None]:
    """Defer SIGINT until the block is done: a handler records it and the previous handler runs
    after. (Masking the signal in this thread is not enough: onnxruntime's threads would take it.)"""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        if callable(previous):
            previous(signal.SIGINT, None)
        else:
            raise KeyboardInterrupt


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success it replaces `path`, on failure it is removed.

    The file gets the mode a plain open() would give it (mkstemp's 0600 is not what users expect).
    """
    dest = Path(path)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=suffix, dir=dest.parent)
    except OSError as exc:
        raise OutputPathError(f"cannot write {dest}: {exc.strerror}") from None
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        with _sigint_held():
            try:
                os.replace(tmp, dest)
            except OSError as exc:
                raise OutputPathError(f"cannot write {dest}: {exc.strerror}") from None
            _completed.append(dest)
    finally:
        Path(tmp).unlink(missing_ok=True)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        try:
            tmp.write_bytes(data)
        except OSError as exc:
            raise OutputPathError(f"cannot write {path}: {exc.strerror}") from None
    return Path(path)
