"""Golden tables and the comparison of measured metrics against them.

A golden table is a YAML file with its provenance (source, recipe, split, metric, checkpoint,
runs per cell) and a list of cells. Each cell names a run of the grid, a metric of that run's
``metrics.json``, the golden value (or ``null``: no published number, reported as
'no reference' and never invented) and a tolerance rule:

* ``two_sided``: ``|measured - golden| <= points`` (accuracy points, i.e. 1.0 = 0.01);
* ``one_sided_below``: ``measured >= golden - points`` (no worse than ``points`` below).

Each cell also says which statistic of the run it compares (``statistic``), as the papers
summarized their numbers: ``single`` (one run: its value), ``mean`` (the mean over the run's
seeds, shown with their standard deviation; He et al. 2015's ResNet-110: mean of 5) or
``median`` (He et al. 2016's ResNet-164: median of 5). ``mean`` and ``median`` cells name the
number of seeds they need (``runs``); fewer is a failure, not a weaker pass. A metric
``valid_acc@160`` is the validation accuracy of checkpoint 160 (``valid_acc`` in metrics.json).

A tolerance may state what it is derived from: ``sigma_run`` (the spread, in points, of one
run's value over seeds) and ``k``. Its ``points`` are then ``k`` standard errors of the
difference between the golden statistic and ours, each the same statistic of as many runs
(``derived_points``); a table whose points do not match its derivation is refused.

``compare`` gives every cell a verdict (pass, fail, missing, too few runs, no reference).
Missing metrics are failures: a cell is never passed silently.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

# A run's summary metrics (metrics.json), each with the checkpoint its seeds measured it on (a
# key of each seed's metrics, or the run's last epoch) and its split; None for one that is not
# an accuracy of one checkpoint. A cell may also name one checkpoint's value: ``valid_acc@160``.
METRICS: dict[str, tuple[str, str] | None] = {
    "valid_acc_final": ("final_epoch", "valid"),
    "valid_acc_chosen": ("chosen_epoch", "valid"),
    "test_acc_chosen": ("chosen_epoch", "test"),
    "test_acc_final": ("final_epoch", "test"),
    "test_acc_continued": ("last_epoch", "test"),
    "continued_epoch_seconds": None,
    "continued_last_batch_loss": None,
}
RULES = ("two_sided", "one_sided_below")
# Asymptotic standard error of the median of n normal draws: sqrt(pi / (2 n)) sigma (for n = 5,
# 0.56 sigma; the exact value is 0.54 sigma).
STATISTICS = ("single", "mean", "median")
FAILING = ("fail", "missing", "too few runs", "unknown metric")
PROVENANCE = ("source", "recipe", "split", "metric", "checkpoint", "runs_per_cell")


class GoldenError(ValueError):
    """A golden table or a metrics file is malformed; the message names the file."""


@dataclass(frozen=True)
class Cell:
    table: str
    run: str
    metric: str
    golden: float | None
    rule: str
    points: float
    note: str = ""
    statistic: str = "single"
    runs: int = 1
    sigma_run: float | None = None
    k: float | None = None

    @property
    def rule_in_words(self) -> str:
        """The tolerance's rule, without a character a markdown table would split on."""
        if self.rule == "two_sided":
            return f"within {self.points:g} points of golden"
        return f"at least golden - {self.points:g} points"

    @property
    def derivation(self) -> str:
        """The tolerance's rule in words and numbers."""
        text = self.rule_in_words
        if self.sigma_run is None:
            return text
        of = "one run" if self.statistic == "single" else f"the {self.statistic} of {self.runs}"
        return (
            f"{text}: {self.k:g} standard errors of the difference of two values, each {of}, "
            f"with a one-run spread of {self.sigma_run:g} points"
        )


