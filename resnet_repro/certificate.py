"""The reproducibility certificate: every golden cell traced to the seeds, checkpoints, data,
code and machine behind it (``results/certificate.json``), and ``verify``, which checks that
the files on disk still give every number and verdict the certificate states.

For each cell the certificate holds its value, the statistic and seeds it summarizes, each
seed's value with the checkpoint (path, sha256) and split it was measured on, the spread, the
tolerance rule in words and numbers and the verdict; for each run folder the provenance
segments of its training (code commit and dirty flag, data md5, torch / CUDA / cuDNN, device,
world size, ...) and its wall time; the environment (Python, the installed packages and their
digest). Its first line says when it is a rehearsal, was trained on other data than the
official CIFAR-10 archive (a CPU-scale study), or from a dirty or unknown tree.

``verify`` re-reads all of it: each checkpoint's sha256, the data's md5, each seed's accuracy
re-evaluated (exactly equal on the device type that measured it; otherwise within
``IMAGES_APART`` images per 1,000 evaluated, at least one image), the run's metrics.json, the
golden table's cell, the statistic and the verdict re-derived from the numbers. One line per
cell; every failure names its cell.
"""

from __future__ import annotations

import collections
import hashlib
import importlib.metadata
import json
import math
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from resnet_repro.cifar import OFFICIAL_MD5
from resnet_repro.config import TrainConfig
from resnet_repro.golden import Cell, GoldenError, load_metrics, load_table, lookup, verdict
from resnet_repro.run_folder import read_history, read_provenance

FORMAT = 1
IMAGES_APART = 1  # per 1,000 evaluated images, when the device type differs from the record's
# Each summary metric of a seed: the checkpoint it was measured on and the split.
CHECKPOINT_OF = {
    "valid_acc_final": ("final_epoch", "valid"),
    "valid_acc_chosen": ("chosen_epoch", "valid"),
    "test_acc_chosen": ("chosen_epoch", "test"),
    "test_acc_final": ("final_epoch", "test"),
}


class CertificateError(GoldenError):
    """A certificate cannot be read or written; the message names the file."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def environment() -> dict[str, Any]:
    """Python and every installed package's version, with a digest of the list."""
    packages = sorted(
        {
            (d.metadata["Name"] or "?").lower(): d.version
            for d in importlib.metadata.distributions()
        }.items()
    )
    listing = "\n".join(f"{name}=={version}" for name, version in packages)
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": dict(packages),
        "packages_sha256": hashlib.sha256(listing.encode()).hexdigest(),
    }


def rule_in_words(cell: Cell) -> str:
    if cell.rule == "two_sided":
        return f"|measured - golden| <= {cell.points:g} points"
    return f"measured >= golden - {cell.points:g} points"


def statistic_of(statistic: str, values: list[float]) -> float:
    """The cell's statistic of its seeds' values, as metrics.json and the papers compute it."""
    if len(values) == 1:
        return values[0]
    if statistic == "median":
        return statistics.median(values)
    return statistics.fmean(values)


def seed_folders(run_dir: Path) -> dict[str, Path]:
    folders = sorted(run_dir.glob("seed-*"), key=lambda p: int(p.name.removeprefix("seed-")))
    if folders:
        return {p.name.removeprefix("seed-"): p for p in folders}
    return {"": run_dir}


def measured_on(metric: str, seed: dict[str, Any], folder: Path) -> tuple[int, str] | None:
    """The checkpoint epoch and split a seed's metric was measured on; None for a metric that
    is not an accuracy of one checkpoint (a duration)."""
    name, _, epoch = metric.partition("@")
    if epoch:
        return int(epoch), "valid" if name == "valid_acc" else "test"
    if metric in CHECKPOINT_OF:
        key, split = CHECKPOINT_OF[metric]
        return int(seed[key]), split
    if metric == "test_acc_continued":
        return TrainConfig.load(folder / "config.yaml").last_epoch, "test"
    return None


def run_record(folder: Path) -> dict[str, Any]:
    """A run folder's training provenance and its wall time."""
    segments = read_provenance(folder)
    config = TrainConfig.load(folder / "config.yaml")
    return {
        "folder": str(folder),
        "segments": segments,
        "deterministic": config.deterministic,
        "wall_seconds": sum(h.get("seconds", 0.0) for h in read_history(folder / "history.jsonl")),
    }


