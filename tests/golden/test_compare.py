"""The comparator on crafted tables, and the committed golden tables' own validity."""

import json
import re
from pathlib import Path

import pytest
import yaml

from resnet_repro.cli import main
from resnet_repro.golden import GoldenError, compare, load_table, markdown

TABLES = Path(__file__).parent / "tables"
PROVENANCE = {
    "source": "crafted",
    "recipe": "seed",
    "split": "45k/5k",
    "metric": "valid",
    "checkpoint": 200,
    "runs_per_cell": 1,
}


def write_table(path, cells, **extra):
    path.write_text(yaml.safe_dump({**PROVENANCE, **extra, "cells": cells}))
    return path


def cell(run, golden, rule="two_sided", points=1.0, metric="valid_acc_final"):
    return {
        "run": run,
        "metric": metric,
        "golden": golden,
        "tolerance": {"rule": rule, "points": points},
    }


def write_metrics(root, run, **metrics):
    (root / run).mkdir(parents=True)
    (root / run / "metrics.json").write_text(json.dumps(metrics))


@pytest.fixture
def crafted(tmp_path):
    table = write_table(
        tmp_path / "t.yaml",
        [
            cell("inside", 0.90),
            cell("edge", 0.90),
            cell("outside", 0.90),
            cell("above", 0.90, "one_sided_below", 0.5),
            cell("below", 0.90, "one_sided_below", 0.5),
            cell("noref", None),
            cell("absent", 0.90),
        ],
    )
    metrics = tmp_path / "metrics"
    for run, value in [
        ("inside", 0.905),
        ("edge", 0.91),
        ("outside", 0.8899),
        ("above", 0.95),
        ("below", 0.894),
        ("noref", 0.7),
    ]:
        write_metrics(metrics, run, valid_acc_final=value)
    return table, metrics


def test_verdicts_on_crafted_table(crafted):
    table, metrics = crafted
    result = compare([table], metrics)
    verdicts = {r["run"]: r["verdict"] for r in result["rows"]}
    assert verdicts == {
        "inside": "pass",
        "edge": "pass",
        "outside": "fail",
        "above": "pass",
        "below": "fail",
        "noref": "no reference",
        "absent": "missing",
    }
    assert not result["ok"]
    assert result["failed"] == [
        "outside:valid_acc_final",
        "below:valid_acc_final",
        "absent:valid_acc_final",
    ]
    text = markdown(result)
    assert "| t.yaml | absent | valid_acc_final | single (0) | — | 90.00 | ±1 | missing |" in text
    assert "FAILED: outside:valid_acc_final" in text


def test_mean_of_seeds_is_compared_and_spread_shown(tmp_path):
    table = write_table(tmp_path / "t.yaml", [cell("a", 0.9)])
    write_metrics(tmp_path / "m", "a", valid_acc_final=0.905, valid_acc_final_std=0.004)
    result = compare([table], tmp_path / "m")
    assert result["ok"] and result["rows"][0]["spread"] == 0.004
    assert "| 90.50 ± 0.40 |" in markdown(result)


def test_all_inside_passes(tmp_path):
    table = write_table(tmp_path / "t.yaml", [cell("a", 0.9), cell("b", None)])
    write_metrics(tmp_path / "m", "a", valid_acc_final=0.9)
    write_metrics(tmp_path / "m", "b", valid_acc_final=0.1)
    assert compare([table], tmp_path / "m")["ok"]


def test_cli_exit_status_and_outputs(crafted, tmp_path, capsys):
    table, metrics = crafted
    out = tmp_path / "results"
    assert (
        main(["compare", "--golden", str(table), "--metrics-dir", str(metrics), "--out", str(out)])
        == 1
    )
    assert "FAILED" in capsys.readouterr().out
    assert json.loads((out / "comparison.json").read_text())["ok"] is False
    assert (out / "comparison.md").read_text().startswith("| table |")


