"""The rehearsal's override shrinks amounts only; a run without validation is evaluated, compared
and reported without a crash; an incomplete rehearsal is named."""

import json
from pathlib import Path

import pytest
import yaml

from resnet_repro.cli import main
from resnet_repro.config import ConfigError, load_params
from resnet_repro.evaluate import parse_checkpoints
from resnet_repro.pipeline import run_config
from resnet_repro.study import (
    AMOUNTS,
    DATA_KEYS,
    OVERRIDE,
    check_rehearsal,
    rehearsal_params,
    run_seeds,
    seed_folder,
    seed_folders,
)

REPO = Path(__file__).resolve().parents[2]


def committed_and_rehearsed(tmp_path):
    params = load_params(REPO / "params.yaml")
    override = yaml.safe_load((REPO / OVERRIDE).read_text())
    rehearsed = rehearsal_params(params, override, "0" * 32)
    real, fake = tmp_path / "real.yaml", tmp_path / "rehearsal.yaml"
    real.write_text(yaml.safe_dump(params))
    fake.write_text(yaml.safe_dump(rehearsed))
    return params, rehearsed, real, fake


def test_the_override_changes_amounts_only_for_every_run_and_seed(tmp_path):
    """Same recipe, network, depth, seeds, epochs, checkpoint epochs, split and golden tables:
    each run's config differs from the real study's in the amounts alone."""
    params, rehearsed, real, fake = committed_and_rehearsed(tmp_path)
    assert {k: v for k, v in rehearsed.items() if k not in ("data", "train_defaults", "runs")} == {
        k: v for k, v in params.items() if k not in ("data", "train_defaults", "runs")
    }
    assert rehearsed["data"]["dest"] == params["data"]["dest"]
    assert rehearsed["runs"].keys() == params["runs"].keys()
    for run, entry in params["runs"].items():
        assert rehearsed["runs"][run]["eval_checkpoints"] == entry["eval_checkpoints"]
        seeds = run_seeds(params, real, run)
        assert run_seeds(rehearsed, fake, run) == seeds
        for seed in seeds:
            a, b = run_config(real, run, seed).to_dict(), run_config(fake, run, seed).to_dict()
            assert {k for k in a if a[k] != b[k]} <= set(AMOUNTS), run
            assert b["limit_train_batches"] and b["limit_eval_images"]
            # The checkpoints evaluated exist in the rehearsal: the epochs are the real ones.
            assert max(parse_checkpoints(entry["eval_checkpoints"])) <= b["epochs"]


def test_the_override_reaches_a_run_entry_that_sets_an_amount_itself():
    params = {"runs": {"a": {"batch_size": 256}, "b": {}}}
    override = {"data": {"source": "x.tar.gz"}, "train_defaults": {"batch_size": 4}}
    out = rehearsal_params(params, override, "f" * 32)
    assert out["runs"]["a"]["batch_size"] == 4 and out["runs"]["b"] == {}
    assert out["train_defaults"] == {"batch_size": 4}
    assert out["data"] == {"source": "x.tar.gz", "md5": "f" * 32}


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"train_defaults": {"epochs": 2}}, "epochs cannot be overridden"),
        ({"train_defaults": {"recipe": "fast"}}, "recipe cannot be overridden"),
        ({"data": {"source": "a", "dest": "b"}}, "dest cannot be overridden"),
        ({"runs": {}}, "only 'data' and 'train_defaults' may be overridden"),
    ],
)
def test_the_override_refuses_anything_but_amounts(override, message):
    with pytest.raises(ConfigError, match=message):
        rehearsal_params({"runs": {}}, override, "0" * 32)


