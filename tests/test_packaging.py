"""Packaging: the declared dependency floors work, and the portable wheel is what it claims."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import tomllib
import venv
from pathlib import Path

import pytest
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]

# The compile/verify tests that need no torch or brevitas: passes, lowering, the CLI, packed
# activations and the bit-exact QONNX kernels against their numpy twins.
FLOOR_TESTS = [
    "tests/test_passes.py",
    "tests/test_multibit.py",
    "tests/test_packed_activations.py",
    "tests/test_cli.py",
    "tests/test_ops_qonnx.py",
]


def declared_floors() -> list[str]:
    """`name==X` for every core dependency declared as `name>=X` in pyproject.toml."""
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = []
    for dep in deps:
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)>=([0-9][0-9.]*)", dep.replace(" ", ""))
        assert m, f"expected core dependency as 'name>=version', got {dep!r}"
        pins.append(f"{m[1]}=={m[2]}")
    return pins


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def _floor_venv(pins: list[str]) -> Path:
    """A venv with exactly the floors (cached under build/, keyed by the pins)."""
    key = hashlib.sha256("\n".join(pins).encode()).hexdigest()[:12]
    env_dir = ROOT / "build" / "test-floors" / key
    python = env_dir / "bin" / "python"
    if (env_dir / ".complete").is_file():
        return python
    probe = _run([sys.executable, "-m", "pip", "index", "versions", "onnx"])
    if probe.returncode != 0:
        pytest.skip(f"pip cannot reach the package index: {probe.stderr.strip()[-200:]}")
    venv.create(env_dir, with_pip=True, clear=True)
    install = _run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                    *pins, "pytest"])
    assert install.returncode == 0, f"installing the declared floors failed:\n{install.stderr[-3000:]}"
    (env_dir / ".complete").write_text("\n".join(pins) + "\n")
    return python


def test_declared_floors_compile_and_verify():
    pins = declared_floors()
    python = _floor_venv(pins)
    listed = _run([str(python), "-m", "pip", "list", "--format=freeze"])
    installed = dict(line.lower().replace("_", "-").split("==") for line in listed.stdout.split())
    for pin in pins:
        name, version = pin.lower().split("==")
        got = installed.get(name)
        assert got is not None and Version(got) == Version(version), (
            f"expected {pin} in the floor venv, got {name}=={got}")
    # The package from this source tree (its op library built in place by tools/setup.sh).
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}"}
    run = _run([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", *FLOOR_TESTS],
               cwd=ROOT, env=env, timeout=600)
    assert run.returncode == 0, f"tests fail with the declared floors {pins}:\n{run.stdout[-4000:]}"
    assert re.search(r"\d+ passed", run.stdout)
