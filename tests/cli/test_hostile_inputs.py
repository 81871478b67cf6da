"""Every case of the hostile-input corpus (tests/cli/hostile.py) through the real CLI entry point:
one line `error: ...` on stderr naming the problem, the right exit code, no traceback, no internal
error, and nothing written. FIFOs run in a subprocess with a timeout, so a hang fails, not blocks."""

from __future__ import annotations

import os
import subprocess
import sys

import onnx
import pytest
from click.testing import CliRunner
from graphs import binary_conv_model
from hostile import corpus

from qcompile.cli import main


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    good = root / "good.onnx"
    onnx.save(binary_conv_model(cin=8, cout=8), good)
    compiled = root / "good.q.onnx"
    result = CliRunner().invoke(main, ["compile", str(good), "-o", str(compiled)])
    assert result.exit_code == 0, result.output
    cases = corpus(root, good, compiled)
    return root, {c.id: c for c in cases}


def _tree(root) -> set[str]:
    return {os.path.relpath(os.path.join(d, f), root) for d, _, files in os.walk(root) for f in files}


def _case_ids():
    # the ids only (the files are made by the fixture); kept in step with hostile.corpus
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        return [c.id for c in corpus(root, root / "good.onnx", root / "good.q.onnx")]


CASE_IDS = _case_ids()


def test_corpus_is_large_enough():
    assert len(CASE_IDS) >= 100 and len(set(CASE_IDS)) == len(CASE_IDS)


@pytest.mark.parametrize("case_id", CASE_IDS)
def test_hostile_case_fails_cleanly(world, case_id):
    root, cases = world
    case = cases[case_id]
    before = _tree(root)
    result = CliRunner().invoke(main, case.argv)
    assert isinstance(result.exception, SystemExit), result.exception  # nothing escaped the error path
    assert result.exit_code == case.exit_code, result.output
    stderr = result.stderr.strip()
    assert stderr.startswith("error: ") and "\n" not in stderr, stderr
    assert case.expect.lower() in stderr.lower(), stderr
    assert "Traceback" not in result.output and "internal error" not in stderr, stderr
    assert _tree(root) == before, "a failed command wrote a file"


@pytest.mark.parametrize("command", ["compile", "inspect", "verify-ref", "verify-comp"])
def test_fifo_as_model_is_refused_without_blocking(tmp_path, command):
    fifo = tmp_path / "pipe.onnx"
    os.mkfifo(fifo)
    good = tmp_path / "good.onnx"
    onnx.save(binary_conv_model(cin=8, cout=8), good)
    argv = {"compile": ["compile", fifo], "inspect": ["inspect", fifo], "verify-ref": ["verify", fifo, good],
            "verify-comp": ["verify", good, fifo]}[command]
    proc = subprocess.run([sys.executable, "-m", "qcompile.cli", *map(str, argv)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip() == f"error: expected an ONNX model file, got a FIFO: {fifo}"
    assert proc.stdout == ""