def finite(value: Any) -> bool:
    """A real number that is neither infinite nor NaN (YAML's .inf and .nan are floats)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def derived_points(statistic: str, runs: int, sigma_run: float, k: float) -> float:
    """``k`` standard errors (in points) of the difference of two independent values, each
    ``statistic`` of ``runs`` runs whose one-run spread is ``sigma_run`` points."""
    if statistic == "single":
        spread = sigma_run
    elif statistic == "mean":
        spread = sigma_run / math.sqrt(runs)
    else:
        spread = sigma_run * math.sqrt(math.pi / (2 * runs))
    return k * math.sqrt(2) * spread


def load_table(path: str | Path) -> tuple[dict[str, Any], list[Cell]]:
    """The table's provenance and its cells; GoldenError naming the file and cell if bad."""
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise GoldenError(f"{path}: cannot read golden table: {e}") from e
    if not isinstance(doc, dict) or not isinstance(doc.get("cells"), list):
        raise GoldenError(f"{path}: expected a mapping with a list of 'cells'")
    missing = [k for k in PROVENANCE if k not in doc]
    if missing:
        raise GoldenError(f"{path}: provenance fields missing: {', '.join(missing)}")
    cells = []
    for i, raw in enumerate(doc["cells"]):
        where = f"{path}: cell {i}"
        if not isinstance(raw, dict):
            raise GoldenError(f"{where}: expected a mapping, got {raw!r}")
        for key in ("run", "metric", "golden", "tolerance"):
            if key not in raw:
                raise GoldenError(f"{where}: missing {key!r}")
        golden = raw["golden"]
        if golden is not None and (
            isinstance(golden, bool) or not isinstance(golden, (int, float)) or not 0 <= golden <= 1
        ):
            raise GoldenError(
                f"{where} ({raw['run']}): golden must be an accuracy in [0, 1] or "
                f"null, got {golden!r}"
            )
        tol = raw["tolerance"]
        if not isinstance(tol, dict) or tol.get("rule") not in RULES:
            raise GoldenError(f"{where} ({raw['run']}): tolerance.rule must be one of {RULES}")
        points = tol.get("points")
        if not finite(points) or points < 0:
            raise GoldenError(
                f"{where} ({raw['run']}): tolerance.points must be a finite number >= 0, got "
                f"{points!r}"
            )
        statistic, runs = raw.get("statistic", "single"), raw.get("runs", 1)
        if statistic not in STATISTICS:
            raise GoldenError(f"{where} ({raw['run']}): statistic must be one of {STATISTICS}")
        if isinstance(runs, bool) or not isinstance(runs, int) or runs < 1:
            raise GoldenError(f"{where} ({raw['run']}): runs must be an integer >= 1")
        sigma_run, k = tol.get("sigma_run"), tol.get("k")
        if (sigma_run is None) != (k is None):
            raise GoldenError(f"{where} ({raw['run']}): a derivation gives both sigma_run and k")
        if sigma_run is not None:
            for name, value in (("sigma_run", sigma_run), ("k", k)):
                if not finite(value) or value <= 0:
                    raise GoldenError(
                        f"{where} ({raw['run']}): tolerance.{name} must be a finite number > 0, "
                        f"got {value!r}"
                    )
            derived = derived_points(statistic, runs, sigma_run, k)
            if abs(derived - points) > 0.005:
                raise GoldenError(
                    f"{where} ({raw['run']}): tolerance.points {points} does not match its "
                    f"derivation ({k} x sqrt(2) x the {statistic} spread of sigma_run "
                    f"{sigma_run}: {derived:.2f}); write points: {derived:.2f}"
                )
        cells.append(
            Cell(
                path.name,
                str(raw["run"]),
                str(raw["metric"]),
                None if golden is None else float(golden),
                tol["rule"],
                float(points),
                str(raw.get("note", "")),
                statistic,
                runs,
                None if sigma_run is None else float(sigma_run),
                None if k is None else float(k),
            )
        )
    provenance = {k: doc[k] for k in PROVENANCE}
    return provenance, cells


def load_metrics(path: Path) -> dict[str, Any]:
    try:
        metrics = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise GoldenError(f"{path}: cannot read metrics: {e}") from e
    for key, value in metrics.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise GoldenError(f"{path}: metric {key!r} is {value}, not a finite number")
        is_accuracy = "_acc_" in key and not key.endswith("_std")
        if is_accuracy and isinstance(value, (int, float)) and not 0 <= value <= 1:
            raise GoldenError(
                f"{path}: {key} is {value}, not an accuracy in [0, 1] (a percentage? write "
                f"{value / 100:g})"
            )
    return metrics


def lookup(metrics: dict[str, Any], metric: str) -> tuple[bool, Any]:
    """Whether ``metrics`` has ``metric`` (``name@epoch``: one checkpoint's value of the
    per-checkpoint mapping ``name``), and its value."""
    name, epoch = parse_metric(metric)
    if epoch is None:
        return metric in metrics, metrics.get(metric)
    per_checkpoint = metrics.get(name)
    if not isinstance(per_checkpoint, dict) or epoch not in per_checkpoint:
        return False, None
    return True, per_checkpoint[epoch]


