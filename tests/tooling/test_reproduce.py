"""Smoke test of tools.reproduce: two tiny experiments on digits, outputs, skip and resume."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

pytest.importorskip("torch")
pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")

from tools import reproduce


def test_experiment_list_is_valid():
    from qcompile.train.registry import METHODS, method_spec

    names = [e.name for e in reproduce.EXPERIMENTS]
    assert len(names) == len(set(names))
    groups = {g.key for g in reproduce.GROUPS}
    for e in reproduce.EXPERIMENTS:
        assert e.method in METHODS and set(e.groups) <= groups
        method_spec(e.method, e.wbits, e.abits)  # raises on a combination the trainer refuses
    for g in reproduce.GROUPS:
        for c in g.claims:
            assert c.better in names and c.worse in names
    assert [e.name for e in reproduce.select(("sq",))] == \
        ["bwn-w1a32", "sq-bwn-w1a32", "twn-w2a32", "sq-twn-w2a32"]
    # BCGD's arms start from the FP32 run of their seed: selecting them selects it
    assert [e.name for e in reproduce.select(("bcgd",))] == ["fp32", "cg-w1a4", "bcgd-w1a4"]
    res = CliRunner().invoke(reproduce.main, ["--list"])
    assert res.exit_code == 0 and "aqe-w3a3" in res.output


def test_smoke_run_outputs_skip_and_resume(tmp_path):
    runs, out = tmp_path / "runs", tmp_path / "out"
    args = ["--data", "digits", "--epochs", "1", "--subset", "200", "--seeds", "1",
            "--width", "0.25", "--only", "fp32", "--only", "ste-w1a1", "--bench-repeats", "3",
            "--runs", str(runs), "--out", str(out), "--no-progress"]
    runner = CliRunner()
    res = runner.invoke(reproduce.main, args)
    assert res.exit_code == 0, res.output + repr(res.exception)
    root = runs / "digits-e1-n200-w0.25"
    for name in ("fp32", "ste-w1a1"):
        d = root / name / "seed0"
        assert (d / "result.json").is_file() and (d / "model.onnx").is_file()
        assert (d / "checkpoint.pt").is_file()
    for f in ("results.md", "results.json", "accuracy_vs_bits.png", "learning_curves.png",
              "claims.png"):
        assert (out / f).stat().st_size > 0
    summary = json.loads((out / "results.json").read_text())
    assert all("ci_low" in c and "ci_high" in c for c in summary["claims"])
    by = {r["experiment"]: r for r in summary["runs"]}
    ste, fp = by["ste-w1a1"], by["fp32"]
    # the binary model is compiled and its predictions compared with the reference and PyTorch
    assert ste["compiled"] and (root / "ste-w1a1" / "seed0" / "model.q.onnx").is_file()
    assert isinstance(ste["differing_compiled_vs_reference"], int)
    assert isinstance(ste["differing_compiled_vs_pytorch"], int)
    assert ste["differing_compiled_vs_reference"] == 0
    assert ste["n_test"] == 449 and 0 <= ste["compiled_acc"] <= 1
    assert ste["size_ratio_vs_reference"] < 0.5 and ste["latency_ratio_vs_float"] > 0
    assert any(r["op_after"] != r["op_before"] for r in ste["compile"]["rows"])
    # FP32 has nothing to lower: recorded as not compiled, the reference stands in
    assert not fp["compiled"] and fp["differing_compiled_vs_reference"] is None
    assert fp["compiled_acc"] == fp["reference_acc"]
    agg = {a["name"]: a for a in summary["experiments"]}
    assert agg["ste-w1a1"]["n"] == 1 and agg["aqe-w1a1"]["n"] == 0
    md = (out / "results.md").read_text()
    assert "≠ ref" in md and "AQE > STE at 1/1" in md and "not run yet" in md
    assert summary["command"].startswith("python -m tools.reproduce")

    # second invocation: both runs skipped, nothing rewritten; the README section is filled in
    stamp = (root / "ste-w1a1" / "seed0" / "result.json").stat().st_mtime_ns
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\n<!-- reproduce:begin -->\nSTALE-BLOCK\n<!-- reproduce:end -->\n"
                      "tail\n")
    res = runner.invoke(reproduce.main, [*args, "--readme", str(readme)])
    assert res.exit_code == 0, res.output
    assert res.output.count("finished earlier, skipping") == 2
    assert (root / "ste-w1a1" / "seed0" / "result.json").stat().st_mtime_ns == stamp
    text = readme.read_text()
    assert "STALE-BLOCK" not in text and "AQE > STE at 1/1" in text and text.endswith("tail\n")
    assert "| ste-w1a1 | ste | W1/A1 | 1 |" in text  # the results table itself, not only claims
    assert "(out/results.md)" in text

    # a run interrupted after training (checkpoint, no result.json) resumes from its checkpoint
    (root / "ste-w1a1" / "seed0" / "result.json").unlink()
    res = runner.invoke(reproduce.main, [*args, "--only", "ste-w1a1"])
    assert res.exit_code == 0, res.output
    assert "training already done" in res.output
    again = json.loads((root / "ste-w1a1" / "seed0" / "result.json").read_text())
    assert again["pytorch_acc"] == ste["pytorch_acc"]

    # --reevaluate redoes a finished run's export/compile/evaluation from its checkpoint
    stamp = (root / "ste-w1a1" / "seed0" / "result.json").stat().st_mtime_ns
    res = runner.invoke(reproduce.main, [*args, "--only", "ste-w1a1", "--reevaluate"])
    assert res.exit_code == 0, res.output
    assert "training already done" in res.output and "skipping" not in res.output
    assert (root / "ste-w1a1" / "seed0" / "result.json").stat().st_mtime_ns != stamp
    third = json.loads((root / "ste-w1a1" / "seed0" / "result.json").read_text())
    assert third["pytorch_acc"] == ste["pytorch_acc"] and third["compiled"]


def test_changed_settings_refuse_a_foreign_checkpoint(tmp_path):
    import torch

    d = tmp_path / "runs" / "digits-e1-n200-w0.25" / "fp32" / "seed0"
    d.mkdir(parents=True)
    torch.save({"epoch": 1, "config": {"method": "ste", "epochs": 1}}, d / "checkpoint.pt")
    res = CliRunner().invoke(reproduce.main, [
        "--data", "digits", "--epochs", "1", "--subset", "200", "--seeds", "1", "--width",
        "0.25", "--only", "fp32", "--runs", str(tmp_path / "runs"), "--out",
        str(tmp_path / "out"), "--no-progress"])
    assert res.exit_code != 0 and "different configuration" in res.output


def test_arms_of_every_claim_are_fair():
    """The two arms of each claim share optimizer, schedule, data, quantized layers and scale
    granularity; only the method (or, for MINW-Net, the bit widths) differs."""
    from tools.reproduce.runner import arm_settings

    s = {"data": "fashion-mnist", "data_dir": None, "epochs": 4, "subset": None, "width": 0.5,
         "progress": False}
    by = {e.name: e for e in reproduce.EXPERIMENTS}
    for g in reproduce.GROUPS:
        for c in g.claims:
            a, b = arm_settings(by[c.better], s), arm_settings(by[c.worse], s)
            if a["per_channel"] is None or b["per_channel"] is None:  # FP32: no weight scale
                a.pop("per_channel"), b.pop("per_channel")
            assert a == b, (c.text, {k: (a[k], b[k]) for k in a if a[k] != b[k]})
    # the settings the issue names, checked directly
    twn, sq_twn = arm_settings(by["twn-w2a32"], s), arm_settings(by["sq-twn-w2a32"], s)
    assert twn["per_channel"] and sq_twn["per_channel"]
    assert not sq_twn["keep_first_last_fp"]  # SQ quantizes all layers
    kd, direct = arm_settings(by["kd-w2a2"], s), arm_settings(by["direct-w2a2"], s)
    assert kd["optimizer"] == direct["optimizer"] == "sgd"
    assert by["bcgd-w1a4"].train_overrides().get("bcgd_rho") is None  # ρ from the blend


def test_judge_pairs_seeds_and_needs_the_interval_above_zero():
    import numpy as np

    from tools.reproduce.experiments import Claim
    from tools.reproduce.judge import judge, paired_stats

    claim = Claim("a > b", "a", "b")
    runs = {"a": [{"seed": k, "pytorch_acc": v} for k, v in enumerate((0.90, 0.91, 0.92))],
            "b": [{"seed": k, "pytorch_acc": v} for k, v in enumerate((0.89, 0.90, 0.91))]}
    out = judge(claim, runs)
    # identical paired differences of +1 pp: zero spread, the interval is the point itself
    assert out["delta_pp"] == pytest.approx(1.0) and out["held"]
    assert out["ci_low"] == pytest.approx(0.01) and out["ci_high"] == pytest.approx(0.01)
    # a large unpaired spread but consistent pairs: paired, it holds
    runs["a"] = [{"seed": k, "pytorch_acc": v} for k, v in enumerate((0.80, 0.91, 0.86))]
    runs["b"] = [{"seed": k, "pytorch_acc": v} for k, v in enumerate((0.79, 0.895, 0.85))]
    assert judge(claim, runs)["held"]
    # the t interval with 3 seeds: mean ± t(0.95, 2)·s.e., t = 2.919986
    st = paired_stats([0.01, 0.02, 0.0])
    assert st["se"] == pytest.approx(0.01 / np.sqrt(3))
    assert st["ci_low"] == pytest.approx(0.01 - 2.919986 * 0.01 / np.sqrt(3), rel=1e-6)
    assert judge(claim, {"a": runs["a"][:1], "b": runs["b"][:1]})["held"] is None  # one seed
    # McNemar on pooled predictions: 8 images only "a" gets right, 2 only "b": exact p
    labels = np.zeros(20, np.int16)
    pa, pb = labels.copy(), labels.copy()
    pb[:8] = 1
    pa[8:10] = 1
    out = judge(claim, {"a": runs["a"][:1], "b": runs["b"][:1]}, labels,
                {("a", 0): pa, ("b", 0): pb})
    assert out["discordant"] == {"better_only": 8, "worse_only": 2}
    assert out["mcnemar_p"] == pytest.approx(0.109375)  # 2·P(X ≤ 2), X ~ Bin(10, ½)
