"""The certificate and `resnet-repro verify`: a small study made by the pipeline's own stage
functions (one run of one seed, one of two seeds), its report stage writing
results/certificate.json, then `verify` on it untouched and with each thing a reviewer must
be protected from changed: one byte of a checkpoint, a metrics value, the golden table, the
data archive. Each change fails, naming the cell."""

import json
import os
import re
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
            {"run": "one", "metric": "test_acc_chosen", "golden": one["test_acc_chosen"]},
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
    assert first.endswith('; 4 cells: 4 pass",')
    certificate = json.loads(text)
    cells = {c["cell"]: c for c in certificate["cells"]}
    mean = cells["tiny.yaml:two:test_acc_continued"]
    assert set(mean["seeds"]) == {"0", "1"} and mean["spread"] is not None
    assert mean["seeds"]["1"]["checkpoint"] == "runs/two/seed-1/model-3.ckpt"  # continued
    assert mean["value"] == pytest.approx(
        sum(s["value"] for s in mean["seeds"].values()) / 2, abs=1e-15
    )
    assert mean["rule_in_words"] == "within 0.5 points of golden"
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
    assert out.count("ok   tiny.yaml:") == 4 and "every cell holds" in out


def test_a_checkpoint_changed_by_one_byte_fails_its_cell(copy, capsys):
    path = copy / "runs/two/seed-1/model-3.ckpt"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1
    path.write_bytes(bytes(data))
    status, out, err = verify(capsys)
    assert status == 1
    assert "do not hold: certificate, tiny.yaml:two:test_acc_continued" in err
    assert "FAIL tiny.yaml:two:test_acc_continued: cell.seeds.1.sha256: the certificate says" in out
    assert "FAIL certificate: checkpoints.runs/two/seed-1/model-3.ckpt" in out
    assert "ok   tiny.yaml:one:test_acc_final" in out


def test_a_changed_metrics_value_fails_its_cell(copy, capsys):
    path = copy / "results/runs/one/metrics.json"
    metrics = json.loads(path.read_text())
    metrics["test_acc_final"] += 0.02
    path.write_text(json.dumps(metrics))
    status, out, err = verify(capsys)
    assert status == 1 and "tiny.yaml:one:test_acc_final" in err
    assert "FAIL tiny.yaml:one:test_acc_final: results/runs/one/metrics.json states single" in out
    metrics["seeds"]["0"]["test_acc_final"] += 0.02  # the seed's value too: re-evaluation fails
    path.write_text(json.dumps(metrics))
    status, out, err = verify(capsys)
    assert "FAIL tiny.yaml:one:test_acc_final: cell.seeds.0.value: the certificate says" in out
    assert "images apart, 0 allowed" in out


def test_a_changed_value_in_the_certificate_fails_its_cell(copy, capsys):
    path = copy / "results/certificate.json"
    certificate = json.loads(path.read_text())
    cell = next(c for c in certificate["cells"] if c["metric"] == "valid_acc@1")
    cell["seeds"]["0"]["value"] -= 0.02
    path.write_text(json.dumps(certificate))
    status, out, err = verify(capsys)
    assert status == 1 and err.endswith("do not hold: tiny.yaml:one:valid_acc@1\n")
    assert "FAIL tiny.yaml:one:valid_acc@1: cell.seeds.0.value: the certificate says" in out


def test_an_edited_golden_table_fails_its_cell(copy, capsys):
    path = copy / "tables/tiny.yaml"
    table = yaml.safe_load(path.read_text())
    table["cells"][0]["golden"] = 0.99
    path.write_text(yaml.safe_dump(table, sort_keys=False))
    status, out, err = verify(capsys)
    assert status == 1 and "tiny.yaml:one:test_acc_final" in err
    assert "tables.tables/tiny.yaml: the certificate says" in out
    assert "FAIL tiny.yaml:one:test_acc_final: cell.golden: the certificate says" in out


def test_a_swapped_data_archive_fails_every_cell(copy, capsys):
    archive = copy / "data/archive.tar.gz"
    before = md5_of(archive)
    write_fake_cifar10(archive, train_per_batch=40, test_size=50, seed=1)
    assert md5_of(archive) != before
    status, out, err = verify(capsys)
    assert status == 1
    for cell in ("one:test_acc_final", "one:valid_acc@1", "two:test_acc_continued"):
        assert f"tiny.yaml:{cell}" in err
    assert f"!= the run's {before}" in out


def edit(copy, change) -> None:
    path = copy / "results/certificate.json"
    certificate = json.loads(path.read_text())
    certificate = change(certificate) or certificate
    path.write_text(json.dumps(certificate))


