"""The hostile-input corpus: bad model files, bad inputs files, bad output paths and bad flags,
each a CLI call that must end in one clean line `error: ...` with the right exit code."""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from graphs import GraphBuilder, binary_conv_model
from onnx import TensorProto, helper


@dataclass
class Case:
    id: str
    argv: list[str]
    exit_code: int
    expect: str  # a piece of the error message (lowercase match)
    files: dict[str, str] = field(default_factory=dict)


def _save(model: onnx.ModelProto, path: Path) -> None:
    path.write_bytes(model.SerializeToString())


def _quant_model(bits: float) -> onnx.ModelProto:
    """x -> Quant(bits) -> Conv(Quant(bits) weights): a multi-bit layer with the given bit width."""
    g = GraphBuilder(3)
    w = g.quant(g.const(g.rng.standard_normal((8, 8, 3, 3)).astype(np.float32), "w"), 0.25, 2)
    y = g.op("Conv", [g.quant("x", 0.5, 2), w], name="conv", kernel_shape=[3, 3])
    model = g.model({"x": [1, 8, 6, 6]}, [y])
    for init in model.graph.initializer:  # every bit-width constant ("b") gets the hostile value
        if init.name.startswith("b"):
            init.CopyFrom(onnx.numpy_helper.from_array(np.asarray(bits, np.float32), init.name))
    return model


