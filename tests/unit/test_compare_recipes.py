"""The fast-vs-paper recipe comparison script, as a smoke run on CPU: it trains both recipes,
summarizes validation accuracy and wall time per size with a verdict, fails loudly on a run
that fails, and reports the runs the deadline cut."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from resnet_repro.archive_writer import write_fake_cifar10

SCRIPT = Path(__file__).resolve().parents[2] / ".ci" / "compare_recipes.py"


def run(archive, out, *extra):
    cmd = [sys.executable, str(SCRIPT), "--archive", str(archive), "--out", str(out)]
    return subprocess.run(
        [*cmd, "--sizes", "1", "--seeds", "0", *extra], capture_output=True, text=True
    )


@pytest.mark.large
def test_smoke_run_compares_both_recipes(tmp_path):
    # 600 training images: enough for the fast recipe's batch of 512.
    archive = write_fake_cifar10(tmp_path / "f.tar.gz", train_per_batch=150, test_size=20)
    done = run(
        archive,
        tmp_path / "r",
        "--epochs",
        "1",
        "--device",
        "cpu",
        "--train-args",
        "--valid-fraction 0.2 --no-compile",
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / "r/summary.json").read_text())
    for recipe in ("fast", "paper-valid"):
        r = summary["runs"][f"{recipe}-n1-seed0"]
        assert r["status"] == "ran" and 0 <= r["valid_acc"] <= 1 and r["seconds"] > 0
    assert summary["sizes"]["1"]["verdict"].split()[0] in ("meets", "misses")
    assert "SMOKE RUN: 1 epochs" in (tmp_path / "r/summary.md").read_text()


def test_a_failed_run_fails_and_the_deadline_is_reported(fake_archive, tmp_path):
    done = run(fake_archive, tmp_path / "r", "--epochs", "1", "--device", "cpu")
    summary = json.loads((tmp_path / "r/summary.json").read_text())
    assert done.returncode == 1  # 45k/5k split and batch 512 do not fit 200 images
    assert summary["sizes"]["1"]["verdict"].startswith("not measured")
    late = run(fake_archive, tmp_path / "late", "--deadline", "0")
    runs = json.loads((tmp_path / "late/summary.json").read_text())["runs"]
    assert late.returncode == 0 and {r["status"] for r in runs.values()} == {"not run (deadline)"}
