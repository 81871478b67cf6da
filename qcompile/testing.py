"""Parity checks for users' own test suites (pytest or any other).

    from qcompile.testing import assert_parity
    assert_parity("model.onnx", "model.q.onnx", inputs)   # raises AssertionError with the report
"""

from __future__ import annotations

import os

import numpy as np
import onnx

from qcompile.verify import RTOL, VerifyReport, verify


def format_report(report: VerifyReport) -> str:
    """The per-output and per-layer verdicts, one line each, as the CLI prints them."""
    lines = [f"inputs {report.inputs} ({report.input_source})"]
    for o in report.outputs:
        top1 = "" if o.top1_agreement is None else f", top-1 agreement {o.top1_agreement:.2%}"
        lines.append(f"{'ok' if o.passed else 'MISMATCH'} output {o.name!r} {o.shape}: max |error| "
                     f"{o.max_abs_error:.3g} (relative {o.rel_error:.3g}, bound {report.rtol:g}){top1}")
    for layer in report.layers or []:
        lines.append(f"{'ok' if layer.passed else 'MISMATCH'} layer {layer.layer!r} ({layer.compiled_node} vs "
                     f"{layer.reference_node}, {layer.encoding}): max |error| {layer.max_abs_error:.3g}")
    if report.first_divergence is not None:
        d = report.first_divergence
        lines.append(f"first divergence: tensor {d.tensor!r} (reference node {d.reference_node!r}, compiled node "
                     f"{d.compiled_node!r})" + (f" in layer {d.layer!r}" if d.layer else ""))
    return "\n".join(lines)


def assert_parity(
    reference: onnx.ModelProto | str | os.PathLike,
    compiled: onnx.ModelProto | str | os.PathLike,
    inputs: dict[str, np.ndarray] | str | os.PathLike | None = None,
    *,
    rtol: float = RTOL,
    threads: int | None = None,
) -> VerifyReport:
    """Raise AssertionError, with the per-layer report, unless `compiled` computes what `reference`
    does on `inputs` (a dict, an .npz path, or None for seeded random ones); return the report."""
    report = verify(reference, compiled, inputs, rtol=rtol, threads=threads, per_layer=True)
    if not report.passed:
        raise AssertionError("compiled model does not match its reference:\n" + format_report(report))
    return report