@pytest.mark.parametrize(
    ("cells", "message"),
    [
        ([{"run": "a", "metric": "m", "golden": 0.9}], r"cell 0: missing 'tolerance'"),
        ([cell("a", 1.5)], r"cell 0 \(a\): golden must be an accuracy in \[0, 1\]"),
        ([cell("a", "high")], r"cell 0 \(a\): golden must be an accuracy"),
        ([cell("a", 0.9, rule="roughly")], r"cell 0 \(a\): tolerance.rule must be one of"),
        (
            [cell("a", 0.9, points=-1)],
            r"cell 0 \(a\): tolerance.points must be a finite number >= 0",
        ),
        (["just a string"], r"cell 0: expected a mapping"),
    ],
)
def test_malformed_cells_name_the_file(tmp_path, cells, message):
    table = write_table(tmp_path / "bad.yaml", cells)
    with pytest.raises(GoldenError, match=rf"bad\.yaml: {message}"):
        compare([table], tmp_path)


def test_missing_provenance_is_refused(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"source": "x", "cells": []}))
    with pytest.raises(GoldenError, match="provenance fields missing: recipe, split"):
        load_table(path)


def test_nan_metric_names_the_file(tmp_path):
    table = write_table(tmp_path / "t.yaml", [cell("a", 0.9)])
    (tmp_path / "m" / "a").mkdir(parents=True)
    (tmp_path / "m" / "a" / "metrics.json").write_text('{"valid_acc_final": NaN}')
    with pytest.raises(GoldenError, match=r"a/metrics\.json: metric 'valid_acc_final' is nan"):
        compare([table], tmp_path / "m")


@pytest.mark.parametrize("name", ["seed.yaml", "paper.yaml", "cpu.yaml"])
def test_committed_tables_are_valid(name):
    provenance, cells = load_table(TABLES / name)
    assert provenance["source"] and cells


def test_seed_table_holds_the_reports_numbers():
    _, cells = load_table(TABLES / "seed.yaml")
    values = {(c.run, c.metric): c.golden for c in cells}
    assert values[("seed-v1-n18", "valid_acc_final")] == 0.8984
    assert values[("seed-v2-n8", "valid_acc_final")] == 0.8662
    # The test cells compare the model after the continued epochs (Figs. 10-11: model-10.ckpt).
    assert values[("seed-v1-n18", "test_acc_continued")] == 0.8981
    assert values[("seed-v2-n18", "test_acc_continued")] == 0.8729
    # Checkpoints 160-190 of the n=18 runs (Figs. 10-11); 200 is Tables 1-2's cell.
    assert [values[("seed-v1-n18", f"valid_acc@{e}")] for e in (160, 170, 180, 190)] == [
        0.8986,
        0.8968,
        0.8984,
        0.8982,
    ]
    assert values[("seed-v2-n18", "valid_acc@190")] == 0.8772
    assert {c.rule for c in cells} == {"two_sided"} and {c.points for c in cells} == {2.12}
    assert {(c.sigma_run, c.k) for c in cells} == {(0.5, 3.0)}
    doc = yaml.safe_load((TABLES / "seed.yaml").read_text())
    assert doc["epoch_seconds"] == {"seed-v1-n18": 74.83, "seed-v2-n18": 93.36}
    # The seed's "Loss" lines, Figs. 10-11 (report lines 288-297 and 322-331).
    seed_report = Path(__file__).parents[3] / "shared/seed/resnet-cifar10-assignment-report.txt"
    if seed_report.exists():
        logged = re.findall(r"^Epoch \d+ Loss ([\d.]+) Duration", seed_report.read_text(), re.M)
        assert [float(x) for x in logged] == doc["logged_loss"]["seed-v1-n18"] + doc["logged_loss"][
            "seed-v2-n18"
        ]
    assert len(doc["logged_loss"]["seed-v1-n18"]) == len(doc["logged_loss"]["seed-v2-n18"]) == 10


def test_paper_table_holds_he_et_al_and_no_invented_numbers():
    _, cells = load_table(TABLES / "paper.yaml")
    values = {c.run: c.golden for c in cells}
    assert values["paper-v1-n18"] == 0.9339 and values["paper-v2-n18"] == 0.9454
    assert values["paper-v1-n3"] == 0.9125
    assert [r for r, v in values.items() if v is None] == [
        "paper-v1-n8",
        "paper-v1-n16",
        "paper-v2-n8",
        "paper-v2-n16",
    ]
    assert {c.rule for c in cells} == {"one_sided_below"}
    points = {c.run: (c.points, c.sigma_run) for c in cells}
    assert points["paper-v1-n3"] == (0.85, 0.2)  # single runs: 3 x sqrt(2) x 0.2
    assert points["paper-v1-n18"] == (0.30, 0.16)  # mean of 5, the paper's own 0.16
    assert points["paper-v2-n18"] == (0.48, 0.2)  # median of 5