def cell_record(
    cell: Cell, table: Path, runs_dir: Path, metrics_dir: Path, checkpoint_sha: dict[str, str]
) -> dict[str, Any]:
    """One golden cell, its seeds' values and the checkpoints they were measured on."""
    record: dict[str, Any] = {
        "cell": f"{table.name}:{cell.run}:{cell.metric}",
        "table": str(table),
        "run": cell.run,
        "metric": cell.metric,
        "statistic": cell.statistic,
        "golden": cell.golden,
        "rule": cell.rule,
        "points": cell.points,
        "rule_in_words": rule_in_words(cell),
        "derivation": cell.derivation,
        "runs_needed": cell.runs,
    }
    path = metrics_dir / cell.run / "metrics.json"
    metrics = load_metrics(path) if path.exists() else {}
    folders = seed_folders(runs_dir / cell.run)
    # A run of one seed has its metrics at the top (and one seed folder, or none).
    per_seed_metrics = metrics.get("seeds") or ({next(iter(folders)): metrics} if metrics else {})
    # As the comparison: a run without metrics is missing; a metric it does not name, unknown.
    known = not metrics or all(lookup(m, cell.metric)[0] for m in per_seed_metrics.values())
    seeds = {}
    for seed, m in per_seed_metrics.items():
        found, value = lookup(m, cell.metric)
        entry: dict[str, Any] = {"value": value if found else None}
        folder = folders.get(seed)
        where = measured_on(cell.metric, m, folder) if folder is not None else None
        if where is not None and value is not None:
            epoch, split = where
            checkpoint = folder / f"model-{epoch}.ckpt"
            if str(checkpoint) not in checkpoint_sha and checkpoint.exists():
                checkpoint_sha[str(checkpoint)] = sha256_of(checkpoint)
            entry |= {
                "checkpoint": str(checkpoint),
                "sha256": checkpoint_sha.get(str(checkpoint)),
                "split": split,
                "device_type": m.get("eval_device_type"),
                "data_md5": m.get("data_md5"),
            }
        seeds[seed] = entry
    values = [s["value"] for s in seeds.values()]
    value = None if not values or None in values else statistic_of(cell.statistic, values)
    record |= {
        "metrics": str(path),
        "seeds": seeds,
        "value": value,
        "spread": statistics.stdev(values) if value is not None and len(values) > 1 else None,
        "metric_known": known,
        "verdict": verdict(cell, value, len(values), known=known),
    }
    return record


def first_line(cells: list[dict], runs: dict[str, list[dict]], rehearsal: bool) -> str:
    """What a reader must know before any number: what kind of study this is."""
    flags = []
    if rehearsal:
        flags.append("REHEARSAL (amounts shrunk: every path ran, the values mean nothing)")
    md5s = {s.get("data_md5") for c in cells for s in c["seeds"].values() if s.get("data_md5")}
    if md5s - {OFFICIAL_MD5}:
        flags.append("NOT THE OFFICIAL CIFAR-10 ARCHIVE (a CPU-scale or own-data study)")
    codes = [seg.get("code", {}) for rs in runs.values() for r in rs for seg in r["segments"]]
    if any(code.get("dirty") is not False for code in codes):
        flags.append("DIRTY OR UNKNOWN CODE TREE (a segment's code is not a clean commit)")
    counts = collections.Counter(c["verdict"] for c in cells)
    verdicts = f"{len(cells)} cells: " + ", ".join(f"{n} {v}" for v, n in sorted(counts.items()))
    return "; ".join([*flags, verdicts] if flags else [f"CERTIFICATE: {verdicts}"])


def build_certificate(
    tables: list[Path], runs_dir: Path, metrics_dir: Path, *, rehearsal: bool = False
) -> dict[str, Any]:
    """The certificate of a pipeline's results: golden ``tables`` against the metrics in
    ``metrics_dir`` of the run folders in ``runs_dir``."""
    checkpoint_sha: dict[str, str] = {}
    cells, table_sha = [], {}
    for table in map(Path, tables):
        table_sha[str(table)] = sha256_of(table)
        cells += [
            cell_record(cell, table, runs_dir, metrics_dir, checkpoint_sha)
            for cell in load_table(table)[1]
        ]
    runs = {
        run: [run_record(f) for f in seed_folders(runs_dir / run).values()]
        for run in dict.fromkeys(c["run"] for c in cells)
        if (runs_dir / run).is_dir()
    }
    return {
        "status": first_line(cells, runs, rehearsal),
        "format": FORMAT,
        "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "tables": table_sha,
        "cells": cells,
        "runs": runs,
        "checkpoints": checkpoint_sha,
        "environment": environment(),
    }