def test_a_run_without_validation_is_evaluated_and_reported(fake_archive, tmp_path, capsys):
    """The paper recipe on all training images has no validation accuracy: evaluate's line,
    metrics.json, history.csv, compare and report all say so instead of crashing."""
    run, metrics_dir = tmp_path / "run", tmp_path / "results" / "runs"
    common = ["--resnet-version", "1", "--resnet-size", "1", "--data", str(fake_archive)]
    train = ["--split-index", "200", "--epochs", "2", "--checkpoint-every", "1"]
    train += ["--batch-size", "50", "--device", "cpu", "--out", str(run)]
    assert main(["train", *common, *train]) == 0
    capsys.readouterr()
    assert (
        main(
            [
                "stage",
                "metrics",
                "--run",
                str(run),
                "--checkpoints",
                "1,2",
                "--device",
                "cpu",
                "--metrics-dir",
                str(metrics_dir / "paper-v1-n1"),
            ]
        )
        == 0
    )
    line = capsys.readouterr().out
    assert "valid none (no validation split), test 0." in line
    assert main(["evaluate", "--run", str(run), "--checkpoints", "2", "--split", "valid"]) == 1
    assert "the run keeps no valid images" in capsys.readouterr().err
    metrics = json.loads((metrics_dir / "paper-v1-n1" / "metrics.json").read_text())
    assert metrics["valid_acc_final"] is None and metrics["chosen_epoch"] == 2
    assert metrics["rehearsal"] is False
    csv = (metrics_dir / "paper-v1-n1" / "history.csv").read_text().splitlines()
    assert len(csv) == 3 and csv[1].split(",")[csv[0].split(",").index("valid_acc")] == ""

    golden = tmp_path / "golden.yaml"
    golden.write_text(
        yaml.safe_dump(
            {
                "source": "test",
                "recipe": "paper",
                "split": "all",
                "metric": "test",
                "checkpoint": "2",
                "runs_per_cell": 1,
                "cells": [
                    {
                        "run": "paper-v1-n1",
                        "metric": "test_acc_final",
                        "golden": 0.99,
                        "tolerance": {"rule": "one_sided_below", "points": 0.5},
                    }
                ],
            }
        )
    )
    comparison = tmp_path / "results"
    compare = [
        "compare",
        "--golden",
        str(golden),
        "--metrics-dir",
        str(metrics_dir),
        "--out",
        str(comparison),
    ]
    assert main(compare) == 1  # a user's compare fails on a failing cell
    assert main([*compare, "--exit-zero"]) == 0  # the pipeline's records it and goes on
    params = tmp_path / "params.yaml"
    params.write_text(
        yaml.safe_dump(
            {
                "runs": {
                    "paper-v1-n1": {
                        "recipe": "paper",
                        "version": 1,
                        "resnet_size": 1,
                        "eval_checkpoints": "1,2",
                    }
                }
            }
        )
    )
    assert (
        main(
            [
                "stage",
                "report",
                "--params",
                str(params),
                "--metrics-dir",
                str(metrics_dir),
                "--comparison",
                str(comparison / "comparison.json"),
                "--out",
                str(tmp_path / "report"),
                "--runs-dir",
                str(tmp_path),
                "--certificate",
                str(tmp_path / "certificate.json"),
            ]
        )
        == 0
    )
    assert "comparison: FAILED: paper-v1-n1:test_acc_final" in capsys.readouterr().out
    report = (tmp_path / "report" / "report.md").read_text()
    assert "| v1 | no validation split / no reference |" in report


def rehearsal_outputs(work: Path, cell: str) -> None:
    """A finished rehearsal's files, with ``cell`` as the report's one measured value."""
    params = {"data": {"md5": "f" * 32}, "runs": {"r": {"recipe": "paper"}}}
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    (work / "results/runs/r").mkdir(parents=True)
    metrics = {"rehearsal": True, "data_md5": "f" * 32}
    (work / "results/runs/r/metrics.json").write_text(json.dumps(metrics))
    (work / "results/report").mkdir()
    (work / "results/report/report.md").write_text(
        f"# Reproduction report: REHEARSAL\n\n| v1 | {cell} / 0.9125 |\n"
    )
    seed = {"value": 0.1, "checkpoint": "runs/r/seed-0/model-1.ckpt", "sha256": "ab12"}
    cells = [{"cell": "t.yaml:r:test_acc_final", "seeds": {"0": seed}}]
    (work / "results/certificate.json").write_text(
        '{"status": "REHEARSAL (amounts shrunk)",\n"cells": ' + json.dumps(cells) + "}\n"
    )


@pytest.mark.parametrize("cell", ["None", "nan", "missing", "0.12"])
def test_check_rehearsal_names_a_report_cell_without_a_value(tmp_path, cell):
    rehearsal_outputs(tmp_path, cell)
    assert check_rehearsal(tmp_path) == [f"report.md has a cell '{cell} / 0.9125'"]