def test_seeds_that_lost_their_checkpoints_keys_are_re_evaluated_all_the_same(copy, capsys):
    def drop(certificate):
        for cell in certificate["cells"]:
            for seed in cell["seeds"].values():
                seed.pop("checkpoint", None)
                seed.pop("sha256", None)

    edit(copy, drop)
    (copy / "runs/one/seed-0/model-2.ckpt").unlink()
    shutil.copy(copy / "runs/two/seed-0/model-3.ckpt", copy / "runs/two/seed-1/model-3.ckpt")
    status, out, err = verify(capsys)
    assert status == 1 and "every cell holds" not in out
    assert "FAIL tiny.yaml:one:test_acc_final: cell.seeds.0.checkpoint: missing from the" in out
    assert "runs/one/seed-0/model-2.ckpt missing" in out
    assert "tiny.yaml:two:test_acc_continued" in err


def test_an_edited_status_line_is_re_derived(copy, capsys):
    def relabel(certificate):
        certificate["status"] = "CERTIFICATE: 4 cells: 4 pass"

    edit(copy, relabel)
    status, out, err = verify(capsys)
    assert status == 1 and "do not hold: certificate" in err
    assert 'FAIL certificate: status: the certificate says "CERTIFICATE: 4 cells' in out
    assert 'the files give "NOT THE OFFICIAL CIFAR-10 ARCHIVE' in out


def test_a_certificate_without_cells_fails_every_cell_of_its_table(copy, capsys):
    edit(copy, lambda c: {**c, "cells": []})
    status, out, _ = verify(capsys)
    assert status == 1
    assert out.count("the golden table has this cell, the certificate does not") == 4


def test_a_cell_the_golden_tables_do_not_have_fails(copy, capsys):
    def add(certificate):
        certificate["cells"].append({**certificate["cells"][0], "cell": "tiny.yaml:one:made_up"})

    edit(copy, add)
    status, out, _ = verify(capsys)
    assert status == 1 and "FAIL tiny.yaml:one:made_up: no such cell in the golden tables" in out


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[1, 2, 3]", "not a certificate (a JSON list)"),
        ("null", "not a certificate (a JSON NoneType)"),
        ('{"format": 2}', "malformed certificate: status (a str), root (a str)"),
        ('{"format": 1}', "format 1, not 2 (another version of this program wrote it)"),
        ("{", "not a readable certificate"),
    ],
)
def test_a_malformed_certificate_is_one_line(copy, capsys, text, message):
    (copy / "results/certificate.json").write_text(text)
    status, _, err = verify(capsys)
    assert status == 1 and message in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize(
    ("field", "value"), [("split", "banana"), ("value", "0.1"), ("sha256", None), ("split", 3)]
)
def test_a_seed_entry_of_another_kind_fails_its_cell_without_a_traceback(
    copy, capsys, field, value
):
    def change(certificate):
        certificate["cells"][0]["seeds"]["0"][field] = value

    edit(copy, change)
    status, out, err = verify(capsys)
    assert status == 1 and f"cell.seeds.0.{field}: the certificate says" in out
    assert "Traceback" not in err


def test_verify_from_another_folder_finds_the_certificates_repository(copy, capsys, monkeypatch):
    monkeypatch.chdir(copy / "results")
    assert main(["verify", "certificate.json"]) == 0
    assert "every cell holds" in capsys.readouterr().out
    monkeypatch.chdir(copy.parent)
    assert main(["verify", "copy/results/certificate.json"]) == 0


def test_the_chosen_checkpoint_is_re_derived_from_its_candidates(copy, capsys):
    """Metrics that name another checkpoint than the best validated one as chosen, with that
    checkpoint's own test accuracy, and a certificate re-made from them: verify re-evaluates
    every candidate and re-applies the choice."""
    from resnet_repro.certificate import build_certificate, write_certificate
    from resnet_repro.evaluate import load_eval_data, loss_and_accuracy
    from resnet_repro.runtime import resolve_device

    path = copy / "results/runs/one/metrics.json"
    metrics = json.loads(path.read_text())
    other = 1 if metrics["seeds"]["0"]["chosen_epoch"] == 2 else 2
    run = Path("runs/one/seed-0")
    data, _ = load_eval_data(run, None, resolve_device("cpu"), ("test",))
    accuracy = loss_and_accuracy(run / f"model-{other}.ckpt", *data["test"])[1]
    for m in (metrics, metrics["seeds"]["0"]):
        m["chosen_epoch"], m["test_acc_chosen"] = other, accuracy
    path.write_text(json.dumps(metrics))
    table = yaml.safe_load((copy / "tables/tiny.yaml").read_text())
    table["cells"][2]["golden"] = metrics["test_acc_chosen"]
    (copy / "tables/tiny.yaml").write_text(yaml.safe_dump(table, sort_keys=False))
    certificate = build_certificate(
        [Path("tables/tiny.yaml")],
        Path("runs"),
        Path("results/runs"),
        path=Path("results/certificate.json"),
    )
    write_certificate(certificate, Path("results/certificate.json"))
    status, out, err = verify(capsys)
    assert status == 1 and err.endswith("do not hold: tiny.yaml:one:test_acc_chosen\n")
    assert f"the chosen checkpoint is model-{other}.ckpt, its candidates choose" in out