def test_a_tolerance_must_match_its_derivation(tmp_path):
    """points = k x sqrt(2) x the statistic's spread; a hand-edited number is refused."""
    good = cell("r", 0.9, points=0.85)
    good["tolerance"].update(sigma_run=0.2, k=3)
    assert load_table(write_table(tmp_path / "ok.yaml", [good]))[1][0].derivation == (
        "within 0.85 points of golden: 3 standard errors of the difference of two values, "
        "each one run, with a one-run spread of 0.2 points"
    )
    bad = cell("r", 0.9, points=0.5)
    bad["tolerance"].update(sigma_run=0.2, k=3)
    with pytest.raises(GoldenError, match=r"tolerance.points 0.5 does not match .*write points"):
        load_table(write_table(tmp_path / "bad.yaml", [bad]))
    half = cell("r", 0.9)
    half["tolerance"]["k"] = 3
    with pytest.raises(GoldenError, match=r"a derivation gives both sigma_run and k"):
        load_table(write_table(tmp_path / "half.yaml", [half]))
    mean = {**cell("r", 0.9, points=0.3), "statistic": "mean", "runs": 5}
    mean["tolerance"].update(sigma_run=0.16, k=3)
    assert "the mean of 5" in load_table(write_table(tmp_path / "m.yaml", [mean]))[1][0].derivation


def test_a_checkpoint_cell_reads_the_per_checkpoint_accuracy(tmp_path):
    table = write_table(
        tmp_path / "t.yaml",
        [cell("r", 0.90, metric="valid_acc@160"), cell("r", 0.90, metric="valid_acc@999")],
    )
    write_metrics(tmp_path / "m", "r", valid_acc={"160": 0.905, "170": 0.5}, valid_acc_final=0.5)
    rows = compare([table], tmp_path / "m")["rows"]
    assert [(r["measured"], r["verdict"]) for r in rows] == [
        (0.905, "pass"),
        (None, "unknown metric"),
    ]
    assert "Tolerances (each cell's rule" in markdown(compare([table], tmp_path / "m"))


