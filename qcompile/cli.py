"""The `qcompile` command: compile (default), inspect, verify, bench, train.

One error path: every failure ends in `QCompileGroup.main`, which prints one line `error: ...` on
stderr and exits 1 (refused, or parity failed) or 2 (bad usage); `--debug` adds the traceback.
Only click and rich are imported here; onnx, onnxruntime and torch load when a command needs them.
"""

from __future__ import annotations

import difflib
import json
import sys
import traceback
from pathlib import Path

import click

from qcompile import __version__
from qcompile.errors import QCompileError

EXIT_OK, EXIT_REFUSED, EXIT_USAGE = 0, 1, 2
_NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())  # click >= 8.2


class _Consoles:
    """rich consoles made on first use (rich costs import time `--help` need not pay)."""

    def __init__(self) -> None:
        self._out = self._err = None
        self.human_to_stderr = False  # with `--json -`, stdout carries the JSON alone

    def _make(self, stderr: bool):
        from rich.console import Console

        stream = sys.stderr if stderr else sys.stdout
        # Piped output (CI logs, files) gets a wide table instead of rich's 80-column default.
        return Console(file=stream, width=None if stream.isatty() else 160, highlight=False)

    @property
    def out(self):
        if self.human_to_stderr:
            return self.err
        if self._out is None or self._out.file is not sys.stdout:  # CliRunner swaps sys.stdout per run
            self._out = self._make(False)
        return self._out

    @property
    def err(self):
        if self._err is None or self._err.file is not sys.stderr:
            self._err = self._make(True)
        return self._err


consoles = _Consoles()


def _say(text: str) -> None:
    consoles.out.print(text, highlight=False)


def _error_line(message: str) -> None:
    one_line = " ".join(str(message).split())
    click.echo(f"error: {one_line}", err=True)


class _LazyCommand(click.Command):
    """A subcommand whose module loads only when it runs (train needs torch)."""

    def __init__(self, name: str, loader, short_help: str) -> None:
        super().__init__(name, short_help=short_help, help=short_help)
        self._loader = loader

    def make_context(self, info_name, args, parent=None, **extra):
        return self._loader().make_context(info_name, args, parent=parent, **extra)


def _load_train() -> click.Command:
    try:
        from qcompile.train.cli import train
    except ImportError as exc:  # torch missing: everything but training still works
        raise QCompileError(f"training needs PyTorch ({exc}); install it with `pip install qcompile[train]`") from None
    return train


class _Interrupted(Exception):
    """SIGINT, caught before click turns it into "Aborted!"."""