def test_check_rehearsal_passes_a_complete_one_and_names_a_missing_run(tmp_path):
    rehearsal_outputs(tmp_path, "0.1000")
    assert check_rehearsal(tmp_path) == []
    (tmp_path / "results/runs/r/metrics.json").unlink()
    assert check_rehearsal(tmp_path) == ["r: no metrics.json"]


def test_check_rehearsal_names_a_run_that_records_other_data_than_the_fetch_stage(tmp_path):
    rehearsal_outputs(tmp_path, "0.1000")
    path = tmp_path / "results/runs/r/metrics.json"
    path.write_text(json.dumps({"rehearsal": True, "data_md5": "0d4372a7"}))
    assert check_rehearsal(tmp_path) == [
        f"r: records data md5 0d4372a7, the fetch stage verified {'f' * 32}"
    ]


def test_check_rehearsal_names_a_certificate_cell_without_its_checkpoint(tmp_path):
    rehearsal_outputs(tmp_path, "0.1000")
    path = tmp_path / "results/certificate.json"
    certificate = json.loads(path.read_text())
    del certificate["cells"][0]["seeds"]["0"]["sha256"]
    path.write_text(json.dumps(certificate))
    assert check_rehearsal(tmp_path) == [
        "certificate.json: t.yaml:r:test_acc_final lacks a seed's value or checkpoint"
    ]
    path.unlink()
    assert check_rehearsal(tmp_path) == ["no results/certificate.json"]


def test_report_shows_the_statistic_and_metric_each_golden_cell_compares(tmp_path):
    """A median-of-5 cell shows the median, not the mean; the seed's test cell compares the
    accuracy after the continued epochs, so the report has a row for it; the continued epochs'
    duration stands beside the seed's."""
    from resnet_repro.report import paper_points, write_report

    runs = {
        "paper-v2-n18": {"recipe": "paper", "version": 2, "resnet_size": 18},
        "seed-v1-n18": {"recipe": "seed", "version": 1, "resnet_size": 18},
    }
    params = tmp_path / "params.yaml"
    table = tmp_path / "seed.yaml"
    table.write_text(
        yaml.safe_dump(
            {
                "epoch_seconds": {"seed-v1-n18": 74.83},
                "logged_loss": {"seed-v1-n18": [0.3, 0.1, 0.2]},
                "cells": [],
            }
        )
    )
    params.write_text(yaml.safe_dump({"runs": runs, "compare": {"golden": str(table)}}))
    metrics = {
        "paper-v2-n18": {
            "test_acc_final": 0.3,
            "test_acc_final_median": 0.2,
            "seeds": {seed: {} for seed in "01234"},
        },
        "seed-v1-n18": {
            "valid_acc_final": 0.5,
            "test_acc_continued": 0.6,
            "test_acc_final": 0.7,
            "continued_epoch_seconds": 12.25,
            "continued_last_batch_loss": 0.0421,
        },
    }
    for run, values in metrics.items():
        (tmp_path / "m" / run).mkdir(parents=True)
        (tmp_path / "m" / run / "metrics.json").write_text(
            json.dumps({"valid_acc_final": None, **values})
        )
    rows = [
        {
            "table": "paper.yaml",
            "run": "paper-v2-n18",
            "metric": "test_acc_final",
            "statistic": "median",
            "seeds": 5,
            "measured": 0.2,
            "golden": 0.9454,
        },
        {
            "table": "seed.yaml",
            "run": "seed-v1-n18",
            "metric": "test_acc_continued",
            "statistic": "single",
            "seeds": 1,
            "measured": 0.6,
            "golden": 0.8981,
        },
    ]
    # The last three epochs' last-step losses beside the seed's three logged ones.
    (tmp_path / "m" / "seed-v1-n18" / "history.csv").write_text(
        "epoch,train_loss,last_batch_loss,valid_acc\n"
        + "".join(f"{e},0.5,{0.08 - 0.01 * e},\n" for e in range(1, 6))
    )
    comparison = tmp_path / "comparison.json"
    provenance = {"paper.yaml": {"recipe": "paper"}, "seed.yaml": {"recipe": "seed"}}
    result = {"ok": False, "failed": ["x"], "rows": rows, "provenance": provenance}
    comparison.write_text(json.dumps(result))
    report = write_report(params, tmp_path / "m", comparison, tmp_path / "report").read_text()
    # The papers' points of the depth plot: the paper table's golden values, not the seed's.
    shown = {r: dict(spec, size=spec["resnet_size"]) for r, spec in runs.items()}
    assert paper_points(result, shown, 2) == [(164, 0.9454)]
    assert paper_points(result, shown, 1) == []
    assert "| v2 | 0.2000 (median of 5) / 0.9454 |" in report
    continued = report.split("test_acc_continued (measured / golden):")[1]
    assert "| v1 | 0.6000 / 0.8981 |" in continued.split("test_acc_final")[0]
    assert "| v1 | 0.7000 / no reference |" in report
    assert "| seed-v1-n18 | 12.2 | 74.8 | 0.0421 | 0.2000 |" in report.split("## Continued")[1]
    assert "| seed-v1-n18, measured | 0.0500 | 0.0400 | 0.0300 |" in report
    assert "| seed-v1-n18, seed's | 0.3000 | 0.1000 | 0.2000 |" in report


