"""`qcompile train` (click command): outputs, --resume, and a clear error for missing data."""

from __future__ import annotations

import json

from click.testing import CliRunner

from qcompile.train.cli import train

ARGS = ["--model", "convnet", "--data", "digits", "--width", "0.25", "--epochs", "1",
        "--batch-size", "64", "--subset", "256", "--quiet"]


def test_cli_writes_outputs_and_resumes(tmp_path):
    out = tmp_path / "run"
    r = CliRunner().invoke(train, [*ARGS, "--out", str(out)])
    assert r.exit_code == 0, r.output
    for name in ("metrics.json", "learning_curve.png", "checkpoint.pt", "model.onnx"):
        assert (out / name).is_file(), name
    m = json.loads((out / "metrics.json").read_text())
    assert [e["epoch"] for e in m["epochs"]] == [1]
    assert {"train_loss", "train_acc", "test_loss", "test_acc"} <= set(m["epochs"][0])
    assert m["quantization"]["quantized"]
    assert (out / "learning_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # --resume continues from the checkpoint: epoch 2 only
    args2 = [a if a != "1" else "2" for a in ARGS]
    r = CliRunner().invoke(train, [*args2, "--out", str(out), "--resume"])
    assert r.exit_code == 0, r.output
    m2 = json.loads((out / "metrics.json").read_text())
    assert [e["epoch"] for e in m2["epochs"]] == [1, 2]
    assert m2["epochs"][0] == m["epochs"][0]


def test_cli_deterministic_with_seed(tmp_path):
    accs = []
    for i in range(2):
        out = tmp_path / f"r{i}"
        r = CliRunner().invoke(train, [*ARGS, "--out", str(out), "--no-export", "--seed", "5"])
        assert r.exit_code == 0, r.output
        accs.append(json.loads((out / "metrics.json").read_text())["epochs"][0]["train_loss"])
    assert accs[0] == accs[1]


def test_cli_missing_dataset_is_a_clear_error(tmp_path):
    r = CliRunner().invoke(train, ["--data", "fashion-mnist", "--data-dir",
                                   str(tmp_path / "nope"), "--out", str(tmp_path / "o")])
    assert r.exit_code != 0
    assert "apt-get install dataset-fashion-mnist" in r.output
    assert "Traceback" not in r.output
    assert r.exception is None or isinstance(r.exception, SystemExit)


def test_cli_resume_without_checkpoint(tmp_path):
    r = CliRunner().invoke(train, [*ARGS, "--out", str(tmp_path / "o"), "--resume"])
    assert r.exit_code != 0 and "checkpoint" in r.output and "Traceback" not in r.output


def test_help_lists_every_fair_arm_option():
    r = CliRunner().invoke(train, ["--help"])
    assert r.exit_code == 0
    for opt in ("--lr-final", "--stage-lr-restart", "--no-stage-lr-restart",
                "--keep-first-last-fp", "--quantize-first-last", "--per-channel",
                "--per-layer", "--bcgd-blend", "--bcgd-rho", "--init-from",
                "--sp-final-fraction", "--teacher-lr", "--aqe-k-start", "--aqe-k-end",
                "--pow2-scale", "--optimizer", "--weight-decay"):
        assert opt in r.output, opt