def _single_op_model(elem_type: int, dims) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", elem_type, dims)
    y = helper.make_tensor_value_info("y", elem_type, dims)
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"], name="id")], "g", [x], [y])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def bad_models(root: Path) -> dict[str, tuple[Path, str]]:
    """name -> (path, a piece of the message the error must carry)."""
    good = binary_conv_model(cin=8, cout=8)
    data = good.SerializeToString()
    out: dict[str, tuple[Path, str]] = {}

    def put(name: str, expect: str, content: bytes | onnx.ModelProto | None = None) -> Path:
        path = root / f"{name}.onnx"
        if isinstance(content, onnx.ModelProto):
            _save(content, path)
        elif content is not None:
            path.write_bytes(content)
        out[name] = (path, expect)
        return path

    put("missing", "no such file")
    (root / "folder.onnx").mkdir()
    out["folder"] = (root / "folder.onnx", "directory")
    for name, target in (("devzero", "/dev/zero"), ("devnull", "/dev/null")):
        os.symlink(target, root / f"{name}.onnx")
        out[name] = (root / f"{name}.onnx", "device")
    os.symlink(root / "nowhere.onnx", root / "dangling.onnx")
    out["dangling"] = (root / "dangling.onnx", "no such file")
    put("empty", "no graph nodes", b"")
    put("text", "not an onnx model", b"this is not a protobuf\n")
    put("json", "not an onnx model", b'{"graph": {"node": []}}')
    for seed in range(4):
        put(f"random{seed}", "onnx model", np.random.default_rng(seed).bytes(64 + 300 * seed))
    for cut in (10, len(data) // 2, len(data) - 3):
        put(f"truncated{cut}", "onnx model", data[:cut])
    put("pickle", "onnx model", pickle.dumps({"weights": [1.0, 2.0]}))
    npz = root / "as_model.npz"
    np.savez(npz, x=np.zeros(3))
    put("npz", "onnx model", npz.read_bytes())

    no_opset = onnx.ModelProto()
    no_opset.CopyFrom(good)
    del no_opset.opset_import[1:]
    put("no_qonnx_opset", "not a valid onnx model", no_opset)
    dup_init = onnx.ModelProto()
    dup_init.CopyFrom(good)
    dup_init.graph.initializer.append(dup_init.graph.initializer[0])
    put("duplicate_initializer", "not a valid onnx model", dup_init)
    cycle = onnx.ModelProto()
    cycle.CopyFrom(good)
    first, last = cycle.graph.node[0], cycle.graph.node[-1]
    first.input[0] = last.output[0]
    put("cycle", "not a valid onnx model", cycle)
    dup_out = onnx.ModelProto()
    dup_out.CopyFrom(good)
    dup_out.graph.output.append(dup_out.graph.output[0])
    put("duplicate_output", "more than once", dup_out)
    no_out = onnx.ModelProto()
    no_out.CopyFrom(good)
    del no_out.graph.output[:]
    put("no_outputs", "no graph outputs", no_out)
    no_nodes = onnx.ModelProto()
    no_nodes.CopyFrom(good)
    del no_nodes.graph.node[:]
    put("no_nodes", "no graph nodes", no_nodes)
    future = onnx.ModelProto()
    future.CopyFrom(good)
    future.ir_version = 99
    put("ir_version_99", "not a valid onnx model", future)
    unknown = _single_op_model(TensorProto.FLOAT, [1, 4])
    unknown.graph.node[0].op_type = "Frobnicate"
    put("unknown_op", "not a valid onnx model", unknown)
    # a packed 6-bit initializer with more bytes than its dims (onnx reads it, onnx_ir's constant
    # folding raised: a fuzz finding)
    float6 = getattr(TensorProto, "FLOAT6E2M3", None)  # onnx >= 1.20
    if float6 is not None:
        f6 = TensorProto(name="w6", data_type=float6, dims=[4, 16], raw_data=bytes(256))  # 48 needed
        f6_init = _single_op_model(TensorProto.FLOAT, [1, 4])
        f6_init.graph.initializer.append(f6)
        put("float6_raw_size", "cannot be read", f6_init)
    # a QONNX attribute of the wrong type (onnx checks no custom op's attributes; a fuzz finding)
    untyped = onnx.AttributeProto.UNDEFINED
    for label, attr, expect in (("float", helper.make_attribute("signed", 1.0), "attribute 'signed' must be an int"),
                                ("undefined", onnx.AttributeProto(name="signed", type=untyped),
                                 "attribute 'signed' has no type"),
                                ("unknown_untyped", onnx.AttributeProto(name="si]ned", type=untyped),
                                 "attribute 'si]ned' has no type")):
        typed = _quant_model(4.0)
        quant = next(n for n in typed.graph.node if n.op_type == "Quant")
        kept = [a for a in quant.attribute if a.name != attr.name]
        del quant.attribute[:]
        quant.attribute.extend([*kept, attr])
        put(f"quant_attr_{label}", expect, typed)
    for label, bits in (("nan", float("nan")), ("inf", float("inf")), ("zero", 0.0), ("33", 33.0),
                        ("negative", -2.0), ("fraction", 2.5)):
        put(f"quant_bits_{label}", "bit width", _quant_model(bits))
    return out


def input_files(root: Path) -> dict[str, tuple[Path, str]]:
    """Bad --inputs files for binary_conv_model(cin=8): x is float32 [N, 8, 8, 8]."""
    ok = np.zeros((2, 8, 8, 8), np.float32)
    out: dict[str, tuple[Path, str]] = {}

    def npz(name: str, expect: str, **arrays) -> None:
        path = root / f"in_{name}.npz"
        np.savez(path, **arrays)
        out[name] = (path, expect)

    npz("wrong_name", "expected arrays named", y=ok)
    npz("extra_name", "unknown", x=ok, z=ok)
    npz("empty", "missing", )
    npz("wrong_rank", "shape", x=ok[0])
    npz("wrong_channels", "shape", x=np.zeros((2, 3, 8, 8), np.float32))
    npz("wrong_spatial", "shape", x=np.zeros((2, 8, 5, 8), np.float32))
    npz("float64", "must be float32", x=ok.astype(np.float64))
    npz("int", "must be float32", x=ok.astype(np.int32))
    npz("objects", "python objects", x=np.array([{"a": 1}], dtype=object))
    for name, content, expect in (("garbage", b"not a zip file", "not an .npz"),
                                  ("pickle", pickle.dumps({"x": ok}), "pickle"),
                                  ("empty_file", b"", "not an .npz")):
        path = root / f"in_{name}.npz"
        path.write_bytes(content)
        out[name] = (path, expect)
    npy = root / "in_npy.npy"
    np.save(npy, ok)
    out["npy"] = (npy, ".npy")
    out["missing"] = (root / "in_missing.npz", "no such file")
    (root / "in_folder.npz").mkdir()
    out["folder"] = (root / "in_folder.npz", "directory")
    return out


def content_models(root: Path) -> dict[str, tuple[Path, str]]:
    """Valid models whose parity check cannot run: the error must say why, in one line."""
    out: dict[str, tuple[Path, str]] = {}
    g = GraphBuilder(4)  # symbolic spatial dims: random inputs of 1x1 are smaller than the 3x3 kernel
    y = g.op("Conv", [g.bipolar("x"), g.binary_weight((8, 8, 3, 3))], name="conv", kernel_shape=[3, 3])
    path = root / "symbolic_spatial.onnx"
    _save(g.model({"x": ["N", 8, "H", "W"]}, [y]), path)
    out["symbolic_spatial"] = (path, "onnxruntime failed running")
    path = root / "huge_batch.onnx"
    _save(_with_batch(binary_conv_model(cin=8, cout=8), 2**31), path)
    out["huge_batch"] = (path, "too large for random inputs")
    path = root / "string_input.onnx"
    _save(_single_op_model(TensorProto.STRING, [2]), path)
    out["string_input"] = (path, "element type string")  # compile stops earlier: no quantized layer
    return out


def _with_batch(model: onnx.ModelProto, batch: int) -> onnx.ModelProto:
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = batch
    return model


def corpus(root: Path, good: Path, compiled: Path) -> list[Case]:
    cases: list[Case] = []
    for name, (path, expect) in bad_models(root).items():
        cases += [
            Case(f"compile-{name}", ["compile", str(path)], 1, expect),
            Case(f"inspect-{name}", ["inspect", str(path)], 1, expect),
            Case(f"verify-ref-{name}", ["verify", str(path), str(compiled)], 1, expect),
            Case(f"verify-comp-{name}", ["verify", str(good), str(path)], 1, expect),
        ]
    for name, (path, expect) in input_files(root).items():
        cases += [
            Case(f"verify-inputs-{name}", ["verify", str(good), str(compiled), "--inputs", str(path)], 1, expect),
            Case(f"compile-inputs-{name}", ["compile", str(good), "-o", str(root / "o.onnx"), "--inputs", str(path)],
                 1, expect),
        ]
    for name, (path, expect) in content_models(root).items():
        compile_expect = "no quantized" if name == "string_input" else expect
        cases += [
            Case(f"compile-{name}", ["compile", str(path), "-o", str(root / "o.onnx")], 1, compile_expect),
            Case(f"verify-self-{name}", ["verify", str(path), str(path)], 1, expect),
        ]
    _save(_with_batch(binary_conv_model(cin=8, cout=8), 2), root / "fixed_batch.onnx")
    a_file = root / "a_file.txt"
    a_file.write_text("x")
    (root / "outdir").mkdir()
    for name, out, expect in (
        ("same_as_input", good, "is the input model"),
        ("same_via_dotdot", good.parent / "outdir" / ".." / good.name, "is the input model"),
        ("under_dev_null", Path("/dev/null/x.onnx"), "not a directory"),
        ("under_a_file", a_file / "x.onnx", "not a directory"),
        ("existing_dir", root / "outdir", "is a directory"),
    ):
        cases.append(Case(f"compile-output-{name}", ["compile", str(good), "-o", str(out)], 1, expect))
    cases.append(Case("verify-json-under-a-file", ["verify", str(good), str(compiled), "--json", str(a_file / "r.json")],
                      1, "not a directory"))
    cases.append(Case("inspect-json-under-a-file", ["inspect", str(good), "--json", str(a_file / "r.json")],
                      1, "not a directory"))
    cases.append(Case("verify-batch-vs-fixed", ["verify", str(root / "fixed_batch.onnx"), str(compiled), "--batch", "64"],
                      1, "fix the batch"))
    g, c = str(good), str(compiled)
    for name, argv, expect in (
        ("wbits-0", [g, "--wbits", "0"], "--wbits"),
        ("wbits-9", [g, "--wbits", "9"], "--wbits"),
        ("wbits-text", [g, "--wbits", "one"], "--wbits"),
        ("abits-9", [g, "--abits", "9"], "--abits"),
        ("unknown-option", [g, "--frobnicate"], "no such option"),
        ("mistyped-option", [g, "--wbit", "1"], "--wbits"),
        ("mistyped-inspect", ["inpsect", g], "did you mean 'inspect'"),
        ("mistyped-verify", ["verfy", g, c], "did you mean 'verify'"),
        ("mistyped-bench", ["bnech", c, "--vs", g], "did you mean 'bench'"),
        ("verify-one-arg", ["verify", g], "missing argument"),
        ("verify-three-args", ["verify", g, c, c], "unexpected extra argument"),
        ("bench-no-vs", ["bench", c], "--vs"),
        ("bench-repeats-1", ["bench", c, "--vs", g, "--repeats", "1"], "--repeats"),
        ("bench-threads-0", ["bench", c, "--vs", g, "--threads", "0"], "--threads"),
        ("verify-batch-0", ["verify", g, c, "--batch", "0"], "--batch"),
        ("verify-seed-text", ["verify", g, c, "--seed", "x"], "--seed"),
        ("compile-no-model", ["compile"], "missing argument"),
        ("inspect-mistyped-option", ["inspect", g, "--jsn", "-"], "--json"),
    ):
        cases.append(Case(f"usage-{name}", argv, 2, expect))
    return cases
