"""The one-command GPU check (.ci/gpu_check.py): run here on a CPU with a tiny deadline, it
still writes its summary, counts what ran and reports the training run's figures."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytest.importorskip("pytest_benchmark")


@pytest.mark.slow
@pytest.mark.large
def test_gpu_check_writes_a_summary(fake_archive, tmp_path):
    out = tmp_path / "gpu-check"
    cmd = [
        *(sys.executable, str(REPO / ".ci/gpu_check.py"), "--out", str(out)),
        *("--archive", str(fake_archive), "--device", "cpu", "--epochs", "2"),
        *("--deadline", "300", "--train-seconds", "60", "--no-rehearse"),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert {"device", "torch", "cuda", "commit", "date"} <= summary["environment"].keys()
    steps = summary["steps"]
    assert set(steps) == {
        "cuda tier (pytest -m cuda)",
        "cuda benchmarks, whole-step graphs and grouped BN",
        "other cuda benchmarks",
        "rehearsal of params.yaml (dvc repro)",
        "training, paper v1 n=3",
    }
    assert steps["rehearsal of params.yaml (dvc repro)"]["status"] == "not run: --no-rehearse"
    tier = steps["cuda tier (pytest -m cuda)"]
    assert tier["status"] == "ok" and tier["figures"]["failed"] == 0
    training = steps["training, paper v1 n=3"]
    assert training["status"] == "ok" and training["figures"]["epochs"] == 2
    assert 0 <= training["figures"]["valid_acc_final"] <= 1
    assert "# GPU check" in (out / "summary.md").read_text()