def parse_metric(metric: str) -> tuple[str, str | None]:
    """``name@epoch`` as (name, epoch), the epoch as metrics.json's keys spell it; a summary
    metric as (its name, None)."""
    name, at, epoch = metric.partition("@")
    return (name, epoch) if at else (name, None)


def measured_value(cell: Cell, metrics: dict[str, Any]) -> tuple[float | None, int]:
    """The cell's statistic of the run's metric, and how many seeds it summarizes."""
    seeds = len(metrics.get("seeds", {})) or (1 if metrics else 0)
    if cell.statistic == "median" and seeds > 1:
        return metrics.get(f"{cell.metric}_median"), seeds
    return lookup(metrics, cell.metric)[1], seeds


def verdict(cell: Cell, measured: float | None, seeds: int = 1, known: bool = True) -> str:
    """The cell's verdict; ``known``: whether the run's metrics name the cell's metric at all
    (a misspelled metric is named as such, not passed off as a missing run)."""
    if not known:
        return "unknown metric"
    if measured is None:
        return "missing"
    if seeds < cell.runs:
        return "too few runs"
    if cell.golden is None:
        return "no reference"
    tolerance = cell.points / 100
    if cell.rule == "two_sided":
        ok = abs(measured - cell.golden) <= tolerance + 1e-12
    else:
        ok = measured >= cell.golden - tolerance - 1e-12
    return "pass" if ok else "fail"


def compare(tables: list[Path], metrics_dir: Path) -> dict[str, Any]:
    """Every cell of every table against ``metrics_dir/<run>/metrics.json``."""
    if not Path(metrics_dir).is_dir():
        raise GoldenError(
            f"{metrics_dir}: no such metrics folder (the evaluate stage writes one metrics.json "
            "per run into it: stage metrics --metrics-dir)"
        )
    rows, provenance, rehearsal = [], {}, False
    for table in tables:
        prov, cells = load_table(table)
        provenance[Path(table).name] = prov
        for cell in cells:
            path = metrics_dir / cell.run / "metrics.json"
            metrics = load_metrics(path) if path.exists() else {}
            rehearsal = rehearsal or metrics.get("rehearsal") is True
            measured, seeds = measured_value(cell, metrics)
            rows.append(
                {
                    "table": cell.table,
                    "run": cell.run,
                    "metric": cell.metric,
                    "statistic": cell.statistic,
                    "seeds": seeds,
                    "measured": measured,
                    "spread": metrics.get(f"{cell.metric}_std"),
                    "golden": cell.golden,
                    "rule": cell.rule,
                    "points": cell.points,
                    "derivation": cell.derivation,
                    "verdict": verdict(
                        cell, measured, seeds, known=not metrics or lookup(metrics, cell.metric)[0]
                    ),
                }
            )
    failed = [f"{r['run']}:{r['metric']}" for r in rows if r["verdict"] in FAILING]
    return {
        "ok": not failed,
        "failed": failed,
        "rehearsal": rehearsal,
        "rows": rows,
        "provenance": provenance,
    }


REHEARSAL_NOTE = (
    "REHEARSAL: amounts shrunk (pipeline/rehearsal.yaml); every path of the study ran, but the "
    "values are meaningless."
)


def markdown(result: dict[str, Any]) -> str:
    def pct(v: float | None) -> str:
        return "—" if v is None else f"{100 * v:.2f}"

    lines = [
        "| table | run | metric | statistic (seeds) | measured % | golden % | tolerance "
        "| verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        tol = f"±{r['points']:g}" if r["rule"] == "two_sided" else f"≥ −{r['points']:g}"
        measured = pct(r["measured"])
        if r.get("spread") is not None:
            measured += f" ± {100 * r['spread']:.2f}"
        lines.append(
            f"| {r['table']} | {r['run']} | {r['metric']} | {r['statistic']} ({r['seeds']}) | "
            f"{measured} | "
            f"{pct(r['golden'])} | {tol} | {r['verdict']} |"
        )
    rules = dict.fromkeys(f"- {r['table']}: {r['derivation']}" for r in result["rows"])
    lines += ["", "Tolerances (each cell's rule and what it is derived from):", "", *rules]
    status = "all cells pass" if result["ok"] else f"FAILED: {', '.join(result['failed'])}"
    head = [REHEARSAL_NOTE, ""] if result.get("rehearsal") else []
    return "\n".join(head + lines) + f"\n\nVerdict: {status}\n"
