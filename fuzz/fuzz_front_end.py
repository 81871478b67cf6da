"""Coverage-guided fuzz target for the model loader and compiler front end.

One input is the bytes of an ONNX file. It goes through what `qcompile compile` does before any
onnxruntime run: decode + onnx.checker + qcompile's own checks (modelio.parse_model_bytes), the
front end (QCDQ read as Quant, constants folded), layer analysis, bit-width detection and the
lowering pipeline. Refusing the input with a QCompileError is the right answer; any other
exception is a bug (the CLI would print "internal error").

    python fuzz/fuzz_front_end.py fuzz/corpus -max_total_time=30    # atheris (libFuzzer flags)
    python fuzz/fuzz_front_end.py --mutate --seconds 30 fuzz/corpus  # no atheris: random mutations
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

try:
    import atheris
except ImportError:  # the mutation loop below needs nothing but the standard library
    atheris = None


def _imports():
    import onnx_ir as ir

    from qcompile.compiler import check_bit_widths, front_end
    from qcompile.errors import QCompileError
    from qcompile.modelio import parse_model_bytes
    from qcompile.passes.pipeline import CompileOptions, compile_pipeline

    return ir, check_bit_widths, front_end, QCompileError, parse_model_bytes, CompileOptions, compile_pipeline


def _load_source_tree_plainly() -> None:
    """atheris instruments modules the standard loader loads; an editable install's finder
    (scikit-build-core's) wraps the loader and atheris then sees no coverage. The in-place build
    keeps the op library beside the sources, so the plain path finder loads the same package."""
    root = Path(__file__).resolve().parents[1]
    if (root / "qcompile" / "__init__.py").is_file():
        sys.path.insert(0, str(root))
        sys.meta_path[:] = [f for f in sys.meta_path if not type(f).__module__.startswith("_editable_skbc")]


if atheris is not None and "--mutate" not in sys.argv:
    _load_source_tree_plainly()
    with atheris.instrument_imports(include=["qcompile"]):
        _IR, _check_bits, _front_end, _QCompileError, _parse, _Options, _pipeline = _imports()
else:
    _IR, _check_bits, _front_end, _QCompileError, _parse, _Options, _pipeline = _imports()


def check_one(data: bytes) -> None:
    """Raise only for a bug: anything but QCompileError."""
    try:
        proto = _parse(data, "the fuzz input")
        normalized, layers = _front_end(proto)
        _check_bits(layers, None, None)
        _pipeline(_IR.serde.deserialize_model(normalized), _Options())
    except _QCompileError:
        pass


def _mutate(data: bytes, rng: random.Random, seeds: list[bytes]) -> bytes:
    """One to four byte-level edits: flip, set to an edge value, insert, delete, splice a seed."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(5)
        pos = rng.randrange(len(buf) + 1)
        if op == 0 and buf:
            buf[pos % len(buf)] ^= 1 << rng.randrange(8)
        elif op == 1 and buf:
            buf[pos % len(buf)] = rng.choice((0x00, 0x01, 0x7F, 0x80, 0xFF))
        elif op == 2:
            buf[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif op == 3 and buf:
            del buf[pos:pos + rng.randint(1, 16)]
        else:
            other = rng.choice(seeds)
            cut = rng.randrange(len(other) + 1)
            buf[pos:] = other[cut:]
    return bytes(buf)


def mutation_loop(corpus: Path, seconds: float, seed: int) -> int:
    """Random mutations of the seed corpus until time is up; returns how many inputs ran."""
    seeds = [p.read_bytes() for p in sorted(corpus.iterdir()) if p.is_file()]
    if not seeds:
        raise SystemExit(f"error: no seed files in {corpus}")
    rng = random.Random(seed)
    runs, deadline = 0, time.monotonic() + seconds
    for data in seeds:  # every seed as it is first
        check_one(data)
        runs += 1
    while time.monotonic() < deadline:
        data = _mutate(rng.choice(seeds), rng, seeds)
        try:
            check_one(data)
        except Exception:
            crash = corpus.parent / f"crash-{seed}-{runs}.onnx"
            crash.write_bytes(data)
            print(f"crash after {runs} runs; input written to {crash}", file=sys.stderr)
            raise
        runs += 1
    return runs


def main() -> None:
    if "--mutate" in sys.argv or atheris is None:
        parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
        parser.add_argument("corpus", type=Path)
        parser.add_argument("--mutate", action="store_true", help="random mutations instead of atheris")
        parser.add_argument("--seconds", type=float, default=30.0)
        parser.add_argument("--seed", type=int, default=0)
        args = parser.parse_args()
        runs = mutation_loop(args.corpus, args.seconds, args.seed)
        print(f"done: {runs} inputs, 0 crashes")
        return
    atheris.Setup(sys.argv, lambda data: check_one(bytes(data)))
    atheris.Fuzz()


if __name__ == "__main__":
    main()