def test_deleting_or_editing_any_single_field_never_leaves_every_cell_holding(study):
    """Every leaf and every container of a valid certificate, deleted or changed in turn:
    reading refuses it or the comparison with the certificate re-derived from the files finds
    a disagreement."""
    from resnet_repro.certificate import (
        CertificateError,
        build_certificate,
        disagreements,
        read_certificate,
    )

    path = study / "results/certificate.json"
    valid = json.loads(path.read_text())
    here = Path.cwd()
    os.chdir(study)
    try:
        fresh = build_certificate(
            [Path("tables/tiny.yaml")], Path("runs"), Path("results/runs"), path=path
        )
    finally:
        os.chdir(here)
    fresh["environment"] = valid["environment"]  # the writer's machine: only its digest is checked
    assert not any(disagreements(valid, fresh).values())
    edits = 0
    for where, change in single_edits(valid):
        edited = change(copy_of(valid))
        changed = path.parent / "edited.json"
        changed.write_text(json.dumps(edited))
        try:
            read_certificate(changed)
        except CertificateError:
            continue
        assert any(disagreements(edited, fresh).values()), where
        edits += 1
    assert edits > 200


def copy_of(value):
    return json.loads(json.dumps(value))


def single_edits(value, where=()):
    """(path, change) for each deletion and each change of one value, anywhere in ``value``."""
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for key, child in list(items):
        here = (*where, key)
        yield here, lambda v, here=here: delete(v, here)
        if isinstance(child, (dict, list)) and child:
            yield from single_edits(child, here)
        else:
            yield here, lambda v, here=here: replace(v, here)


def delete(value, path):
    parent = value
    for key in path[:-1]:
        parent = parent[key]
    del parent[path[-1]]
    return value


def replace(value, path):
    parent = value
    for key in path[:-1]:
        parent = parent[key]
    old = parent[path[-1]]
    if isinstance(old, bool):
        new = not old
    elif isinstance(old, (int, float)):
        new = old + 1
    elif isinstance(old, str):
        new = old + "x"
    elif old is None:
        new = 0
    else:
        new = None  # an empty container
    parent[path[-1]] = new
    return value


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
    certificate = build_certificate(
        tables, Path("runs"), Path("results/runs"), path=Path("results/certificate.json")
    )
    verdicts = [c["verdict"] for c in certificate["cells"]]
    assert verdicts == [r["verdict"] for r in compare(tables, Path("results/runs"))["rows"]]
    assert verdicts[-2:] == ["unknown metric", "missing"]


def table_rows(text: str) -> list[list[str]]:
    """Each markdown table of ``text`` as its rows' cell counts (a pipe escaped with a
    backslash stays inside its cell), one list per table."""
    tables, current = [], []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            current.append(len(re.findall(r"(?<!\\)\|", line)) - 1)
        elif current:
            tables.append(current)
            current = []
    return tables


def test_every_table_the_project_writes_has_as_many_cells_in_each_row_as_its_header(study):
    from resnet_repro.golden import markdown

    comparison = json.loads((study / "results/comparison.json").read_text())
    report = (study / "results/report/report.md").read_text()
    texts = {
        "report.md (certificate section included)": report,
        "comparison.md": markdown(comparison),
    }
    for name, text in texts.items():
        tables = table_rows(text)
        assert tables, name
        for rows in tables:
            assert rows == [rows[0]] * len(rows), (name, rows)
    assert "## Certificate" in report and len(table_rows(report)) >= 3
    assert "every training image of the run's data" in report  # not "50,000" at any scale
    assert table_rows("| a | b |\n|---|---|\n| x | y | z |\n") == [[2, 2, 3]]  # it can fail


def test_a_study_on_the_official_archive_says_so_on_its_first_line():
    """What fetch verified is what the runs record (test_data_fetch), and the status line
    flags nothing for a clean study of the official archive's md5, only for other data."""
    from resnet_repro.certificate import first_line
    from resnet_repro.cifar import OFFICIAL_MD5

    cells = [{"verdict": "pass", "seeds": {"0": {"data_md5": OFFICIAL_MD5}}}]
    runs = {"r": [{"rehearsal": False, "segments": [{"code": {"dirty": False}}]}]}
    assert first_line(cells, runs) == "CERTIFICATE: 1 cells: 1 pass"
    cells[0]["seeds"]["0"]["data_md5"] = "0d4372a7" + "0" * 24
    assert first_line(cells, runs).startswith("NOT THE OFFICIAL CIFAR-10 ARCHIVE")