class QCompileGroup(click.Group):
    """`qcompile model.onnx ...` means `qcompile compile model.onnx ...`; the one error path."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            raise _Interrupted from None

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            close = difflib.get_close_matches(args[0], list(self.commands), n=1, cutoff=0.6)
            if close and not Path(args[0]).exists():
                raise click.UsageError(f"no such command {args[0]!r}; did you mean {close[0]!r}?")
            args = ["compile", *args]
        elif args and args[0].startswith("-") and args[0] not in ("--help", "-h", "--version"):
            args = ["compile", *args]  # `qcompile --wbits 1 model.onnx`
        return super().parse_args(ctx, args)

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        from qcompile import fileio

        args = list(sys.argv[1:] if args is None else args)
        writes_before = len(fileio.completed_writes())  # a process (a test) may run main more than once
        debug = "--debug" in args
        args = [a for a in args if a != "--debug"]
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        except _NO_ARGS_IS_HELP as exc:  # bare `qcompile`: the help, as click prints it
            click.echo(exc.ctx.get_help())
            sys.exit(EXIT_USAGE)
        except click.ClickException as exc:
            if debug:
                traceback.print_exc()
            hint = "" if not isinstance(exc, click.UsageError) or exc.ctx is None else \
                f" (see `{exc.ctx.command_path} --help`)"
            _error_line(exc.format_message() + hint)
            sys.exit(exc.exit_code)
        except (_Interrupted, click.Abort, KeyboardInterrupt):
            written = fileio.completed_writes()[writes_before:]
            done = f"these files were written completely: {', '.join(map(str, written))}" if written else \
                "nothing was written"
            _error_line(f"interrupted; {done}")
            sys.exit(EXIT_REFUSED)
        except QCompileError as exc:
            if debug:
                traceback.print_exc()
            _error_line(str(exc))
            sys.exit(EXIT_REFUSED)
        except Exception as exc:  # a bug: still one line, with the way to see more
            if debug:
                traceback.print_exc()
            where = "".join(traceback.format_tb(exc.__traceback__, limit=-1)).split("\n")[0].strip()
            _error_line(f"internal error: {type(exc).__name__}: {exc} ({where}); please report this "
                        "(--debug shows the traceback)")
            sys.exit(EXIT_REFUSED)
        sys.exit(rv if isinstance(rv, int) else EXIT_OK)


def _human(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _times_cell(r) -> str:
    """The chosen implementation's time and the float twin's, and whether they are estimated."""
    if r.time_ms is None or r.float_ms is None:
        return ""
    return f"{r.time_ms:.3f} / {r.float_ms:.3f}" + (" est." if r.timed_by == "estimated" else "")


def print_layer_table(rows, title: str) -> None:
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    timed = any(getattr(r, "float_ms", None) is not None for r in rows)
    cols = ["layer", "op", "W/A bits", "kernel", "weight bytes", "MACs/sample", "impl", "variant"]
    cols += ["ms (chosen / float)"] if timed else []
    for col in (*cols, "why", "note"):
        table.add_column(col, overflow="fold")
    for r in rows:
        op = r.op_before if r.op_after == r.op_before else f"{r.op_before} -> {r.op_after}"
        size = _human(r.bytes_before) if r.bytes_after == r.bytes_before else (
            f"{_human(r.bytes_before)} -> {_human(r.bytes_after)} ({r.bytes_before / max(r.bytes_after, 1):.1f}x)"
        )
        ops = f"{r.binary_ops:,}" if r.binary_ops else ""
        impl = r.impl + (f" (of {', '.join(r.options)})" if r.options and len(r.options) > 1 else "")
        cells = [r.name, op, f"{r.wbits}/{r.abits}", r.kernel, size, ops, impl, r.variant]
        cells += [_times_cell(r)] if timed else []
        table.add_row(*cells, r.why, r.note)
    consoles.out.print(table)


def print_parity(report) -> None:
    shapes = ", ".join(f"{k} {v} {(report.input_dtypes or {}).get(k, '')}".rstrip() for k, v in report.inputs.items())
    _say(f"  inputs: {shapes} ({report.input_source})")
    for o in report.outputs:
        top1 = "" if o.top1_agreement is None else f", top-1 agreement {o.top1_agreement:.2%} ({o.differing_top1} differ)"
        mark = "[green]ok[/]" if o.passed else "[red]MISMATCH[/]"
        _say(f"  {mark} output {o.name!r} {o.shape}: max |error| {o.max_abs_error:.3g} "
             f"(relative {o.rel_error:.3g}, bound {report.rtol:g}){top1}")
    for layer in report.layers or []:
        mark = "[green]ok[/]" if layer.passed else "[red]MISMATCH[/]"
        error = f"{layer.max_abs_error:g} bits differ" if layer.encoding == "sign-bits" else \
            f"max |error| {layer.max_abs_error:.3g}"
        _say(f"  {mark} layer {layer.layer!r} ({layer.compiled_node} vs {layer.reference_node}, "
             f"{layer.encoding}): {error}")
    if report.first_divergence is not None:
        d = report.first_divergence
        where = f"layer {d.layer!r}: " if d.layer else ""
        _say(f"  first divergence: {where}tensor {d.tensor!r} (reference node {d.reference_node!r}, compiled node "
             f"{d.compiled_node!r}), max |error| {d.max_abs_error:.3g}")
    if report.ties:
        _say(f"  {report.tie_codes} codes differ at rounding ties (in {len(report.ties)} quantizers); "
             "compared from the compiled codes there")
    if report.tie_mismatch:
        _say(f"  not a rounding tie: {report.tie_mismatch}")
    verdict = "[bold green]PARITY OK[/]" if report.passed else "[bold red]PARITY FAILED[/]"
    _say(f"{verdict} on inputs {report.inputs}")


def _json_option(f):
    return click.option("--json", "json_path", metavar="FILE|-",
                        help="Also write the result as JSON (schema in README); `-` for stdout.")(f)


def _start_json(json_path: str | None) -> None:
    consoles.human_to_stderr = json_path == "-"


def _write_json(json_path: str | None, data: dict) -> None:
    if json_path is None:
        return
    text = json.dumps(data, indent=2, default=str) + "\n"
    if json_path == "-":
        click.echo(text, nl=False)
        return
    from qcompile.fileio import check_writable_output, write_bytes_atomic

    write_bytes_atomic(check_writable_output(json_path), text.encode())
    _say(f"wrote {json_path}")


def _rows_json(rows) -> list[dict]:
    from dataclasses import asdict

    return [asdict(r) for r in rows]


@click.group(cls=QCompileGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="qcompile")
@click.option("--debug", is_flag=True, help="On an error, also print the Python traceback.")
def main(debug: bool) -> None:
    """Compile 1-4 bit QONNX models into fast onnxruntime custom ops, and verify them.

    \b
    qcompile model.onnx --wbits 1           compile (same as `qcompile compile ...`)
    qcompile inspect model.onnx             per-layer table, no compiling
    qcompile verify ref.onnx model.q.onnx   parity check
    qcompile bench model.q.onnx --vs ref.onnx
    qcompile train --model convnet ...      train and export a low-bit model

    Exit status: 0 ok, 1 refused or parity failed, 2 bad usage. Errors go to stderr.
    """


BITS = click.IntRange(1, 8)  # compiler.SUPPORTED_WBITS / SUPPORTED_ABITS


@main.command("compile")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--wbits", type=BITS, help="Weight bit width (default: what the model holds).")
@click.option("--abits", type=BITS, help="Activation bit width (default: what the model holds).")
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Default: MODEL.q.onnx")
@click.option("--inputs", type=click.Path(path_type=Path), help=".npz of inputs for the parity check")
@click.option("--no-verify", is_flag=True, help="Skip the parity check.")
@click.option("--calib", type=click.Path(path_type=Path),
              help="Float models: .npz of calibration inputs for activation quantization (--abits).")
@click.option("--strict", is_flag=True,
              help="Float models: refuse (exit 1) when top-1 agreement with the float model is below 90%.")
@click.option("--impl", "impl", multiple=True, metavar="[LAYER=]IMPL",
              help="Run every layer that has it (IMPL) or one layer (LAYER=IMPL) as xnor, bitserial, shift, int8 "
                   "or float, instead of the fastest.")
@click.option("--tune", is_flag=True,
              help="Time each layer's implementations on this machine (cached in ~/.cache/qcompile/costs.json, "
                   "or $QCOMPILE_CACHE_DIR) and take the fastest.")
@_json_option
def compile_command(model, wbits, abits, output, inputs, no_verify, calib, strict, impl, tune, json_path) -> None:
    """Compile MODEL (QONNX) into qcompile ops; print the layer table and the parity verdict."""
    from qcompile.compiler import PTQ_TOP1_WARN
    from qcompile.compiler import compile as compile_model

    _start_json(json_path)
    result = compile_model(model, output, wbits=wbits, abits=abits, check_parity=not no_verify,
                           parity_inputs=inputs, calib=calib,
                           min_ptq_top1=PTQ_TOP1_WARN if strict else None, impl=impl, tune=tune)
    if result.ptq is not None:
        p = result.ptq
        top1 = "" if p.top1_agreement is None else f", top-1 agreement with the float model {p.top1_agreement:.2%}"
        _say(f"post-training quantization of a float model: {len(p.quantized)} layer(s) quantized, kept float: "
             f"{', '.join(p.kept_float) or 'none'}; cost vs float: max |error| {p.max_abs_error:.3g} "
             f"(relative {p.rel_error:.3g}){top1}")
        if p.top1_agreement is not None and p.top1_agreement < PTQ_TOP1_WARN:
            click.echo(f"warning: top-1 agreement with the float model is {p.top1_agreement:.1%}, below "
                       f"{PTQ_TOP1_WARN:.0%}: the quantized model predicts differently (--strict refuses this)",
                       err=True)
    print_layer_table(result.rows, f"{model} (W{result.wbits or '?'}/A{result.abits or '?'})")
    _say(f"file size: {_human(result.input_bytes)} -> {_human(result.output_bytes)} "
         f"({result.input_bytes / max(result.output_bytes, 1):.1f}x smaller)")
    for note in result.notes:
        _say(f"note: {note}")
    if result.parity is not None:
        print_parity(result.parity)
    ref_path = None
    if result.output_path is not None and result.ptq is not None:  # the quantized reference, exact against
        from qcompile.modelio import save_atomic

        ref_path = save_atomic(result.reference, result.output_path.with_suffix(".reference.onnx"))
        _say(f"wrote {ref_path} (the quantized reference)")
    if result.output_path is not None:
        _say(f"wrote {result.output_path}")
    _write_json(json_path, {
        "schema": "qcompile.compile/1", "model": str(model),
        "output": None if result.output_path is None else str(result.output_path),
        "reference_output": None if ref_path is None else str(ref_path),
        "wbits": result.wbits, "abits": result.abits,
        "input_bytes": result.input_bytes, "output_bytes": result.output_bytes,
        "layers": _rows_json(result.rows),
        "parity": None if result.parity is None else result.parity.to_dict(),
        "ptq": None if result.ptq is None else vars(result.ptq),
        "notes": list(result.notes),
    })
    if result.output_path is None:
        raise QCompileError("not written: the compiled model failed the parity check")


@main.command("inspect")
@click.argument("model", type=click.Path(path_type=Path))
@_json_option
def inspect_command(model, json_path) -> None:
    """Print what each layer of MODEL holds and what it would compile to."""
    from qcompile.compiler import inspect

    _start_json(json_path)
    rows, wbits, abits = inspect(model)
    print_layer_table(rows, f"{model} (W{wbits or 'mixed/fp32'}/A{abits or 'mixed/fp32'})")
    _write_json(json_path, {"schema": "qcompile.inspect/1", "model": str(model), "wbits": wbits, "abits": abits,
                            "layers": _rows_json(rows)})


@main.command("verify")
@click.argument("reference", type=click.Path(path_type=Path))
@click.argument("compiled", type=click.Path(path_type=Path))
@click.option("--inputs", type=click.Path(path_type=Path), help=".npz of inputs (default: seeded random)")
@click.option("--batch", type=click.IntRange(1),
              help="Batch of random inputs when the model's batch dim is symbolic (default 8).")
@click.option("--seed", type=int, default=0, show_default=True)
@_json_option
def verify_command(reference, compiled, inputs, batch, seed, json_path) -> None:
    """Run REFERENCE and COMPILED on the same inputs; exit 1 on a mismatch."""
    from qcompile.verify import verify

    _start_json(json_path)
    report = verify(reference, compiled, inputs, batch=batch, seed=seed, strict_batch=True)
    print_parity(report)
    _write_json(json_path, {**report.to_dict(), "reference": str(reference), "compiled": str(compiled)})
    sys.exit(EXIT_OK if report.passed else EXIT_REFUSED)


@main.command("bench")
@click.argument("compiled", type=click.Path(path_type=Path))
@click.option("--vs", "reference", type=click.Path(path_type=Path), required=True,
              help="The model to compare with: the reference, or the float model it came from.")
@click.option("--threads", type=click.IntRange(1), multiple=True, default=(1,), show_default=True)
@click.option("--batch", type=click.IntRange(1), default=1, show_default=True)
@click.option("--repeats", type=click.IntRange(3), default=30, show_default=True)
@_json_option
def bench_command(compiled, reference, threads, batch, repeats, json_path) -> None:
    """Time COMPILED against --vs side by side (alternating runs; median and spread)."""
    from qcompile.bench import bench

    _start_json(json_path)
    report = bench(compiled, reference, threads=threads, batch=batch, repeats=repeats)
    kernels = "; ".join(f"{op} {k['selected']} (of {', '.join(k['supported'])})"
                        for op, k in report["kernels"].items()) or "none with variants"
    _say(f"CPU: {report['cpu']}; kernels: {kernels}")
    for r in report["runs"]:
        c, f = r["compiled_ms"], r["reference_ms"]
        _say(f"{r['threads']} thread(s), batch {r['batch']}, {r['repeats']} runs each: compiled {c['median']:.3f} ms "
             f"[{c['p10']:.3f}..{c['p90']:.3f}], reference {f['median']:.3f} ms [{f['p10']:.3f}..{f['p90']:.3f}] "
             f"(median [10th..90th percentile]) -> [bold]{r['speedup']:.2f}x[/] faster; "
             f"file {report['reference_bytes'] / max(report['compiled_bytes'], 1):.1f}x smaller")
    _write_json(json_path, report)


main.add_command(_LazyCommand("train", _load_train, "Train and export a low-bit model (needs torch)."))


if __name__ == "__main__":
    main()
