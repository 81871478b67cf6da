"""One run: train (or resume) an experiment at a seed, export, compile, evaluate the PyTorch
module, the reference and the compiled ONNX on the whole test set, time it; write result.json."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import click

from .experiments import Experiment


def log(msg: str) -> None:
    print(msg, flush=True)


def write_json(path: Path, obj: Any) -> None:
    from qcompile.fileio import write_bytes_atomic

    write_bytes_atomic(path, (json.dumps(obj, indent=2, default=_json_default) + "\n").encode())


def save_npy(path: Path, arr: Any) -> None:
    import io

    import numpy as np

    from qcompile.fileio import write_bytes_atomic

    buf = io.BytesIO()
    np.save(buf, arr)
    write_bytes_atomic(path, buf.getvalue())


def _json_default(o: Any) -> Any:
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def train_config(exp: Experiment, seed: int, s: dict[str, Any], out: Path) -> Any:
    from qcompile.train import TrainConfig

    init = None
    if exp.init_from:  # the same seed's run of that experiment, beside this one
        init = str(out.parent.parent / exp.init_from / f"seed{seed}" / "checkpoint.pt")
    return TrainConfig(model="convnet", data=s["data"], data_dir=s["data_dir"], wbits=exp.wbits,
                       abits=exp.abits, method=exp.method, epochs=s["epochs"], seed=seed,
                       subset=s["subset"], width=s["width"], out=str(out),
                       device=s.get("device", "cpu"), progress=s["progress"], init_from=init,
                       **exp.train_overrides())


def arm_settings(exp: Experiment, s: dict[str, Any]) -> dict[str, Any]:
    """What must be equal between the two arms of a claim (fair arms), resolved from the
    registry's defaults: optimizer and its hyperparameters, schedule, data, quantized layers,
    weight scale granularity and initialisation."""
    from qcompile.train.quantizers import WeightQuantizer
    from qcompile.train.registry import get_method, method_spec
    from qcompile.train.trainer import keep_first_last_fp

    cfg = train_config(exp, 0, s, Path("unused"))
    m = get_method(cfg.method)
    spec = method_spec(cfg.method, cfg.wbits, cfg.abits, per_channel=cfg.per_channel)
    kind = cfg.optimizer or m.optimizer
    return {"optimizer": kind, "lr": cfg.lr, "weight_decay": cfg.weight_decay,
            "momentum": cfg.momentum, "lr_final": cfg.lr_final, "lr_gamma": cfg.lr_gamma,
            "batch_size": cfg.batch_size, "epochs": cfg.epochs, "subset": cfg.subset,
            "width": cfg.width, "model": cfg.model, "init_from": cfg.init_from,
            "keep_first_last_fp": keep_first_last_fp(cfg),
            "per_channel": (None if spec.weight is None
                            else WeightQuantizer(**spec.weight).per_channel)}


_VOLATILE = ("out", "resume", "progress", "data_dir", "device", "init_from")


def _cfg_key(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k not in _VOLATILE}


def checkpoint_state(run_dir: Path) -> tuple[int, dict[str, Any]] | None:
    """(epochs done, stored config) of a run's checkpoint, or None."""
    ckpt = run_dir / "checkpoint.pt"
    if not ckpt.is_file():
        return None
    import torch

    s = torch.load(ckpt, map_location="cpu", weights_only=False)
    return int(s["epoch"]), s.get("config", {})


def predict_onnx(sess: Any, x: Any, batch: int) -> Any:
    import numpy as np

    name = sess.get_inputs()[0].name
    outs = [sess.run(None, {name: x[i:i + batch]})[0] for i in range(0, len(x), batch)]
    return np.concatenate(outs, 0)


def predict_torch(result: Any, x: Any, batch: int) -> Any:
    import torch

    trainer = result.extra["trainer"]
    trainer._cb("on_eval_begin")  # SQ / stochastic precision: everything quantized at test time
    model = result.model
    model.eval()
    with torch.no_grad():
        outs = [model(x[i:i + batch].to(trainer.device)).cpu() for i in range(0, len(x), batch)]
    return torch.cat(outs, 0).numpy()


def ensure_float_reference(root: Path, dataset: Any, width: float) -> Path:
    """An (untrained) FP32 ConvNet of the same width, exported once: the float latency baseline."""
    path = root / "float_reference.onnx"
    if path.is_file():
        return path
    import torch

    from qcompile.train import build_model, export_onnx

    torch.manual_seed(0)
    model, _ = build_model("convnet", dataset.in_shape, dataset.num_classes, width=width,
                           wbits=32, abits=32, method="fp32")
    model.eval()
    export_onnx(model, path, dataset.in_shape, {"purpose": "float latency baseline"})
    return path


