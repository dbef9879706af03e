"""The benchmark regression check: a machine class without a baseline fails the check (with
the command that creates one) instead of passing without checking anything."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytest.importorskip("pytest_benchmark")


def bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "benchmarks/test_bench_augment.py", "-q", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
    )


@pytest.mark.slow
def test_check_without_a_baseline_fails_and_says_how_to_make_one(tmp_path):
    out = bench("--check", "--baselines-dir", str(tmp_path))
    assert out.returncode == 1, out.stdout
    assert "NO BASELINE for this machine class" in out.stdout
    assert "nox -s bench -- --update-baselines" in out.stdout

    made = bench("--update-baselines", "--baselines-dir", str(tmp_path))
    assert made.returncode == 0, made.stdout
    assert len(list(tmp_path.glob("*.json"))) == 1
    # With a baseline the ratios are compared (one noisy run may or may not regress).
    checked = bench("--check", "--baselines-dir", str(tmp_path)).stdout
    assert "NO BASELINE" not in checked
    assert "no regression against" in checked or "REGRESSION:" in checked
