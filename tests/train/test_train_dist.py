"""torchrun --nproc_per_node 2 on CPU (gloo): gradients averaged, identical weights, one writer."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

SCRIPT = textwrap.dedent("""
    import os, sys, torch, torch.distributed as dist
    from qcompile.train import train
    out = sys.argv[1]
    r = train(model="convnet", data="synthetic", method="ste", width=0.25, epochs=2,
              batch_size=32, progress=False, out=out, seed=3)
    rank = dist.get_rank()
    torch.save({k: v.cpu() for k, v in r.model.state_dict().items()},
               os.path.join(out, f"weights_rank{rank}.pt"))
    with open(os.path.join(out, f"world_rank{rank}.txt"), "w") as f:
        f.write(str(dist.get_world_size()))
    dist.destroy_process_group()
""")


def test_torchrun_two_processes(tmp_path: Path):
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    if torchrun is None:  # torch always ships it next to the interpreter; say so if not
        pytest.fail(f"torchrun not found next to {sys.executable}")
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.run([torchrun, "--standalone", "--nproc_per_node", "2",
                           str(script), str(out)], env=env, capture_output=True, text=True,
                          timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    w0 = torch.load(out / "weights_rank0.pt")
    w1 = torch.load(out / "weights_rank1.pt")
    assert (out / "world_rank0.txt").read_text() == "2"
    for k in w0:  # all-reduced gradients and synchronised BN statistics: identical
        assert torch.equal(w0[k], w1[k]), k
    files = sorted(p.name for p in out.iterdir())
    assert {"metrics.json", "learning_curve.png", "checkpoint.pt", "model.onnx"} <= set(files)
    assert not [f for f in files if f.endswith(".tmp")]  # rank 0 alone wrote, atomically
    import json

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and len(metrics["epochs"]) == 2