def test_mean_and_median_cells_use_the_papers_statistic_over_enough_seeds(tmp_path):
    def seeded(run, values):
        per_seed = {str(i): {"test_acc_final": v} for i, v in enumerate(values)}
        mean = sum(values) / len(values)
        median = sorted(values)[len(values) // 2]
        write_metrics(
            tmp_path / "m", run, test_acc_final=mean, test_acc_final_median=median, seeds=per_seed
        )

    # Mean 0.930 passes a golden of 0.933 within 0.5 point; median 0.920 fails it.
    seeded("five", [0.92, 0.92, 0.92, 0.94, 0.95])
    seeded("three", [0.94, 0.94, 0.94])
    rows = [
        {
            **cell("five", 0.933, "one_sided_below", 0.5, "test_acc_final"),
            "statistic": "mean",
            "runs": 5,
        },
        {
            **cell("five", 0.933, "one_sided_below", 0.5, "test_acc_final"),
            "statistic": "median",
            "runs": 5,
        },
        {
            **cell("three", 0.933, "one_sided_below", 0.5, "test_acc_final"),
            "statistic": "mean",
            "runs": 5,
        },
    ]
    result = compare([write_table(tmp_path / "t.yaml", rows)], tmp_path / "m")
    got = [
        (r["statistic"], r["seeds"], round(r["measured"], 4), r["verdict"]) for r in result["rows"]
    ]
    assert got == [
        ("mean", 5, 0.93, "pass"),
        ("median", 5, 0.92, "fail"),
        ("mean", 3, 0.94, "too few runs"),
    ]
    assert "mean (5)" in markdown(result) and not result["ok"]


def test_unknown_statistic_is_refused(tmp_path):
    bad = {**cell("r", 0.9), "statistic": "best"}
    with pytest.raises(
        GoldenError, match=r"statistic must be one of \('single', 'mean', 'median'\)"
    ):
        load_table(write_table(tmp_path / "t.yaml", [bad]))


def test_boundaries_of_the_rules_and_values(tmp_path):
    cells = [
        cell("exact-below", 0.90, "one_sided_below", 0.5),  # measured exactly 0.5 below
        cell("zero", 0.0, "two_sided", 0.0),
        cell("one", 1.0, "two_sided", 0.0),
    ]
    write_metrics(tmp_path / "m", "exact-below", valid_acc_final=0.895)
    write_metrics(tmp_path / "m", "zero", valid_acc_final=0.0)
    write_metrics(tmp_path / "m", "one", valid_acc_final=1.0)
    result = compare([write_table(tmp_path / "t.yaml", cells)], tmp_path / "m")
    assert [r["verdict"] for r in result["rows"]] == ["pass", "pass", "pass"]
    assert result["provenance"]["t.yaml"]["source"] == "crafted"
    _, loaded = load_table(tmp_path / "t.yaml")
    assert loaded[0].note == "" and loaded[0].statistic == "single" and loaded[0].runs == 1


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"golden": -0.01}, r"golden must be an accuracy in \[0, 1\]"),
        ({"golden": 1.01}, r"golden must be an accuracy in \[0, 1\]"),
        (
            {"tolerance": {"rule": "two_sided", "points": True}},
            "tolerance.points must be a finite number >= 0",
        ),
        (
            {"tolerance": {"rule": "two_sided", "points": -1}},
            "tolerance.points must be a finite number >= 0",
        ),
        (
            {"tolerance": {"rule": "two_sided", "points": float("inf")}},
            "tolerance.points must be a finite number >= 0, got inf",
        ),
        (
            {"tolerance": {"rule": "two_sided", "points": float("nan")}},
            "tolerance.points must be a finite number >= 0, got nan",
        ),
        (
            {"tolerance": {"rule": "two_sided", "points": 0.85, "sigma_run": float("nan"), "k": 3}},
            "tolerance.sigma_run must be a finite number > 0, got nan",
        ),
        (
            {"tolerance": {"rule": "two_sided", "points": 0.0, "sigma_run": 0, "k": 3}},
            "tolerance.sigma_run must be a finite number > 0, got 0",
        ),
        (
            {"tolerance": {"rule": "two_sided", "points": 0.85, "sigma_run": "0.2", "k": 3}},
            "tolerance.sigma_run must be a finite number > 0, got '0.2'",
        ),
        (
            {"tolerance": {"rule": "two_sided", "points": 0.85, "sigma_run": 0.2, "k": True}},
            "tolerance.k must be a finite number > 0, got True",
        ),
        (
            {
                "tolerance": {
                    "rule": "two_sided",
                    "points": 0.85,
                    "sigma_run": 0.2,
                    "k": float("inf"),
                }
            },
            "tolerance.k must be a finite number > 0, got inf",
        ),
        ({"runs": 0}, "runs must be an integer >= 1"),
        ({"runs": True}, "runs must be an integer >= 1"),
    ],
)
def test_bad_cell_values_are_refused(tmp_path, change, message):
    with pytest.raises(GoldenError, match=rf"cell 0 \(r\): {message}"):
        load_table(write_table(tmp_path / "t.yaml", [{**cell("r", 0.9), **change}]))


def test_a_table_that_is_not_a_mapping_of_cells_is_refused(tmp_path):
    (tmp_path / "t.yaml").write_text("- just a list\n")
    with pytest.raises(GoldenError, match="expected a mapping with a list of 'cells'"):
        load_table(tmp_path / "t.yaml")


def test_single_run_metrics_against_median_and_several_runs(tmp_path):
    write_metrics(tmp_path / "m", "single", test_acc_final=0.93)
    rows = [
        {**cell("single", 0.93, metric="test_acc_final"), "statistic": "median"},
        {**cell("single", 0.93, metric="test_acc_final"), "statistic": "mean", "runs": 2},
    ]
    result = compare([write_table(tmp_path / "t.yaml", rows)], tmp_path / "m")
    assert [(r["measured"], r["seeds"], r["verdict"]) for r in result["rows"]] == [
        (0.93, 1, "pass"),
        (0.93, 1, "too few runs"),
    ]


def test_markdown_rows_show_rule_spread_and_verdict(tmp_path):
    write_metrics(
        tmp_path / "m",
        "r",
        valid_acc_final=0.9,
        valid_acc_final_std=0.004,
        seeds={"0": {}, "1": {}},
    )
    rows = [
        cell("r", 0.9, "one_sided_below", 0.5),
        {**cell("r", 0.9), "statistic": "mean", "runs": 2},
    ]
    text = markdown(compare([write_table(tmp_path / "t.yaml", rows)], tmp_path / "m"))
    assert (
        "| t.yaml | r | valid_acc_final | single (2) | 90.00 ± 0.40 | 90.00 | ≥ −0.5 | pass |"
        in text
    )
    assert "| t.yaml | r | valid_acc_final | mean (2) | 90.00 ± 0.40 | 90.00 | ±1 | pass |" in text
    assert text.endswith("\n\nVerdict: all cells pass\n")


