"""The study's report: accuracy tables laid out like the seed's (rows version, columns size)
beside the golden values, learning-curve plots per recipe and version, and accuracy against
depth next to the papers' numbers. Writes ``OUT/report.md`` (in the pipeline
``results/report/report.md``) and PNG files beside it."""

from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path
from typing import Any

import yaml

from resnet_repro.certificate import markdown as certificate_markdown
from resnet_repro.config import load_params
from resnet_repro.golden import REHEARSAL_NOTE
from resnet_repro.net import resnet_depth
from resnet_repro.recipes import DEFAULT_RECIPE


def paper_points(
    comparison: dict[str, Any], runs: dict[str, dict[str, Any]], version: int
) -> list[tuple[int, float]]:
    """The papers' (depth, test accuracy) of ``version``: the golden values of the compared
    table of the paper recipe (none when the grid is not compared with it)."""
    return sorted(
        (resnet_depth(version, runs[r["run"]]["size"]), r["golden"])
        for r in comparison["rows"]
        if comparison["provenance"][r["table"]]["recipe"] == "paper"
        and r["golden"] is not None
        and r["run"] in runs
        and runs[r["run"]]["version"] == version
    )


def read_curve(path: Path) -> dict[str, list[float]]:
    """Epoch, training loss and validation accuracy; NaN (not drawn) where a run has no
    validation split."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return {
        k: [float(r[k]) if r[k] != "" else float("nan") for r in rows]
        for k in ("epoch", "train_loss", "valid_acc")
    }


def shown_metrics(runs: dict[str, dict[str, Any]], compared: dict) -> list[str]:
    """The final validation and test accuracies, and every metric a golden cell compares for
    these runs (the seed's test cells compare the chosen checkpoint's)."""
    golden = sorted({metric for run, metric in compared if run in runs})
    return list(dict.fromkeys(["valid_acc_final", *golden, "test_acc_final"]))


def measured_text(metrics: dict[str, Any] | None, metric: str, row: dict | None) -> str:
    """A run's value of ``metric`` for a table cell: the statistic its golden cell compares
    (the median of 5 seeds, say), else the run's value (the mean over its seeds), with the
    statistic named when it summarizes several seeds."""
    if not metrics:
        return "missing"
    if row is not None:
        value, statistic, seeds = row["measured"], row["statistic"], row["seeds"]
    else:
        value, statistic, seeds = metrics.get(metric), "mean", len(metrics.get("seeds", {}))
    if value is None:
        return "no validation split" if metric.startswith("valid") else "missing"
    return f"{value:.4f}" + (f" ({statistic} of {seeds})" if seeds > 1 else "")


def golden_epochs(params: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """What the golden tables record of the seed's continued epochs, per run:
    ``epoch_seconds`` (its "Duration" lines' median) and ``logged_loss`` (its "Loss" lines)."""
    published: dict[str, dict[str, Any]] = {"epoch_seconds": {}, "logged_loss": {}}
    for table in str(params.get("compare", {}).get("golden", "")).split():
        path = Path(table)
        doc = yaml.safe_load(path.read_text()) if path.exists() else None
        for key, values in published.items():
            if isinstance(doc, dict):
                values.update(doc.get(key) or {})
    return published


def epoch_section(
    runs: dict[str, dict[str, Any]], published: dict[str, dict[str, Any]]
) -> list[str]:
    """Each continued run's epochs as the seed logged them (its "Epoch N Loss L Duration S"
    lines): the median seconds and the median last mini-batch loss of the continued epochs,
    each beside the seed's where it published one."""
    seconds, losses = published["epoch_seconds"], published["logged_loss"]
    rows = []
    for name, run in runs.items():
        metrics = run["metrics"] or {}
        measured = (
            metrics.get("continued_epoch_seconds"),
            metrics.get("continued_last_batch_loss"),
        )
        if measured == (None, None) and name not in seconds and name not in losses:
            continue
        cells = [
            "missing" if measured[0] is None else f"{measured[0]:.1f}",
            f"{seconds[name]:.1f}" if name in seconds else "no reference",
            "missing" if measured[1] is None else f"{measured[1]:.4f}",
            f"{statistics.median(losses[name]):.4f}" if name in losses else "no reference",
        ]
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    if not rows:
        return []
    return [
        "## Continued epochs",
        "",
        "Medians over the continued epochs (every training image of the run's data, no "
        "validation) of their seconds and of their last mini-batch's loss (what the seed logged "
        "as an epoch's Loss: one batch, so it jumps from epoch to epoch), beside the seed's (its "
        "Figs. 10-11: CIFAR-10's 50,000 images on its own GPU):",
        "",
        "| run | measured s | seed's s | measured last-batch loss | seed's logged loss |",
        "|---|---|---|---|---|",
        *rows,
        "",
        *epoch_losses(runs, losses),
    ]


def epoch_losses(runs: dict[str, dict[str, Any]], losses: dict[str, list[float]]) -> list[str]:
    """Epoch by epoch, the last mini-batch loss of each run's last epochs beside the seed's
    logged Loss of as many (its continued epochs), from the run's history.csv."""
    rows = []
    for name, logged in losses.items():
        curve = runs.get(name, {}).get("curve")
        if curve is None or not curve.exists():
            continue
        with open(curve, newline="") as f:
            ours = [r.get("last_batch_loss") or "" for r in csv.DictReader(f)][-len(logged) :]
        rows += [
            f"| {name}, measured | " + " | ".join(f"{float(v):.4f}" if v else "" for v in ours),
            f"| {name}, seed's | " + " | ".join(f"{v:.4f}" for v in logged),
        ]
    if not rows:
        return []
    width = max(len(v) for v in losses.values())
    return [
        "Each continued epoch's last mini-batch loss (the seed's Figs. 10-11 list its ten):",
        "",
        "| run | " + " | ".join(str(i) for i in range(1, width + 1)) + " |",
        "|---|" + "---|" * width,
        *(row + " |" for row in rows),
        "",
    ]


def write_report(
    params_path: Path,
    metrics_dir: Path,
    comparison: Path,
    out_dir: Path,
    certificate: dict[str, Any] | None = None,
) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    params = load_params(params_path)
    defaults = params.get("train_defaults", {})
    runs: dict[str, dict[str, Any]] = {}
    for name, spec in params["runs"].items():
        metrics_path = metrics_dir / name / "metrics.json"
        runs[name] = {
            "recipe": spec.get("recipe", defaults.get("recipe", DEFAULT_RECIPE)),
            "version": spec.get("version", defaults.get("version")),
            "size": spec.get("resnet_size", defaults.get("resnet_size")),
            "metrics": json.loads(metrics_path.read_text()) if metrics_path.exists() else None,
            "curve": metrics_dir / name / "history.csv",
        }
    result = json.loads(comparison.read_text())
    # The comparison's row of a cell: its golden value and the statistic it compares.
    compared = {(r["run"], r["metric"]): r for r in result["rows"]}
    out_dir.mkdir(parents=True, exist_ok=True)
    lines = ["# Reproduction report", ""]
    if result.get("rehearsal"):
        lines = ["# Reproduction report: REHEARSAL", "", REHEARSAL_NOTE, ""]
    verdict = "all cells pass" if result["ok"] else "FAILED: " + ", ".join(result["failed"])
    lines += [f"Comparison verdict: {verdict} (details: comparison.md)", ""]
    if certificate is not None:
        lines += [f"Certificate: {certificate['status']} (section Certificate below)", ""]
    for recipe in sorted({r["recipe"] for r in runs.values()}):
        mine = {k: r for k, r in runs.items() if r["recipe"] == recipe}
        sizes = sorted({r["size"] for r in mine.values()}, reverse=True)
        lines += [f"## Recipe `{recipe}`", ""]
        for metric in shown_metrics(mine, compared):
            lines += [
                f"{metric} (measured / golden):",
                "",
                "| version | " + " | ".join(f"n={s}" for s in sizes) + " |",
                "|---|" + "---|" * len(sizes),
            ]
            for version in sorted({r["version"] for r in mine.values()}):
                cells = []
                for s in sizes:
                    key = next(
                        (k for k, r in mine.items() if r["version"] == version and r["size"] == s),
                        None,
                    )
                    if key is None:
                        cells.append("")
                        continue
                    row = compared.get((key, metric))
                    measured = measured_text(mine[key]["metrics"], metric, row)
                    ref = None if row is None else row["golden"]
                    cells.append(f"{measured} / {'no reference' if ref is None else f'{ref:.4f}'}")
                lines.append(f"| v{version} | " + " | ".join(cells) + " |")
            lines.append("")
        for version in sorted({r["version"] for r in mine.values()}):
            fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
            for r in sorted(mine.values(), key=lambda r: r["size"]):
                if r["version"] != version or not r["curve"].exists():
                    continue
                curve = read_curve(r["curve"])
                label = f"n={r['size']} (depth {resnet_depth(version, r['size'])})"
                ax_loss.plot(curve["epoch"], curve["train_loss"], label=label)
                ax_acc.plot(curve["epoch"], curve["valid_acc"], label=label)
            ax_loss.set(xlabel="epoch", ylabel="training loss", title=f"{recipe} v{version}")
            ax_acc.set(xlabel="epoch", ylabel="validation accuracy", title=f"{recipe} v{version}")
            ax_loss.legend()
            ax_acc.legend()
            png = out_dir / f"curves-{recipe}-v{version}.png"
            fig.tight_layout()
            fig.savefig(png, dpi=100)
            plt.close(fig)
            lines += [f"![learning curves {recipe} v{version}]({png.name})", ""]
    fig, ax = plt.subplots(figsize=(6, 4))
    for version, marker in ((1, "o"), (2, "s")):
        paper = paper_points(result, runs, version)
        if paper:
            ax.plot(*zip(*paper, strict=True), marker + "--", label=f"He et al. v{version}")
        for recipe in sorted({r["recipe"] for r in runs.values()}):
            pts = sorted(
                (resnet_depth(version, r["size"]), r["metrics"]["test_acc_final"])
                for r in runs.values()
                if r["version"] == version and r["recipe"] == recipe and r["metrics"]
            )
            if pts:
                ax.plot(*zip(*pts, strict=True), marker + "-", label=f"{recipe} v{version}")
    ax.set(xlabel="depth", ylabel="test accuracy", title="accuracy vs depth")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_dir / "accuracy-vs-depth.png", dpi=100)
    plt.close(fig)
    lines += ["## Accuracy against depth", "", "![accuracy vs depth](accuracy-vs-depth.png)", ""]
    lines += epoch_section(runs, golden_epochs(params))
    if certificate is not None:
        lines += ["", certificate_markdown(certificate)]
    report = out_dir / "report.md"
    report.write_text("\n".join(lines))
    return report