# The study's rules line by line: seeds, seed folders, the override and the rehearsal's checks.


def test_seeds_come_from_the_run_then_the_grid_then_zero():
    runs = {"a": {"seeds": [3, 1]}, "b": {"recipe": "paper"}, "c": "paper"}
    assert run_seeds({"runs": runs}, "p.yaml", "b") == [0]
    assert run_seeds({"runs": runs, "seeds": [5, 6]}, "p.yaml", "b") == [5, 6]
    assert run_seeds({"runs": runs, "seeds": [5, 6]}, "p.yaml", "c") == [5, 6]
    assert run_seeds({"runs": runs, "seeds": [5, 6]}, "p.yaml", "a") == [3, 1]
    assert run_seeds({"runs": runs, "seeds": [5, 6]}) == [5, 6]
    assert run_seeds({}) == [0]  # a grid without runs


@pytest.mark.parametrize("seeds", [3, [], [1, True], [1, "2"], [1, 1]])
def test_seeds_must_be_a_non_empty_list_of_distinct_integers(seeds):
    message = "seeds must be a non-empty list of distinct integers"
    with pytest.raises(ConfigError) as e:
        run_seeds({"runs": {"a": {}}, "seeds": seeds}, "p.yaml", "a")
    assert str(e.value) == f"p.yaml: {message}"
    with pytest.raises(ConfigError) as e:
        run_seeds({"runs": {"a": {"seeds": seeds}}}, "p.yaml", "a")
    assert str(e.value) == f"p.yaml: run a: {message}"
    with pytest.raises(ConfigError) as e:
        run_seeds({"runs": {}, "seeds": seeds})
    assert str(e.value) == f"params.yaml: {message}"


def test_seed_folders_are_found_by_their_seed_in_numeric_order(tmp_path):
    for seed in (10, 2, 0):
        seed_folder(tmp_path, seed).mkdir()
    assert seed_folders(tmp_path) == {s: tmp_path / f"seed-{s}" for s in ("0", "2", "10")}
    assert list(seed_folders(tmp_path)) == ["0", "2", "10"]
    assert seed_folders(tmp_path / "seed-0") == {"": tmp_path / "seed-0"}


def test_an_override_of_anything_but_amounts_names_each_key_and_what_may_change():
    params = load_params(REPO / "params.yaml")
    override = {"data": {"source": "x", "url": "y"}, "train_defaults": {"lr": 1, "epochs": 2}}
    with pytest.raises(ConfigError) as e:
        rehearsal_params(params, override, "0" * 32)
    assert str(e.value) == (
        f"{OVERRIDE}: url, epochs, lr cannot be overridden; a rehearsal shrinks only the data "
        f"({', '.join(DATA_KEYS)}) and the amounts {', '.join(AMOUNTS)}"
    )


def test_the_override_keeps_the_grids_own_train_defaults():
    params = {"runs": {"r": {}}, "train_defaults": {"device": "cpu", "limit_eval_images": 7}}
    amounts = {"limit_eval_images": 10}
    out = rehearsal_params(params, {"data": {"source": "x"}, "train_defaults": amounts}, "0" * 32)
    assert out["train_defaults"] == {"device": "cpu", "limit_eval_images": 10}