def test_unreadable_table_and_metrics_are_named(tmp_path):
    (tmp_path / "t.yaml").write_text("cells: [\n")
    with pytest.raises(GoldenError, match=r"t.yaml: cannot read golden table: "):
        load_table(tmp_path / "t.yaml")
    (tmp_path / "m" / "r").mkdir(parents=True)
    (tmp_path / "m" / "r" / "metrics.json").write_text("{not json")
    table = write_table(tmp_path / "ok.yaml", [cell("r", 0.9)])
    with pytest.raises(GoldenError, match=r"metrics.json: cannot read metrics: "):
        compare([table], tmp_path / "m")


def test_notes_two_sided_above_and_the_markdown_frame(tmp_path):
    rows = [{**cell("high", 0.90), "note": "why"}, cell("low", 0.90)]
    write_metrics(tmp_path / "m", "high", valid_acc_final=0.92, valid_acc_final_std=0.05)
    write_metrics(tmp_path / "m", "low", valid_acc_final=0.85)
    table = write_table(tmp_path / "t.yaml", rows)
    assert load_table(table)[1][0].note == "why"
    result = compare([table], tmp_path / "m")
    assert [r["verdict"] for r in result["rows"]] == ["fail", "fail"]  # 2 above, 5 below
    lines = markdown(result).splitlines()
    assert lines[0] == (
        "| table | run | metric | statistic (seeds) | measured % | golden % | tolerance | verdict |"
    )
    assert lines[1] == "|---|---|---|---|---|---|---|---|"
    assert "| 92.00 ± 5.00 |" in lines[2]
    assert lines[-1] == "Verdict: FAILED: high:valid_acc_final, low:valid_acc_final"


def test_verdict_counts_one_run_unless_told_otherwise():
    from resnet_repro.golden import Cell, verdict

    two = Cell("t", "r", "m", 0.9, "two_sided", 1.0, statistic="mean", runs=2)
    assert verdict(two, 0.9) == "too few runs" and verdict(two, 0.9, seeds=2) == "pass"


def test_a_misspelled_metric_is_named_not_passed_off_as_a_missing_run(tmp_path):
    table = write_table(tmp_path / "t.yaml", [cell("r", 0.9, metric="test_acc_finall")])
    write_metrics(tmp_path / "m", "r", test_acc_final=0.9)
    result = compare([table], tmp_path / "m")
    assert [row["verdict"] for row in result["rows"]] == ["unknown metric"]
    assert result["failed"] == ["r:test_acc_finall"] and "unknown metric" in markdown(result)


def test_an_accuracy_written_as_a_percentage_is_refused(tmp_path):
    table = write_table(tmp_path / "t.yaml", [cell("r", 0.9)])
    write_metrics(tmp_path / "m", "r", valid_acc_final=86.0)
    with pytest.raises(GoldenError, match=r"valid_acc_final is 86.0, not an accuracy in \[0, 1\]"):
        compare([table], tmp_path / "m")


def test_a_rehearsals_metrics_mark_the_comparison_and_its_table(tmp_path):
    """One rehearsal run among others marks the whole comparison (values mean nothing)."""
    rows = [cell("a", 0.9), cell("b", 0.9), cell("c", 0.9)]
    table = write_table(tmp_path / "t.yaml", rows)
    write_metrics(tmp_path / "m", "a", valid_acc_final=0.9, rehearsal=True)
    write_metrics(tmp_path / "m", "b", valid_acc_final=0.9, rehearsal=False)
    write_metrics(tmp_path / "m", "c", valid_acc_final=0.9)
    result = compare([table], tmp_path / "m")
    assert result["rehearsal"] is True
    text = markdown(result)
    assert text.startswith(
        "REHEARSAL: amounts shrunk (pipeline/rehearsal.yaml); every path of the study ran, but "
        "the values are meaningless.\n\n| table | run |"
    )
    for run in ("a", "b", "c"):
        (tmp_path / "m" / run / "metrics.json").unlink()
        (tmp_path / "m" / run).rmdir()
    write_metrics(tmp_path / "m", "a", valid_acc_final=0.9, rehearsal=False)
    write_metrics(tmp_path / "m", "b", valid_acc_final=0.9, rehearsal="yes")
    result = compare([table], tmp_path / "m")
    assert result["rehearsal"] is False and markdown(result).startswith("| table | run |")