def lowered_summary(rows: list[dict[str, Any]]) -> str:
    """'6× XnorConv, 2× XnorGemm; 2 float' from the compile table."""
    from collections import Counter

    c: Counter[str] = Counter()
    fl = 0
    for r in rows:
        op = r["op_after"].split(" ")[0]
        if op == r["op_before"]:
            fl += 1
        else:
            c[op] += 1
    parts = [f"{n}× {op}" for op, n in c.items()]
    return ", ".join(parts) + (f"; {fl} float" if fl else "") if parts else "none"


def run_one(exp: Experiment, seed: int, s: dict[str, Any], root: Path, tag: str) -> dict[str, Any]:
    import numpy as np

    from qcompile.bench import bench_models
    from qcompile.compiler import compile as qcompile_compile
    from qcompile.errors import QCompileError
    from qcompile.runtime import InferenceSession
    from qcompile.train import train

    run_dir = root / exp.name / f"seed{seed}"
    t_start = time.time()
    cfg = train_config(exp, seed, s, run_dir)
    if cfg.init_from and not (Path(cfg.init_from).parent / "result.json").is_file():
        raise RuntimeError(f"{exp.name} starts from {exp.init_from}'s trained weights: "
                           f"{exp.init_from} seed {seed} is not finished ({cfg.init_from})")
    state = checkpoint_state(run_dir)
    if state is not None:
        done, stored = state
        if stored and _cfg_key(stored) != _cfg_key(cfg.to_dict()):
            diff = sorted(k for k in set(stored) | set(cfg.to_dict())
                          if k not in _VOLATILE and stored.get(k) != cfg.to_dict().get(k))
            raise click.ClickException(
                f"{run_dir}/checkpoint.pt was trained with a different configuration "
                f"({', '.join(diff)}); delete {run_dir} or use another --runs directory")
        what = (f"resuming from epoch {done}/{cfg.epochs}" if done < cfg.epochs
                else "training already done, re-exporting")
        cfg.resume = True
    else:
        what = f"training {cfg.epochs} epoch(s)"
    pre = f"  {exp.name} seed {seed}:"
    log(f"{pre} {what} ({exp.method} {exp.bits}, {tag})")
    t0 = time.time()
    res = train(cfg)
    train_call_s = time.time() - t0
    if not s["progress"]:
        for h in res.history:
            log(f"{pre}   epoch {h['epoch']}: train acc {h['train_acc']:.4f}, "
                f"test acc {h['test_acc']:.4f} ({h['seconds']:.1f} s)")
    data = res.extra["dataset"]
    x = data.x_test
    y = data.y_test.numpy()
    xn = x.numpy()
    ref_path = Path(res.onnx_path)
    float_path = ensure_float_reference(root, data, s["width"])

    log(f"{pre} evaluating PyTorch and the reference ONNX on {len(y)} test images")
    t0 = time.time()
    logits_pt = predict_torch(res, x, s["eval_batch"])
    pred_pt = logits_pt.argmax(1)
    ref_sess = InferenceSession(str(ref_path), threads=s["ort_threads"])
    logits_ref = predict_onnx(ref_sess, xn, s["eval_batch"])
    pred_ref = logits_ref.argmax(1)

    log(f"{pre} compiling")
    comp: dict[str, Any] = {"compiled": None, "compile_error": None, "parity_passed": None,
                            "rows": [], "lowered": "none"}
    comp_path = run_dir / "model.q.onnx"
    comp_bytes = None
    t1 = time.time()
    try:
        cr = qcompile_compile(str(ref_path), str(comp_path))
        comp["rows"] = [asdict(r) for r in cr.rows]
        comp["lowered"] = lowered_summary(comp["rows"])
        comp["parity_passed"] = None if cr.parity is None else bool(cr.parity.passed)
        comp["compiled"] = str(comp_path) if cr.output_path is not None else None
        comp_bytes = cr.model.SerializeToString()
        if cr.output_path is None:
            comp["compile_error"] = "compiled model failed the compiler's parity check; not written"
        comp["wbits"], comp["abits"] = cr.wbits, cr.abits
    except QCompileError as e:
        comp["compile_error"] = f"{type(e).__name__}: {e}"
    compile_s = time.time() - t1
    if comp["compile_error"]:
        log(f"{pre}   not compiled: {comp['compile_error'][:160]}")
    else:
        log(f"{pre}   lowered: {comp['lowered']}")

    pred_c = logits_c = None
    if comp_bytes is not None:
        log(f"{pre} evaluating the compiled ONNX")
        c_sess = InferenceSession(comp_bytes, threads=s["ort_threads"])
        logits_c = predict_onnx(c_sess, xn, s["eval_batch"])
        pred_c = logits_c.argmax(1)
    eval_s = time.time() - t0 - compile_s

    deployed = comp_path if comp["compiled"] else ref_path
    log(f"{pre} timing {deployed.name} vs float at batch 1, 1 thread")
    t1 = time.time()
    b_dep = bench_models(deployed, float_path, threads=(1,), batch=1,
                         repeats=s["bench_repeats"])[0]
    b_ref = bench_models(ref_path, float_path, threads=(1,), batch=1,
                         repeats=s["bench_repeats"])[0] if comp["compiled"] else b_dep
    bench_s = time.time() - t1

    dep_pred = pred_c if pred_c is not None else pred_ref
    ref_size = ref_path.stat().st_size
    dep_size = comp_path.stat().st_size if comp["compiled"] else ref_size
    float_size = float_path.stat().st_size
    hist = res.history
    r: dict[str, Any] = {
        "experiment": exp.name, "groups": list(exp.groups), "method": exp.method,
        "wbits": exp.wbits, "abits": exp.abits, "seed": seed, "settings": tag,
        "train_config": cfg.to_dict(), "quantization": res.report.as_dict(),
        "n_test": len(y),
        "pytorch_acc": float((pred_pt == y).mean()),
        "pytorch_acc_trainer": float(hist[-1]["test_acc"]),
        "reference_acc": float((pred_ref == y).mean()),
        "compiled_acc": float((dep_pred == y).mean()),
        "compiled": comp["compiled"] is not None,
        "differing_reference_vs_pytorch": int((pred_ref != pred_pt).sum()),
        "differing_compiled_vs_reference": (int((pred_c != pred_ref).sum())
                                            if pred_c is not None else None),
        "differing_compiled_vs_pytorch": int((dep_pred != pred_pt).sum()),
        "max_abs_logit_diff_reference_vs_pytorch": float(np.abs(logits_ref - logits_pt).max()),
        "max_abs_logit_diff_compiled_vs_reference": (float(np.abs(logits_c - logits_ref).max())
                                                     if logits_c is not None else None),
        "compile": comp,
        "reference_bytes": ref_size, "compiled_bytes": dep_size, "float_bytes": float_size,
        "size_ratio_vs_reference": dep_size / ref_size,
        "size_ratio_vs_float": dep_size / float_size,
        "latency": {"deployed_ms": b_dep["compiled_ms"], "reference_ms": b_ref["compiled_ms"],
                    "float_ms": b_dep["reference_ms"], "threads": 1, "batch": 1,
                    "repeats": s["bench_repeats"]},
        "latency_ratio_vs_float": b_dep["compiled_ms"] / b_dep["reference_ms"],
        "latency_ratio_vs_reference": b_dep["compiled_ms"] / b_ref["compiled_ms"],
        "history": hist,
        "teacher_test_acc": hist[-1].get("teacher_test_acc"),
        "seconds": {"train_epochs": round(sum(h["seconds"] for h in hist), 2),
                    "train_call_this_invocation": round(train_call_s, 2),
                    "compile": round(compile_s, 2), "evaluate": round(eval_s, 2),
                    "bench": round(bench_s, 2),
                    "run_this_invocation": round(time.time() - t_start, 2)},
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    # the judge pairs per-image predictions (McNemar); result.json stays small
    save_npy(run_dir / "predictions.npy", pred_pt.astype(np.int16))
    if not (root / "test_labels.npy").is_file():
        save_npy(root / "test_labels.npy", y.astype(np.int16))
    write_json(run_dir / "result.json", r)
    dv = r["differing_compiled_vs_reference"]
    log(f"{pre} done: PyTorch {100 * r['pytorch_acc']:.2f} %, "
        f"{'compiled' if r['compiled'] else 'reference ONNX'} {100 * r['compiled_acc']:.2f} % "
        f"({'n/a' if dv is None else dv} differ vs reference, "
        f"{r['differing_compiled_vs_pytorch']} vs PyTorch), "
        f"size ×{r['size_ratio_vs_reference']:.3f}, latency ×{r['latency_ratio_vs_float']:.2f} "
        f"vs float, {r['seconds']['run_this_invocation']:.0f} s")
    return r
