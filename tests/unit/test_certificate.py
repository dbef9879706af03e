"""The certificate and `resnet-repro verify`: a small study made by the pipeline's own stage
functions (one run of one seed, one of two seeds), its report stage writing
results/certificate.json, then `verify` on it untouched and with each thing a reviewer must
be protected from changed: one byte of a checkpoint, a metrics value, the golden table, the
data archive. Each change fails, naming the cell."""

import json
import os
import shutil
from pathlib import Path

import pytest
import yaml

from resnet_repro.archive_writer import write_fake_cifar10
from resnet_repro.cifar import md5_of
from resnet_repro.cli import main
from resnet_repro.golden import compare
from resnet_repro.pipeline import run_metrics, train_grid_run

RUNS = {
    "one": {"recipe": "paper", "version": 1, "resnet_size": 1, "eval_checkpoints": "1,2"},
    "two": {
        "recipe": "seed",
        "version": 1,
        "resnet_size": 1,
        "eval_checkpoints": "2",
        "continue_epochs": 1,
        "seeds": [0, 1],
    },
}
TINY = {
    "device": "cpu",
    "epochs": 2,
    "batch_size": 32,
    "valid_fraction": 0.2,
    "checkpoint_every": 1,
}


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    """A finished study in a folder of its own, paths relative to it as in a repository."""
    root = tmp_path_factory.mktemp("study")
    here = Path.cwd()
    os.chdir(root)
    try:
        write_fake_cifar10(Path("data/archive.tar.gz"), train_per_batch=40, test_size=50, seed=0)
        params = {
            "data": {"dest": "data/archive.tar.gz"},
            "train_defaults": TINY,
            "runs": RUNS,
            "compare": {"golden": "tables/tiny.yaml"},
        }
        Path("params.yaml").write_text(yaml.safe_dump(params))
        for run, entry in RUNS.items():
            train_grid_run("params.yaml", run, Path("runs") / run)
            run_metrics(Path("runs") / run, entry["eval_checkpoints"], Path("results/runs") / run)
        one = json.loads(Path("results/runs/one/metrics.json").read_text())
        two = json.loads(Path("results/runs/two/metrics.json").read_text())
        cells = [
            {"run": "one", "metric": "test_acc_final", "golden": one["test_acc_final"]},
            {"run": "one", "metric": "valid_acc@1", "golden": one["valid_acc"]["1"]},
            {
                "run": "two",
                "metric": "test_acc_continued",
                "statistic": "mean",
                "runs": 2,
                "golden": two["test_acc_continued"],
            },
        ]
        table = {
            "source": "test fixture: golden values are this study's own",
            "recipe": "paper, seed",
            "split": "fake",
            "metric": "accuracies",
            "checkpoint": "various",
            "runs_per_cell": "1 or 2",
            "cells": [{**c, "tolerance": {"rule": "two_sided", "points": 0.5}} for c in cells],
        }
        Path("tables").mkdir()
        Path("tables/tiny.yaml").write_text(yaml.safe_dump(table, sort_keys=False))
        result = compare([Path("tables/tiny.yaml")], Path("results/runs"))
        Path("results/comparison.json").write_text(json.dumps(result))
        assert result["ok"], result["failed"]
        report = [
            "stage",
            "report",
            "--params",
            "params.yaml",
            "--metrics-dir",
            "results/runs",
            "--comparison",
            "results/comparison.json",
            "--out",
            "results/report",
        ]
        assert main(report) == 0
    finally:
        os.chdir(here)
    return root


@pytest.fixture
def copy(study, tmp_path, monkeypatch) -> Path:
    """A copy of the study to change, as the working folder."""
    work = tmp_path / "copy"
    shutil.copytree(study, work)
    monkeypatch.chdir(work)
    return work


def verify(capsys) -> tuple[int, str, str]:
    status = main(["verify"])
    out = capsys.readouterr()
    return status, out.out, out.err


def test_the_certificate_traces_every_cell(study):
    text = (study / "results/certificate.json").read_text()
    first = text.splitlines()[0]
    assert first.startswith('{"status": "NOT THE OFFICIAL CIFAR-10 ARCHIVE')
    assert first.endswith('; 3 cells: 3 pass",')
    certificate = json.loads(text)
    cells = {c["cell"]: c for c in certificate["cells"]}
    mean = cells["tiny.yaml:two:test_acc_continued"]
    assert set(mean["seeds"]) == {"0", "1"} and mean["spread"] is not None
    assert mean["seeds"]["1"]["checkpoint"] == "runs/two/seed-1/model-3.ckpt"  # continued
    assert mean["value"] == pytest.approx(
        sum(s["value"] for s in mean["seeds"].values()) / 2, abs=1e-15
    )
    assert mean["rule_in_words"] == "|measured - golden| <= 0.5 points"
    single = cells["tiny.yaml:one:valid_acc@1"]["seeds"]["0"]
    assert (single["checkpoint"], single["split"]) == ("runs/one/seed-0/model-1.ckpt", "valid")
    segment = certificate["runs"]["one"][0]["segments"][0]
    assert {"code", "data_md5", "machine", "world_size"} <= set(segment)
    assert {"torch", "cuda", "cudnn", "device_name", "deterministic_algorithms"} <= set(
        segment["machine"]
    )
    assert (
        segment["machine"]["deterministic_algorithms"]
        is certificate["runs"]["one"][0]["deterministic"]
    )
    assert "torch" in certificate["environment"]["packages"]
    report = (study / "results/report/report.md").read_text()
    assert "## Certificate" in report and "tiny.yaml:two:test_acc_continued" in report


