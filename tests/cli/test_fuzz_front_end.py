"""The bounded CI run of fuzz/fuzz_front_end.py: atheris (coverage-guided) when it is installed,
else the random-mutation loop, over a copy of the seed corpus; any crash fails the test."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SECONDS = int(os.environ.get("QCOMPILE_FUZZ_SECONDS", "30"))


def test_fuzz_front_end_bounded_run(tmp_path):
    corpus = tmp_path / "corpus"
    shutil.copytree(ROOT / "fuzz" / "corpus", corpus)
    script = str(ROOT / "fuzz" / "fuzz_front_end.py")
    if importlib.util.find_spec("atheris") is not None:
        argv = [script, str(corpus), f"-max_total_time={SECONDS}", "-rss_limit_mb=4096", "-timeout=20",
                f"-artifact_prefix={tmp_path}/"]
    else:
        argv = [script, "--mutate", "--seconds", str(SECONDS), str(corpus)]
    proc = subprocess.run([sys.executable, *argv], capture_output=True, text=True, cwd=tmp_path,
                          timeout=SECONDS * 4 + 120)
    tail = proc.stderr[-3000:] + proc.stdout[-1000:]
    assert proc.returncode == 0, tail
    assert not list(tmp_path.glob("crash-*")) and not list(tmp_path.glob("timeout-*")), tail
    assert "Done " in proc.stderr or "0 crashes" in proc.stdout, tail
