"""Every ```python block of README.md runs, in order, in a folder holding the model.onnx it names."""

from __future__ import annotations

import re
from pathlib import Path

import onnx
from graphs import binary_conv_model

README = Path(__file__).resolve().parents[2] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", README.read_text(), flags=re.S | re.M)


def test_readme_python_blocks_run(tmp_path, monkeypatch):
    blocks = python_blocks()
    assert len(blocks) >= 3
    onnx.save(binary_conv_model(cin=8, cout=8), tmp_path / "model.onnx")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for i, code in enumerate(blocks):
        exec(compile(code, f"README.md python block {i + 1}", "exec"), namespace)
    assert (tmp_path / "model.q.onnx").is_file()
    assert namespace["report"].passed and namespace["timing"]["schema"] == "qcompile.bench/1"