def test_an_untouched_study_verifies(copy, capsys):
    status, out, err = verify(capsys)
    assert status == 0, err
    assert out.count("ok   tiny.yaml:") == 3 and "every cell holds" in out


def test_a_checkpoint_changed_by_one_byte_fails_its_cell(copy, capsys):
    path = copy / "runs/two/seed-1/model-3.ckpt"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1
    path.write_bytes(bytes(data))
    status, out, err = verify(capsys)
    assert status == 1
    assert "do not hold: tiny.yaml:two:test_acc_continued" in err
    assert (
        "FAIL tiny.yaml:two:test_acc_continued: seed 1: runs/two/seed-1/model-3.ckpt sha256" in out
    )
    assert "ok   tiny.yaml:one:test_acc_final" in out


def test_a_changed_metrics_value_fails_its_cell(copy, capsys):
    path = copy / "results/runs/one/metrics.json"
    metrics = json.loads(path.read_text())
    metrics["test_acc_final"] += 0.02
    path.write_text(json.dumps(metrics))
    status, out, err = verify(capsys)
    assert status == 1 and "do not hold: tiny.yaml:one:test_acc_final" in err
    assert "results/runs/one/metrics.json states single" in out


def test_a_changed_value_in_the_certificate_fails_its_cell(copy, capsys):
    path = copy / "results/certificate.json"
    certificate = json.loads(path.read_text())
    cell = next(c for c in certificate["cells"] if c["metric"] == "valid_acc@1")
    cell["seeds"]["0"]["value"] -= 0.02
    path.write_text(json.dumps(certificate))
    status, out, err = verify(capsys)
    assert status == 1 and "do not hold: tiny.yaml:one:valid_acc@1" in err
    assert "images apart, 0 allowed" in out


def test_an_edited_golden_table_fails_its_cell(copy, capsys):
    path = copy / "tables/tiny.yaml"
    table = yaml.safe_load(path.read_text())
    table["cells"][0]["golden"] = 0.99
    path.write_text(yaml.safe_dump(table, sort_keys=False))
    status, out, err = verify(capsys)
    assert status == 1 and "tiny.yaml:one:test_acc_final" in err
    assert "table tables/tiny.yaml: sha256" in out


def test_a_swapped_data_archive_fails_every_cell(copy, capsys):
    archive = copy / "data/archive.tar.gz"
    before = md5_of(archive)
    write_fake_cifar10(archive, train_per_batch=40, test_size=50, seed=1)
    assert md5_of(archive) != before
    status, out, err = verify(capsys)
    assert status == 1
    for cell in ("one:test_acc_final", "one:valid_acc@1", "two:test_acc_continued"):
        assert f"tiny.yaml:{cell}" in err
    assert f"!= the certificate's {before}" in out


def test_a_missing_certificate_is_one_line(copy, capsys):
    (copy / "results/certificate.json").unlink()
    status, _, err = verify(capsys)
    assert status == 1 and "not a readable certificate" in err and "report stage" in err


def test_its_verdicts_are_the_comparisons_a_misspelled_metric_included(copy):
    from resnet_repro.certificate import build_certificate

    table = yaml.safe_load((copy / "tables/tiny.yaml").read_text())
    typo = {"run": "one", "metric": "test_acc_finl", "golden": 0.5}
    table["cells"].append({**typo, "tolerance": {"rule": "two_sided", "points": 0.5}})
    table["cells"].append({**table["cells"][0], "run": "never-trained"})
    (copy / "tables/typo.yaml").write_text(yaml.safe_dump(table, sort_keys=False))
    tables = [Path("tables/typo.yaml")]
    certificate = build_certificate(tables, Path("runs"), Path("results/runs"))
    verdicts = [c["verdict"] for c in certificate["cells"]]
    assert verdicts == [r["verdict"] for r in compare(tables, Path("results/runs"))["rows"]]
    assert verdicts[-2:] == ["unknown metric", "missing"]