def rehearsal_of_seeds(work: Path, recorded: list[str], seeds=(0, 2)) -> Path:
    """A finished rehearsal whose run r has ``seeds`` in params.yaml and ``recorded`` in its
    metrics.json."""
    work.mkdir()
    rehearsal_outputs(work, "0.1000")
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["runs"]["r"]["seeds"] = list(seeds)
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    seeds = {s: {"data_md5": "f" * 32} for s in recorded}
    metrics = {"rehearsal": True, "data_md5": "f" * 32, "seeds": seeds}
    path = work / "results/runs/r/metrics.json"
    path.write_text(json.dumps(metrics))
    return path


def test_check_rehearsal_names_a_run_without_every_seed(tmp_path):
    rehearsal_of_seeds(tmp_path / "a", ["2", "0"])
    assert check_rehearsal(tmp_path / "a") == []
    rehearsal_of_seeds(tmp_path / "b", ["2"])
    assert check_rehearsal(tmp_path / "b") == ["r: metrics of seeds ['2']"]
    path = rehearsal_of_seeds(tmp_path / "c", [])
    path.write_text(json.dumps({"rehearsal": True, "data_md5": "f" * 32}))
    assert check_rehearsal(tmp_path / "c") == ["r: metrics of seeds []"]
    rehearsal_of_seeds(tmp_path / "d", ["10", "2"], seeds=(2, 10))
    assert check_rehearsal(tmp_path / "d") == []
    rehearsal_of_seeds(tmp_path / "e", ["0"], seeds=(0, 0))
    with pytest.raises(ConfigError) as e:
        check_rehearsal(tmp_path / "e")
    assert str(e.value) == "params.yaml: run r: seeds must be a non-empty list of distinct integers"


def test_check_rehearsal_goes_on_after_a_run_without_metrics(tmp_path):
    rehearsal_outputs(tmp_path, "0.1000")
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    params["runs"] = {"a": {}, "r": {}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    (tmp_path / "results/runs/r/metrics.json").write_text(json.dumps({"data_md5": "f" * 32}))
    assert check_rehearsal(tmp_path) == [
        "a: no metrics.json",
        "r: metrics.json is not marked as a rehearsal",
    ]


def test_check_rehearsal_names_each_seed_that_records_other_data(tmp_path):
    path = rehearsal_of_seeds(tmp_path / "a", ["0", "2"])
    metrics = json.loads(path.read_text())
    metrics["seeds"]["2"]["data_md5"] = "0d4372a7"
    path.write_text(json.dumps(metrics))
    assert check_rehearsal(tmp_path / "a") == [
        f"r seed 2: records data md5 0d4372a7, the fetch stage verified {'f' * 32}"
    ]


def test_check_rehearsal_names_metrics_and_a_report_that_are_not_a_rehearsals(tmp_path):
    rehearsal_outputs(tmp_path, "0.1000")
    path = tmp_path / "results/runs/r/metrics.json"
    path.write_text(json.dumps({"data_md5": "f" * 32}))
    report = tmp_path / "results/report/report.md"
    report.write_text(report.read_text().replace(": REHEARSAL", ""))
    certificate = tmp_path / "results/certificate.json"
    certificate.write_text(certificate.read_text().replace("REHEARSAL", "rehearsal"))
    assert check_rehearsal(tmp_path) == [
        "r: metrics.json is not marked as a rehearsal",
        "certificate.json's first line",
        "report.md's first line does not say REHEARSAL",
    ]


def test_check_rehearsal_names_a_report_without_cells_and_a_missing_report(tmp_path):
    rehearsal_outputs(tmp_path, "0.1000")
    report = tmp_path / "results/report/report.md"
    report.write_text("# Reproduction report: REHEARSAL\n\nno table\n")
    assert check_rehearsal(tmp_path) == ["report.md has no table cells"]
    (tmp_path / "results/runs/r/metrics.json").unlink()
    report.unlink()
    assert check_rehearsal(tmp_path) == ["r: no metrics.json", "no results/report/report.md"]