def test_the_tolerances_section_lists_each_rule_once(tmp_path):
    rows = [cell("a", 0.9), cell("b", 0.9, points=2.0)]
    write_metrics(tmp_path / "m", "a", valid_acc_final=0.9)
    write_metrics(tmp_path / "m", "b", valid_acc_final=0.9)
    lines = markdown(compare([write_table(tmp_path / "t.yaml", rows)], tmp_path / "m"))
    assert lines.splitlines()[4:] == [
        "",
        "Tolerances (each cell's rule and what it is derived from):",
        "",
        "- t.yaml: within 1 points of golden",
        "- t.yaml: within 2 points of golden",
        "",
        "Verdict: all cells pass",
    ]


def test_a_missing_metrics_folder_says_which_stage_writes_it(tmp_path):
    table = write_table(tmp_path / "t.yaml", [cell("r", 0.9)])
    with pytest.raises(GoldenError) as e:
        compare([table], tmp_path / "none")
    assert str(e.value) == (
        f"{tmp_path / 'none'}: no such metrics folder (the evaluate stage writes one "
        "metrics.json per run into it: stage metrics --metrics-dir)"
    )


def test_a_measurement_exactly_at_the_tolerance_passes():
    from resnet_repro.golden import Cell, verdict

    two = Cell("t", "r", "m", 0.5, "two_sided", 25.0)
    assert verdict(two, 0.75) == "pass" and verdict(two, 0.25) == "pass"
    assert verdict(two, 0.7500001) == "fail"
    below = Cell("t", "r", "m", 0.5, "one_sided_below", 25.0)
    assert verdict(below, 0.25) == "pass" and verdict(below, 0.2499999) == "fail"


def test_the_median_of_two_seeds_is_the_stated_median(tmp_path):
    from resnet_repro.golden import Cell, measured_value

    median = Cell("t", "r", "valid_acc_final", 0.9, "two_sided", 1.0, statistic="median", runs=2)
    two = {"valid_acc_final": 0.91, "valid_acc_final_median": 0.92, "seeds": {"0": {}, "1": {}}}
    assert measured_value(median, two) == (0.92, 2)
    one = {"valid_acc_final": 0.91, "valid_acc_final_median": 0.92}
    assert measured_value(median, one) == (0.91, 1)
    assert measured_value(median, {}) == (None, 0)


def test_a_metric_name_and_its_epoch():
    from resnet_repro.golden import parse_metric

    assert parse_metric("valid_acc@160") == ("valid_acc", "160")
    assert parse_metric("valid_acc@1@2") == ("valid_acc", "1@2")
    assert parse_metric("test_acc_final") == ("test_acc_final", None)


@pytest.mark.parametrize(
    ("metrics", "message"),
    [
        (
            {"test_acc_final": 1.5},
            "test_acc_final is 1.5, not an accuracy in [0, 1] (a percentage? write 0.015)",
        ),
        ({"test_acc_final": -0.1}, "test_acc_final is -0.1, not an accuracy"),
        ({"test_acc_final_std": 0.5, "test_acc_chosen": 2}, "test_acc_chosen is 2, not an"),
    ],
)
def test_metrics_that_are_not_accuracies_are_refused(tmp_path, metrics, message):
    from resnet_repro.golden import load_metrics

    path = tmp_path / "metrics.json"
    path.write_text(json.dumps(metrics))
    with pytest.raises(GoldenError) as e:
        load_metrics(path)
    assert str(e.value) == f"{path}: {message}" or str(e.value).startswith(f"{path}: {message}")


def test_spreads_and_other_numbers_are_not_accuracies(tmp_path):
    from resnet_repro.golden import load_metrics

    path = tmp_path / "metrics.json"
    fine = {
        "test_acc_final": 1.0,
        "valid_acc_final": 0.0,
        "test_acc_final_std": 1.5,
        "continued_epoch_seconds": 12.5,
        "epochs": 200,
    }
    path.write_text(json.dumps(fine))
    assert load_metrics(path) == fine
