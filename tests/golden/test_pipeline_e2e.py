"""End to end: `dvc repro` of the CPU-scale pipeline in a scratch copy of the repository.

Every stage runs and the comparison against tests/golden/tables/cpu.yaml passes (the CPU-scale
golden table reproduced by re-running its command on the fake archive); a second `dvc repro`
runs nothing; changing one run's parameter re-runs that run and what depends on it, only.
"""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from resnet_repro.pipeline import run_cpu_pipeline

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(shutil.which("dvc") is None, reason="dvc is not installed")


def repro(work: Path) -> list[str]:
    out = subprocess.run(["dvc", "repro"], cwd=work, capture_output=True, text=True, check=True)
    return re.findall(r"Running stage '([^']+)'", out.stdout)


@pytest.mark.slow
def test_cpu_scale_pipeline(tmp_path):
    work = tmp_path / "work"
    run_cpu_pipeline(REPO, work, echo=False)

    runs = yaml.safe_load((work / "params.yaml").read_text())["runs"]
    for run in runs:
        assert (work / "runs" / run / "seed-0" / "last.ckpt").is_file()
        metrics = json.loads((work / "results/runs" / run / "metrics.json").read_text())
        assert 0.1 < metrics["test_acc_final"] <= 1.0
        assert (work / "results/runs" / run / "history.csv").is_file()
    comparison = json.loads((work / "results/comparison.json").read_text())
    assert comparison["ok"], comparison["failed"]
    assert {r["verdict"] for r in comparison["rows"]} == {"pass"}
    report = work / "results/report"
    assert "## Recipe `seed`" in (report / "report.md").read_text()
    assert {p.name for p in report.glob("*.png")} >= {
        "curves-seed-v1.png",
        "curves-paper-v2.png",
        "accuracy-vs-depth.png",
    }
    assert not (REPO / "runs").exists(), "the repository itself must stay untouched"

    assert repro(work) == []

    params = yaml.safe_load((work / "params.yaml").read_text())
    params["runs"]["paper-v1-n1"]["eval_batch_size"] = 250  # same results, new config
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert repro(work) == ["train@paper-v1-n1", "evaluate@paper-v1-n1", "compare", "report"]
