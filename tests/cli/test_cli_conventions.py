"""CLI conventions (issue 15): errors on stderr, exit codes, --json on every command, fast start,
the Python API names, what verify says about its inputs, PTQ warnings, interrupted writes."""

from __future__ import annotations

import inspect as pyinspect
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from graphs import GraphBuilder, binary_conv_model

import qcompile
from qcompile import fileio
from qcompile.cli import main


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture
def models(tmp_path):
    ref = tmp_path / "bin.onnx"
    onnx.save(binary_conv_model(cin=8, cout=8), ref)
    comp = tmp_path / "bin.q.onnx"
    assert run("compile", ref, "-o", comp).exit_code == 0
    return ref, comp


def test_help_imports_no_heavy_module():
    # What makes `qcompile --help` slow is importing torch / onnx / onnxruntime; the test checks
    # that none is imported (timings are measured by hand, never asserted: the VM is shared).
    code = ("import sys; import qcompile.cli; "
            "from click.testing import CliRunner; r = CliRunner().invoke(qcompile.cli.main, ['--help']); "
            "assert r.exit_code == 0, r.output; "
            "print(sorted(m for m in ('torch', 'onnx', 'onnxruntime', 'numpy', 'onnx_ir') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"  # nothing heavy imported for --help
    proc = subprocess.run([sys.executable, "-m", "qcompile.cli", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "1-4 bit" in proc.stdout


def test_api_names_are_functions_whatever_was_imported():
    import qcompile.bench
    import qcompile.compiler
    import qcompile.verify

    for name in ("compile", "verify", "inspect", "bench"):
        assert pyinspect.isfunction(getattr(qcompile, name)), name
    assert qcompile.verify.__module__ == "qcompile.verify" and qcompile.bench.__name__ == "bench"
    proc = subprocess.run([sys.executable, "-c", "import qcompile.verify, qcompile.bench, qcompile; "
                           "print(callable(qcompile.verify), callable(qcompile.bench))"],
                          capture_output=True, text=True, check=True)
    assert proc.stdout.split() == ["True", "True"]


def test_errors_go_to_stderr_only(tmp_path):
    result = run("inspect", tmp_path / "nope.onnx")
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr == f"error: no such file: {tmp_path / 'nope.onnx'}\n"


def test_bare_command_prints_the_help():
    result = run()
    assert result.exit_code in (0, 2) and result.stdout.startswith("Usage: ") and "error:" not in result.output


def test_debug_shows_the_traceback(tmp_path):
    result = run("--debug", "inspect", tmp_path / "nope.onnx")
    assert result.exit_code == 1 and "Traceback" in result.stderr and "error: no such file" in result.stderr
    result = run("inspect", tmp_path / "nope.onnx", "--debug")
    assert "Traceback" in result.stderr


def test_json_to_stdout_for_every_command(models):
    ref, comp = models
    cases = {
        "inspect": ["inspect", ref, "--json", "-"],
        "verify": ["verify", ref, comp, "--json", "-"],
        "bench": ["bench", comp, "--vs", ref, "--repeats", "3", "--json", "-"],
        "compile": ["compile", ref, "-o", ref.with_name("again.onnx"), "--json", "-"],
    }
    for command, argv in cases.items():
        result = run(*argv)
        assert result.exit_code == 0, result.output
        data = json.loads(result.stdout)  # stdout is the JSON alone; the human report went to stderr
        assert data["schema"] == f"qcompile.{command}/1"
        assert result.stderr.strip()
    assert not (ref.parent / "-").exists()


def test_json_schemas(models, tmp_path):
    ref, comp = models
    out = tmp_path / "c.json"
    assert run("compile", ref, "-o", tmp_path / "x.onnx", "--json", out).exit_code == 0
    data = json.loads(out.read_text())
    assert data["output"] == str(tmp_path / "x.onnx") and data["wbits"] == 1 and data["parity"]["passed"]
    assert data["layers"][0]["op_after"].startswith("XnorConv") and data["input_bytes"] > data["output_bytes"]
    assert run("inspect", ref, "--json", out).exit_code == 0
    data = json.loads(out.read_text())
    assert [r["name"] for r in data["layers"]] == ["conv"] and data["layers"][0]["op_after"] == "Conv"
    assert run("verify", ref, comp, "--json", out).exit_code == 0
    data = json.loads(out.read_text())
    assert data["passed"] and data["input_source"].startswith("random") and data["inputs"] == {"x": [8, 8, 8, 8]}
    assert data["layers"][0]["encoding"] in ("float", "sign-bits")


def test_verify_says_what_inputs_it_used_and_uses_the_models_batch(tmp_path):
    model = binary_conv_model(cin=8, cout=8)
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 3
    ref, comp = tmp_path / "r.onnx", tmp_path / "c.onnx"
    onnx.save(model, ref)
    assert run("compile", ref, "-o", comp).exit_code == 0
    result = run("verify", ref, comp)
    assert result.exit_code == 0, result.output
    assert "inputs: x [3, 8, 8, 8] float32 (random standard normal (seed 0, batch 3: the model's fixed batch))" \
        in result.output
    result = run("verify", ref, comp, "--batch", "64")
    assert result.exit_code == 1 and "fix the batch to 3" in result.stderr
    npz = tmp_path / "x.npz"
    np.savez(npz, x=np.ones((3, 8, 8, 8), np.float32))
    result = run("verify", ref, comp, "--inputs", npz)
    assert result.exit_code == 0 and f"(file {npz})" in result.output


def test_verify_of_a_model_with_infinities_against_itself_passes(tmp_path):
    g = GraphBuilder(1)
    w = g.rng.standard_normal((4, 8, 1, 1)).astype(np.float32)
    w[0, 0, 0, 0] = np.inf
    y = g.op("Conv", [g.bipolar("x"), g.binary_weight((8, 8, 3, 3))], name="bconv", kernel_shape=[3, 3])
    y = g.op("Conv", [y, g.const(w)], name="head", kernel_shape=[1, 1])
    path = tmp_path / "inf.onnx"
    onnx.save(g.model({"x": [2, 8, 5, 5]}, [y]), path)
    result = run("verify", path, path)
    assert result.exit_code == 0, result.output
    assert "max |error| 0 " in result.output and "PARITY OK" in result.output


def test_nan_aware_compare():
    from qcompile.verify import compare_output

    ref = np.array([[1.0, np.nan, np.inf, -np.inf]], np.float32)
    assert compare_output("y", ref, ref.copy(), 1e-4).max_abs_error == 0.0
    assert compare_output("y", ref, ref.copy(), 1e-4).passed
    other = ref.copy()
    other[0, 1] = 0.0  # NaN in one only
    assert not compare_output("y", ref, other, 1e-4).passed
    other = ref.copy()
    other[0, 2] = -np.inf
    assert compare_output("y", ref, other, 1e-4).max_abs_error == np.inf


def _float_model() -> onnx.ModelProto:
    g = GraphBuilder(3)
    x = g.op("Conv", ["input", g.const((g.rng.standard_normal((16, 1, 3, 3)) * 0.5).astype(np.float32))],
             kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    x = g.op("Relu", [x])
    w = (g.rng.standard_normal((16, 16, 3, 3)) * 0.1).astype(np.float32)
    x = g.op("Relu", [g.op("Conv", [x, g.const(w)], kernel_shape=[3, 3], pads=[1, 1, 1, 1])])
    x = g.op("Flatten", [g.op("GlobalAveragePool", [x])])
    x = g.op("Gemm", [x, g.const(g.rng.standard_normal((10, 16)).astype(np.float32)),
                      g.const(np.zeros(10, np.float32))], transB=1)
    return g.model({"input": ["N", 1, 12, 12]}, [x])


def test_float_model_gets_the_calib_hint(tmp_path):
    path = tmp_path / "f.onnx"
    onnx.save(_float_model(), path)
    result = run("compile", path)
    assert result.exit_code == 1 and "--calib" in result.stderr
    result = run("compile", path, "--wbits", "1")
    assert result.exit_code == 1 and "--abits N --calib x.npz" in result.stderr and len(result.stderr) < 600


def test_ptq_top1_warning_and_strict(tmp_path, monkeypatch):
    path = tmp_path / "f.onnx"
    onnx.save(_float_model(), path)
    calib = tmp_path / "calib.npz"
    np.savez(calib, input=np.random.default_rng(0).standard_normal((32, 1, 12, 12)).astype(np.float32))
    import qcompile.compiler as compiler_module

    monkeypatch.setattr(compiler_module, "PTQ_TOP1_WARN", 1.01)  # any agreement is "too low"
    result = run("compile", path, "--wbits", "1", "--abits", "1", "--calib", calib, "-o", tmp_path / "q.onnx")
    assert result.exit_code == 0, result.output
    assert "warning: top-1 agreement with the float model" in result.stderr
    result = run("compile", path, "--wbits", "1", "--abits", "1", "--calib", calib, "-o", tmp_path / "s.onnx",
                 "--strict")
    assert result.exit_code == 1 and "nothing written" in result.stderr
    assert not (tmp_path / "s.onnx").exists() and not (tmp_path / "s.reference.onnx").exists()


def test_bench_against_the_float_model(tmp_path):
    path, q = tmp_path / "f.onnx", tmp_path / "q.onnx"
    onnx.save(_float_model(), path)
    calib = tmp_path / "calib.npz"
    np.savez(calib, input=np.random.default_rng(0).standard_normal((8, 1, 12, 12)).astype(np.float32))
    assert run("compile", path, "--wbits", "1", "--abits", "1", "--calib", calib, "-o", q).exit_code == 0
    result = run("bench", q, "--vs", path, "--repeats", "3", "--threads", "1", "--threads", "2", "--json", "-")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [r["threads"] for r in data["runs"]] == [1, 2] and data["reference"] == str(path)


def test_compiled_model_producer_is_qcompile(models):
    _, comp = models
    m = onnx.load(comp)
    assert (m.producer_name, m.producer_version) == ("qcompile", qcompile.__version__)


def test_output_equal_to_input_is_refused(models):
    ref, _ = models
    before = ref.read_bytes()
    result = run("compile", ref, "-o", ref)
    assert result.exit_code == 1 and "is the input model" in result.stderr
    assert ref.read_bytes() == before


@pytest.mark.parametrize("after_rename", [False, True])
def test_interrupt_at_the_final_rename(models, tmp_path, monkeypatch, after_rename):
    ref, _ = models
    out = tmp_path / "int.onnx"
    real_replace = os.replace

    def interrupted_replace(src, dst):
        if not after_rename:  # SIGINT before the rename: nothing is renamed into place
            raise KeyboardInterrupt
        real_replace(src, dst)
        os.kill(os.getpid(), signal.SIGINT)  # a real SIGINT during the rename: held until it is recorded

    monkeypatch.setattr(fileio.os, "replace", interrupted_replace)
    result = run("compile", ref, "-o", out)
    assert result.exit_code == 1 and "Traceback" not in result.output and "Aborted" not in result.output
    if after_rename:
        assert result.stderr == f"error: interrupted; these files were written completely: {out}\n"
        assert onnx.load(out).SerializeToString() == onnx.load(tmp_path.parent / tmp_path.name / "bin.q.onnx").SerializeToString()
    else:
        assert result.stderr == "error: interrupted; nothing was written\n"
        assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".int.onnx")]  # no temporary left


def test_sigint_is_held_back_across_the_rename():
    reached_end = False
    with pytest.raises(KeyboardInterrupt), fileio._sigint_held():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
        reached_end = True  # the signal waited for the block
    assert reached_end


@pytest.mark.parametrize("attrs,reason", [
    (dict(pads=[-1, 0, 0, 0]), "pads=[-1, 0, 0, 0] is outside what the op library accepts"),
    (dict(strides=[2**40, 1]), "strides=[1099511627776, 1] is outside"),
    (dict(dilations=[1, 2**30]), "dilations=[1, 1073741824] is outside"),
])
def test_geometry_the_op_library_rejects_keeps_the_layer_float(tmp_path, attrs, reason):
    g = GraphBuilder(0)
    y = g.op("Conv", [g.bipolar("x"), g.binary_weight((8, 8, 3, 3))], name="odd", kernel_shape=[3, 3], **attrs)
    y = g.op("Conv", [g.bipolar(y), g.binary_weight((8, 8, 1, 1))], name="fine", kernel_shape=[1, 1])
    path = tmp_path / "m.onnx"
    onnx.save(g.model({"x": [2, 8, 8, 8]}, [y]), path)
    # --impl: a layer this small (8 channels) may be estimated faster left float
    result = run("compile", path, "-o", tmp_path / "q.onnx", "--no-verify", "--json", "-", "--impl", "xnor")
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.stdout)["layers"]}
    assert rows["odd"]["op_after"] == "Conv" and reason in rows["odd"]["note"]
    assert rows["fine"]["op_after"].startswith("XnorConv")
    ops = {n.op_type for n in onnx.load(tmp_path / "q.onnx").graph.node}
    assert "Conv" in ops and "XnorConv" in ops
