"""The rehearsal of the real study, as a user runs it: `resnet-repro rehearse` (what
`nox -s rehearsal` runs) over the committed params.yaml and dvc.yaml. Every stage of every run
and seed runs on the CPU with amounts shrunk; the report is complete and marked, `dvc metrics
show` reads every metrics file, and the repository is left untouched."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from resnet_repro.study import AMOUNTS, run_seeds

REPO = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.skipif(shutil.which("dvc") is None, reason="dvc is not installed"),
    pytest.mark.skipif(
        not (REPO / ".git").exists(), reason="not a git repository: nothing to clone"
    ),
]


@pytest.mark.slow
@pytest.mark.rehearsal
def test_rehearsal_runs_every_path_of_the_committed_study(tmp_path):
    work = tmp_path / "rehearsal"
    study = ("params.yaml", "dvc.lock", "runs", "results", "data")
    before = {name: study_state(REPO / name) for name in study}
    done = subprocess.run(
        [sys.executable, "-m", "resnet_repro", "rehearse", "--workdir", str(work)],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-5000:]
    assert "Rehearsal complete" in done.stdout

    committed = yaml.safe_load((REPO / "params.yaml").read_text())
    rehearsed = yaml.safe_load((work / "params.yaml").read_text())
    assert rehearsed["runs"].keys() == committed["runs"].keys()
    recorded = json.loads((work / "rehearsal.json").read_text())  # the override, as applied
    assert recorded["data"]["md5"] == rehearsed["data"]["md5"]
    assert recorded["train_defaults"].items() <= rehearsed["train_defaults"].items()
    stages = set(done.stdout.split("Running stage '")[1:])
    ran = {s.split("'")[0] for s in stages}
    for run in committed["runs"]:
        assert {f"train@{run}", f"evaluate@{run}"} <= ran, run
        for seed in run_seeds(committed, "params.yaml", run):
            config = yaml.safe_load(
                (work / "runs" / run / f"seed-{seed}" / "config.yaml").read_text()
            )
            assert all(config[k] for k in AMOUNTS if k != "batch_size")
    assert {"fetch", "compare", "report"} <= ran

    # A run without validation (the paper recipe), one with, and five seeds' median.
    paper = json.loads((work / "results/runs/paper-v2-n18/metrics.json").read_text())
    assert paper["valid_acc_final"] is None and sorted(paper["seeds"]) == list("01234")
    assert paper["test_acc_final_median"] is not None and paper["rehearsal"] is True
    seed = json.loads((work / "results/runs/seed-v1-n18/metrics.json").read_text())
    assert 0 <= seed["valid_acc_final"] <= 1
    assert seed["seeds"]["0"]["chosen_epoch"] in range(160, 201, 10)

    report = (work / "results/report/report.md").read_text()
    assert report.startswith("# Reproduction report: REHEARSAL")
    certificate = (work / "results/certificate.json").read_text()
    assert certificate.startswith('{"status": "REHEARSAL')
    assert "results/certificate.json: every cell holds" in done.stdout  # verify ran
    assert "REHEARSAL" in (work / "results/comparison.md").read_text().splitlines()[0]
    shown = subprocess.run(
        ["dvc", "metrics", "show"], cwd=work, capture_output=True, text=True, env=os.environ
    )
    assert shown.returncode == 0 and "paper-v2-n18" in shown.stdout, shown.stderr

    # The study's checkpoints once: the DVC cache links them (11 GB when it copied them).
    assert disk_bytes(work) < 7e9, f"the rehearsal left {disk_bytes(work) / 1e9:.1f} GB"

    after = {name: study_state(REPO / name) for name in study}
    assert after == before, "the rehearsal must leave the real study's files untouched"


def disk_bytes(folder: Path) -> int:
    """The bytes of the files under ``folder``, each hard-linked file once."""
    sizes = {}
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            stat = path.stat()
            sizes[stat.st_dev, stat.st_ino] = stat.st_size
    return sum(sizes.values())


def study_state(path: Path) -> list[tuple[str, int, int]]:
    """Each file under ``path`` (or ``path`` itself) with its size and modification time."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return [(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files]
