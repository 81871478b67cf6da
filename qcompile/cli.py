"""The `qcompile` command: compile (default), inspect, verify, bench, train."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from qcompile.errors import QCompileError

# Piped output (CI logs, files) gets a wide table instead of rich's 80-column default.
console = Console(width=None if sys.stdout.isatty() else 160)


class DefaultCompileGroup(click.Group):
    """`qcompile model.onnx ...` means `qcompile compile model.onnx ...`."""

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h", "--version"):
            args = ["compile", *args]
        return super().parse_args(ctx, args)


def _fail(exc: Exception) -> None:
    console.print(f"[bold red]error:[/] {exc}", highlight=False)
    sys.exit(1)


def _human(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def print_layer_table(rows, title: str) -> None:
    table = Table(title=title, title_justify="left")
    for col in ("layer", "op", "W/A bits", "kernel", "weight bytes", "MACs/sample", "note"):
        table.add_column(col, overflow="fold")
    for r in rows:
        op = r.op_before if r.op_after == r.op_before else f"{r.op_before} -> {r.op_after}"
        size = _human(r.bytes_before) if r.bytes_after == r.bytes_before else (
            f"{_human(r.bytes_before)} -> {_human(r.bytes_after)} ({r.bytes_before / max(r.bytes_after, 1):.1f}x)"
        )
        ops = f"{r.binary_ops:,}" if r.binary_ops else ""
        table.add_row(r.name, op, f"{r.wbits}/{r.abits}", r.kernel, size, ops, r.note)
    console.print(table)


def print_parity(report) -> None:
    for o in report.outputs:
        top1 = "" if o.top1_agreement is None else f", top-1 agreement {o.top1_agreement:.2%} ({o.differing_top1} differ)"
        mark = "[green]ok[/]" if o.passed else "[red]MISMATCH[/]"
        console.print(
            f"  {mark} output {o.name!r} {o.shape}: max |error| {o.max_abs_error:.3g} "
            f"(relative {o.rel_error:.3g}, bound {report.rtol:g}){top1}",
            highlight=False,
        )
    for layer in report.layers or []:
        mark = "[green]ok[/]" if layer.passed else "[red]MISMATCH[/]"
        error = f"{int(layer.max_abs_error)} bits differ" if layer.encoding == "sign-bits" else \
            f"max |error| {layer.max_abs_error:.3g}"
        console.print(f"  {mark} layer {layer.layer!r} ({layer.compiled_node} vs {layer.reference_node}, "
                      f"{layer.encoding}): {error}", highlight=False)
    if report.first_divergence is not None:
        d = report.first_divergence
        where = f"layer {d.layer!r}: " if d.layer else ""
        console.print(
            f"  first divergence: {where}tensor {d.tensor!r} (reference node {d.reference_node!r}, compiled node "
            f"{d.compiled_node!r}), max |error| {d.max_abs_error:.3g}",
            highlight=False,
        )
    if report.ties:
        console.print(f"  {report.tie_codes} codes differ at rounding ties (in {len(report.ties)} quantizers); "
                      "compared from the compiled codes there", highlight=False)
    if report.tie_mismatch:
        console.print(f"  not a rounding tie: {report.tie_mismatch}", highlight=False)
    verdict = "[bold green]PARITY OK[/]" if report.passed else "[bold red]PARITY FAILED[/]"
    console.print(f"{verdict} on inputs {report.inputs}", highlight=False)


@click.group(cls=DefaultCompileGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="qcompile")
def main() -> None:
    """Compile 1-3 bit QONNX models into fast onnxruntime custom ops, and verify them.

    \b
    qcompile model.onnx --wbits 1           compile (same as `qcompile compile ...`)
    qcompile inspect model.onnx             per-layer table, no compiling
    qcompile verify ref.onnx model.q.onnx   parity check
    qcompile bench model.q.onnx --vs ref.onnx
    qcompile train --model convnet ...      train and export a low-bit model
    """


BITS = click.IntRange(1, 8)  # compiler.SUPPORTED_WBITS / SUPPORTED_ABITS


@main.command("compile")
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--wbits", type=BITS, help="Weight bit width (default: what the model holds).")
@click.option("--abits", type=BITS, help="Activation bit width (default: what the model holds).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Default: MODEL.q.onnx")
@click.option("--inputs", type=click.Path(exists=True, dir_okay=False), help=".npz of inputs for the parity check")
@click.option("--no-verify", is_flag=True, help="Skip the parity check.")
@click.option("--calib", type=click.Path(exists=True, dir_okay=False),
              help="Float models: .npz of calibration inputs for activation quantization (--abits).")
def compile_command(model, wbits, abits, output, inputs, no_verify, calib) -> None:
    """Compile MODEL (QONNX) into qcompile ops; print the layer table and the parity verdict."""
    import onnx_ir as ir

    from qcompile.compiler import compile as compile_model

    try:
        result = compile_model(model, output, wbits=wbits, abits=abits, check_parity=not no_verify,
                               parity_inputs=inputs, calib=calib)
    except QCompileError as exc:
        _fail(exc)
    except ir.passes.PassError as exc:  # a pass failed: name it and its cause, no traceback
        cause = exc.__cause__.__cause__ if exc.__cause__ is not None and exc.__cause__.__cause__ else exc.__cause__
        _fail(QCompileError(f"{exc.__cause__ or exc}: {type(cause).__name__}: {cause} (please report this)"))
    if result.ptq is not None:
        p = result.ptq
        top1 = "" if p.top1_agreement is None else f", top-1 agreement with the float model {p.top1_agreement:.2%}"
        console.print(
            f"post-training quantization of a float model: {len(p.quantized)} layer(s) quantized, kept float: "
            f"{', '.join(p.kept_float) or 'none'}; cost vs float: max |error| {p.max_abs_error:.3g} "
            f"(relative {p.rel_error:.3g}){top1}",
            highlight=False,
        )
    print_layer_table(result.rows, f"{model} (W{result.wbits or '?'}/A{result.abits or '?'})")
    console.print(
        f"file size: {_human(result.input_bytes)} -> {_human(result.output_bytes)} "
        f"({result.input_bytes / max(result.output_bytes, 1):.1f}x smaller)",
        highlight=False,
    )
    if result.parity is not None:
        print_parity(result.parity)
    if result.output_path is not None:
        if result.ptq is not None:  # the quantized reference the compiled model is exact against
            from qcompile.modelio import save_atomic

            ref_path = save_atomic(result.reference, result.output_path.with_suffix(".reference.onnx"))
            console.print(f"wrote {ref_path} (the quantized reference)", highlight=False)
        console.print(f"wrote {result.output_path}", highlight=False)
    else:
        console.print("[red]not written:[/] the compiled model failed the parity check", highlight=False)
        sys.exit(1)


@main.command("inspect")
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
def inspect_command(model) -> None:
    """Print what each layer of MODEL holds and what it would compile to."""
    from qcompile.compiler import inspect

    try:
        rows, wbits, abits = inspect(model)
    except QCompileError as exc:
        _fail(exc)
    print_layer_table(rows, f"{model} (W{wbits or 'mixed/fp32'}/A{abits or 'mixed/fp32'})")


@main.command("verify")
@click.argument("reference", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("compiled", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--inputs", type=click.Path(exists=True, dir_okay=False), help=".npz of inputs (default: seeded random)")
@click.option("--batch", type=click.IntRange(1), default=8, show_default=True, help="Batch of random inputs.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), help="Write the report here.")
def verify_command(reference, compiled, inputs, batch, seed, json_path) -> None:
    """Run REFERENCE and COMPILED on the same inputs; exit 1 on a mismatch."""
    from qcompile.verify import verify

    try:
        report = verify(reference, compiled, inputs, batch=batch, seed=seed)
    except (QCompileError, ValueError) as exc:  # ValueError: the two models' outputs differ
        _fail(exc)
    print_parity(report)
    if json_path is not None:
        json_path.write_text(report.to_json())
        console.print(f"wrote {json_path}", highlight=False)
    sys.exit(0 if report.passed else 1)


@main.command("bench")
@click.argument("compiled", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--vs", "reference", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The model to compare with (the reference or float model).")
@click.option("--threads", type=click.IntRange(1), multiple=True, default=(1,), show_default=True)
@click.option("--batch", type=click.IntRange(1), default=1, show_default=True)
@click.option("--repeats", type=click.IntRange(3), default=30, show_default=True)
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), help="Write the numbers here.")
def bench_command(compiled, reference, threads, batch, repeats, json_path) -> None:
    """Time COMPILED against --vs side by side (alternating runs, medians)."""
    from qcompile.bench import bench_models

    try:
        results = bench_models(compiled, reference, threads=threads, batch=batch, repeats=repeats)
    except QCompileError as exc:
        _fail(exc)
    for r in results:
        console.print(
            f"{r['threads']} thread(s), batch {r['batch']}: compiled {r['compiled_ms']:.3f} ms, "
            f"reference {r['reference_ms']:.3f} ms (medians of {r['repeats']}) -> "
            f"[bold]{r['speedup']:.2f}x[/] faster; file {r['reference_bytes'] / max(r['compiled_bytes'], 1):.1f}x smaller",
            highlight=False,
        )
    if json_path is not None:
        json_path.write_text(json.dumps(results, indent=2))
        console.print(f"wrote {json_path}", highlight=False)


def _register_train() -> None:
    try:
        from qcompile.train.cli import train
    except ImportError as exc:  # torch missing: everything but training still works
        missing = str(exc)

        @main.command("train", context_settings={"ignore_unknown_options": True})
        @click.argument("args", nargs=-1, type=click.UNPROCESSED)
        def train(args) -> None:
            """Train a low-bit model (needs torch)."""
            _fail(QCompileError(f"training needs PyTorch: {missing}"))

        return
    main.add_command(train, "train")


_register_train()


if __name__ == "__main__":
    main()
