"""End to end, as a new user meets the repository: a `git clone` of its committed state and
the README's commands verbatim.

- The clone is a working DVC project with no other step: `dvc stage list`, `dvc status`,
  `dvc repro --dry --force`, `dvc dag`, `dvc params diff`, `dvc metrics show` and
  `dvc exp run --queue` all work.
- `dvc repro` at CPU scale (the clone's params.yaml replaced by pipeline/params-cpu.yaml, whose
  data source is a local fake archive) runs every stage and the comparison against
  tests/golden/tables/cpu.yaml passes; a second `dvc repro` runs nothing; changing one run's
  parameter re-runs that run and what depends on it, only.
- A `dvc repro` killed during a training stage continues that run when run again, and the
  run's final weights equal the uninterrupted run's, bitwise.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
import yaml

from resnet_repro.kernels import portable_env
from resnet_repro.study_clone import clone, prepare_cpu_workdir, run_cpu_pipeline

REPO = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.skipif(shutil.which("dvc") is None, reason="dvc is not installed"),
    pytest.mark.skipif(
        not (REPO / ".git").exists(), reason="not a git repository: nothing to clone"
    ),
]

# `dvc exp run --queue` commits to a git stash: an identity must exist even on a bare CI box.
GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "resnet_repro tests",
    "GIT_AUTHOR_EMAIL": "tests@resnet-repro.invalid",
    "GIT_COMMITTER_NAME": "resnet_repro tests",
    "GIT_COMMITTER_EMAIL": "tests@resnet-repro.invalid",
}


def dvc(work: Path, *args: str) -> str:
    """``dvc ARGS`` in ``work``, its stages on the CPU pipeline's portable kernels."""
    out = subprocess.run(
        ["dvc", *args],
        cwd=work,
        capture_output=True,
        text=True,
        env=portable_env({**os.environ, **GIT_IDENTITY}),
    )
    assert out.returncode == 0, f"dvc {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}"
    return out.stdout


def repro(work: Path, *targets: str) -> list[str]:
    return re.findall(r"Running stage '([^']+)'", dvc(work, "repro", *targets))


def test_fresh_clone_is_a_dvc_project(tmp_path):
    work = tmp_path / "clone"
    clone(REPO, work)
    runs = yaml.safe_load((work / "params.yaml").read_text())["runs"]

    listed = dvc(work, "stage", "list")
    assert {f"train@{r}" for r in runs} | {"fetch", "compare", "report"} <= set(
        re.findall(r"^(\S+)", listed, re.MULTILINE)
    )
    dvc(work, "status")
    dvc(work, "dag")
    dvc(work, "params", "diff")
    dvc(work, "metrics", "show")
    # --force: on a fresh clone DVC 3 cannot hash the inputs that no stage has made yet and
    # stops a plain --dry at the first of them (treeverse/dvc#9021); see the README.
    dry = dvc(work, "repro", "--dry", "--force")
    assert "python -m resnet_repro fetch" in dry
    assert f"--run {next(iter(runs))} " in dry and "python -m resnet_repro stage report" in dry
    assert "Queued experiment" in dvc(work, "exp", "run", "--queue", "-S", "seeds=[1]")
    assert "Queued" in dvc(work, "queue", "status")
    dvc(work, "queue", "remove", "--all")


@pytest.fixture(scope="module")
def cpu_study(tmp_path_factory):
    """The CPU-scale pipeline of the committed repository, run once for this module's tests
    (all of them `large`, so that `nox -s large` runs it once)."""
    work = tmp_path_factory.mktemp("study") / "work"
    run_cpu_pipeline(REPO, work, echo=False)
    return work


@pytest.mark.large
def test_cpu_scale_pipeline_passes_its_golden_table_and_verifies(cpu_study):
    work = cpu_study

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
    assert "test_acc_final" in dvc(work, "metrics", "show")
    assert not (REPO / "runs").exists(), "the repository itself must stay untouched"
    # The certificate the report stage wrote holds, checked as a reviewer would.
    certificate = (work / "results/certificate.json").read_text()
    assert certificate.startswith('{"status": "NOT THE OFFICIAL CIFAR-10 ARCHIVE')
    verified = subprocess.run(
        ["python", "-m", "resnet_repro", "verify"],
        cwd=work,
        capture_output=True,
        text=True,
        env=portable_env(),
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    cells = len(json.loads(certificate)["cells"])
    assert verified.stdout.count("ok   cpu.yaml:") == cells > 0

    assert repro(work) == []


@pytest.mark.large
def test_a_changed_parameter_reruns_its_run_and_a_killed_repro_continues(cpu_study, tmp_path):
    work = cpu_study
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["runs"]["paper-v1-n1"]["eval_batch_size"] = 250  # same results, new config
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert repro(work) == ["train@paper-v1-n1", "evaluate@paper-v1-n1", "compare", "report"]

    # A second clone, killed during the training of paper-v1-n1 and run again.
    killed = tmp_path / "killed"
    clone(REPO, killed)
    prepare_cpu_workdir(killed)
    stage = "train@paper-v1-n1"
    seed_dir = killed / "runs/paper-v1-n1/seed-0"
    proc = subprocess.Popen(
        ["dvc", "repro", stage],
        cwd=killed,
        env=portable_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 300
    while not (seed_dir / "model-2.ckpt").exists():
        assert proc.poll() is None, "dvc repro ended before it could be killed"
        assert time.monotonic() < deadline, "epoch 2 never finished"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    epochs = params["train_defaults"]["epochs"]
    assert not (seed_dir / f"model-{epochs}.ckpt").exists(), "killed too late to test anything"

    out = dvc(killed, "repro", stage)
    assert "continuing the interrupted run from epoch" in out
    name = f"model-{epochs}.ckpt"
    resumed = torch.load(seed_dir / name, weights_only=True)["model"]
    whole = torch.load(work / "runs/paper-v1-n1/seed-0" / name, weights_only=True)["model"]
    assert resumed.keys() == whole.keys()
    assert all(torch.equal(resumed[k], whole[k]) for k in whole)


@pytest.mark.large
def test_train_runs_shares_the_machine_and_dvc_records_them(cpu_study, tmp_path):
    """`resnet-repro stage train-many --jobs 2` trains two runs at once through the stages' own
    command; `dvc commit` records them, so DVC sees those stages as done, and the weights equal
    the one-at-a-time run's of `dvc repro` (the CPU-scale study's), bitwise."""
    work = tmp_path / "jobs"
    clone(REPO, work)
    prepare_cpu_workdir(work)
    dvc(work, "repro", "fetch")
    runs = ["seed-v1-n1", "paper-v1-n1"]
    out = subprocess.run(
        ["python", "-m", "resnet_repro", "stage", "train-many", "--jobs", "2", "--runs", *runs],
        cwd=work,
        capture_output=True,
        text=True,
        env=portable_env({**os.environ, **GIT_IDENTITY}),
    )
    assert out.returncode == 0, out.stdout + out.stderr
    status = dvc(work, "status", *(f"train@{r}" for r in runs))
    assert "changed" not in status and "modified" not in status, status
    assert repro(work, "evaluate@paper-v1-n1") == ["evaluate@paper-v1-n1"]
    alone = cpu_study
    for name in ("last.ckpt", "model-6.ckpt"):
        a = torch.load(work / "runs/paper-v1-n1/seed-0" / name, weights_only=True)["model"]
        b = torch.load(alone / "runs/paper-v1-n1/seed-0" / name, weights_only=True)["model"]
        assert all(torch.equal(a[k], b[k]) for k in b)