def write_certificate(certificate: dict[str, Any], path: Path) -> Path:
    """JSON whose first line is the status, so ``head -1`` says what the study is."""
    body = json.dumps({k: v for k, v in certificate.items() if k != "status"}, indent=2)
    text = '{"status": ' + json.dumps(certificate["status"]) + ",\n" + body[2:] + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def markdown(certificate: dict[str, Any]) -> str:
    """The report's section: each cell's value, seeds, spread, rule and verdict."""

    def pct(v: float | None) -> str:
        return "—" if v is None else f"{100 * v:.2f}"

    lines = [
        "## Certificate",
        "",
        certificate["status"],
        "",
        "Each cell's seeds, their values and checkpoints are in `results/certificate.json`; "
        "`resnet-repro verify` re-checks them.",
        "",
        "| cell | statistic | seeds: values % | spread | golden % | rule | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in certificate["cells"]:
        seeds = ", ".join(f"{s}: {pct(v['value'])}" for s, v in c["seeds"].items()) or "none"
        spread = "—" if c["spread"] is None else f"{100 * c['spread']:.2f}"
        lines.append(
            f"| {c['cell']} | {c['statistic']} = {pct(c['value'])} | {seeds} | {spread} | "
            f"{pct(c['golden'])} | {c['rule_in_words']} | {c['verdict']} |"
        )
    env = certificate["environment"]
    lines += [
        "",
        f"Environment: Python {env['python']}, {len(env['packages'])} packages "
        f"(sha256 {env['packages_sha256'][:12]}), torch {env['packages'].get('torch', '?')}.",
        "",
    ]
    return "\n".join(lines)


# -- verify -------------------------------------------------------------------------------


def read_certificate(path: Path) -> dict[str, Any]:
    try:
        certificate = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise CertificateError(
            f"{path}: not a readable certificate ({e}); the pipeline's report stage writes "
            "results/certificate.json"
        ) from e
    if certificate.get("format") != FORMAT:
        raise CertificateError(f"{path}: format {certificate.get('format')!r}, not {FORMAT}")
    return certificate


def images_apart_allowed(images: int) -> int:
    return max(1, math.floor(images * IMAGES_APART / 1000))


def verify(path: Path, *, device: str = "auto", say: Callable[[str], None] = print) -> list[str]:
    """Check every cell of the certificate at ``path``, saying for each what holds or what
    does not; returns the failing cells (empty: the certificate holds)."""
    from resnet_repro.evaluate import load_eval_data, loss_and_accuracy
    from resnet_repro.runtime import resolve_device

    certificate = read_certificate(path)
    dev = resolve_device(device)
    data_cache: dict[tuple[str, str], tuple[Any, str]] = {}
    accuracy_cache: dict[tuple[str, str], tuple[float, int]] = {}
    sha_cache: dict[str, str | None] = {}
    tables = {}
    failures = []

    def current_sha(file: str) -> str | None:
        if file not in sha_cache:
            sha_cache[file] = sha256_of(Path(file)) if Path(file).is_file() else None
        return sha_cache[file]

    def accuracy(checkpoint: Path, split: str) -> tuple[float, int, str]:
        folder = checkpoint.parent
        if (str(folder), split) not in data_cache:
            data, md5 = load_eval_data(folder, None, dev, (split,))
            data_cache[(str(folder), split)] = (data[split], md5)
        (x, y), md5 = data_cache[(str(folder), split)]
        key = (str(checkpoint), split)
        if key not in accuracy_cache:
            expected = TrainConfig.load(folder / "config.yaml")
            accuracy_cache[key] = (
                loss_and_accuracy(checkpoint, x, y, expected=expected)[1],
                len(y),
            )
        return (*accuracy_cache[key], md5)

    for table, sha in certificate["tables"].items():
        now = current_sha(table)
        if now != sha:
            tables[table] = None
            say(f"table {table}: sha256 {'missing' if now is None else now[:12]} != {sha[:12]}")
        else:
            tables[table] = {(c.run, c.metric): c for c in load_table(Path(table))[1]}
    for c in certificate["cells"]:
        problems = check_cell(c, tables, current_sha, accuracy, dev.type)
        if problems:
            failures.append(c["cell"])
            say(f"FAIL {c['cell']}: {'; '.join(problems)}")
        else:
            say(
                f"ok   {c['cell']}: {c['statistic']} {c['value']} over {len(c['seeds'])} "
                f"seed(s), re-evaluated; verdict {c['verdict']} re-derived"
            )
    return failures


def check_cell(
    c: dict[str, Any],
    tables: dict[str, dict | None],
    current_sha: Callable[[str], str | None],
    accuracy: Callable[[Path, str], tuple[float, int, str]],
    device_type: str,
) -> list[str]:
    """What does not hold of one cell of a certificate."""
    from resnet_repro.checkpoint import CheckpointError
    from resnet_repro.cifar import DataError

    problems = []
    cells = tables.get(c["table"])
    cell = None if cells is None else cells.get((c["run"], c["metric"]))
    if cells is None:
        problems.append(f"golden table {c['table']} changed or missing")
    elif cell is None:
        problems.append(f"golden table {c['table']} has no such cell any more")
    elif (cell.golden, cell.rule, cell.points, cell.statistic) != (
        c["golden"],
        c["rule"],
        c["points"],
        c["statistic"],
    ):
        problems.append(
            f"golden table says {cell.golden} {cell.rule} {cell.points} {cell.statistic}, the "
            f"certificate {c['golden']} {c['rule']} {c['points']} {c['statistic']}"
        )
    metrics = load_metrics(Path(c["metrics"])) if Path(c["metrics"]).exists() else {}
    per_seed = metrics.get("seeds") or {seed: metrics for seed in c["seeds"]}
    values = []
    for seed, s in c["seeds"].items():
        values.append(s["value"])
        now = lookup(per_seed.get(seed, {}), c["metric"])[1]
        if now != s["value"]:
            problems.append(f"seed {seed}: {c['metrics']} says {now}, the certificate {s['value']}")
        if "checkpoint" not in s:
            continue
        checkpoint = Path(s["checkpoint"])
        sha = current_sha(s["checkpoint"])
        if sha != s["sha256"]:
            state = "missing" if sha is None else f"sha256 {sha[:12]} != {str(s['sha256'])[:12]}"
            problems.append(f"seed {seed}: {checkpoint} {state}")
            continue
        try:
            measured, images, md5 = accuracy(checkpoint, s["split"])
        except (DataError, CheckpointError, OSError, ValueError) as e:
            problems.append(f"seed {seed}: cannot re-evaluate {checkpoint} ({e})")
            continue
        if md5 != s["data_md5"]:
            problems.append(f"seed {seed}: data md5 {md5} != the certificate's {s['data_md5']}")
            continue
        apart = round(abs(measured - s["value"]) * images)
        allowed = 0 if s.get("device_type") in (None, device_type) else images_apart_allowed(images)
        if apart > allowed:
            problems.append(
                f"seed {seed}: {checkpoint} gives {measured:.6f} on {s['split']}, the "
                f"certificate {s['value']:.6f} ({apart} images apart, {allowed} allowed)"
            )
    # What the comparison read: the statistic as metrics.json states it.
    stated = f"{c['metric']}_median" if c["statistic"] == "median" and len(values) > 1 else None
    now = metrics.get(stated) if stated else lookup(metrics, c["metric"])[1]
    if now != c["value"]:
        problems.append(
            f"{c['metrics']} states {c['statistic']} {now}, the certificate {c['value']}"
        )
    if None not in values and values:
        value = statistic_of(c["statistic"], values)
        if c["value"] is None or abs(value - c["value"]) > 1e-12:
            problems.append(f"the {c['statistic']} of the seeds is {value}, not {c['value']}")
    if cell is not None:
        derived = verdict(
            cell,
            None if None in values or not values else statistic_of(c["statistic"], values),
            len(values),
            known=c["metric_known"],
        )
        if derived != c["verdict"]:
            problems.append(f"verdict re-derived {derived}, the certificate says {c['verdict']}")
    return problems
