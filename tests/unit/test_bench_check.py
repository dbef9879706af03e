"""The benchmark regression check (benchmarks/conftest.py) on injected ratios, so that no test
of `nox -s tests` passes or fails on a speed figure of this machine: a machine class without a
baseline fails the check (with the command that creates one) instead of passing without
checking anything; a ratio below the baseline's fails it; one within the threshold passes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytest.importorskip("pytest_benchmark")

# A benchmark whose measured ratio is injected: the check's logic, not this machine's speed.
FAKE_BENCHMARK = """
import os

def test_injected_ratio(record_ratio):
    record_ratio("injected", "cpu", float(os.environ["INJECTED_RATIO"]))
"""


def check(tmp_path: Path, ratio: float, *args: str) -> subprocess.CompletedProcess:
    test = tmp_path / "test_injected.py"
    test.write_text(FAKE_BENCHMARK)
    plugins = ["-p", "benchmarks.conftest", "-p", "no:cacheprovider"]
    baselines = ["--baselines-dir", str(tmp_path / "baselines")]
    return subprocess.run(
        [sys.executable, "-m", "pytest", *plugins, str(test), "-q", *baselines, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "INJECTED_RATIO": str(ratio), "PYTHONPATH": str(REPO)},
    )


def test_check_without_a_baseline_fails_and_says_how_to_make_one(tmp_path):
    out = check(tmp_path, 10.0, "--check")
    assert out.returncode == 1, out.stdout + out.stderr
    assert "NO BASELINE for this machine class" in out.stdout
    assert "nox -s bench -- --update-baselines" in out.stdout


def test_check_fails_on_a_regression_and_passes_within_the_threshold(tmp_path):
    made = check(tmp_path, 10.0, "--update-baselines")
    assert made.returncode == 0, made.stdout + made.stderr
    (baseline,) = (tmp_path / "baselines").glob("*.json")
    assert json.loads(baseline.read_text())["runs"] == [{"injected[cpu]": 10.0}]

    kept = check(tmp_path, 8.6, "--check")  # 14% below: within the 15% threshold
    assert kept.returncode == 0, kept.stdout
    assert "no regression against" in kept.stdout

    fell = check(tmp_path, 8.4, "--check")  # 16% below
    assert fell.returncode == 1
    assert "REGRESSION:" in fell.stdout and "injected[cpu]: 8.40x < baseline 10.00x" in fell.stdout


def test_a_missing_baseline_is_recorded_with_how_to_commit_it(tmp_path):
    """The GPU job's way: no baseline for this GPU yet, so the run's ratios go to the artifact
    and the job says how to commit them; once committed, a regression fails the check."""
    out = check(tmp_path, 10.0, "--check", "--record-missing", str(tmp_path / "new"))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "NO BASELINE for this machine class: nothing was checked" in out.stdout
    (recorded,) = (tmp_path / "new").glob("*.json")
    assert f"commit it as benchmarks/baselines/{recorded.name}" in out.stdout
    assert json.loads(recorded.read_text())["runs"] == [{"injected[cpu]": 10.0}]

    (tmp_path / "baselines").mkdir()
    recorded.rename(tmp_path / "baselines" / recorded.name)
    fell = check(tmp_path, 5.0, "--check", "--record-missing", str(tmp_path / "new"))
    assert fell.returncode == 1 and "REGRESSION:" in fell.stdout
