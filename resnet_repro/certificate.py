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

``verify`` trusts none of it: it re-derives the whole certificate from the files it rests on
(the golden tables the study's params.yaml names, metrics.json, the run folders, each
checkpoint's sha256), from the certificate's own repository wherever it is run, and says where
the two differ (the status line and the list of cells included); it re-evaluates each seed's
checkpoint (exactly equal on the device type that measured it; otherwise within
``IMAGES_APART`` images per 1,000 evaluated, at least one image) and, for a checkpoint chosen
by validation, every candidate, and re-applies the choice. One line per cell; every failure
names its cell, or ``certificate`` for the certificate's own fields.
"""

from __future__ import annotations

import collections
import hashlib
import importlib.metadata
import json
import math
import os
import platform
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from resnet_repro.cifar import OFFICIAL_MD5, sha256_of
from resnet_repro.config import ConfigError, TrainConfig, load_params
from resnet_repro.golden import (
    METRICS,
    Cell,
    GoldenError,
    load_metrics,
    load_table,
    lookup,
    parse_metric,
    verdict,
)
from resnet_repro.run_folder import RunFolderError, read_history, read_provenance
from resnet_repro.study import seed_folders

FORMAT = 2  # 2: root, runs_dir, metrics_dir, candidates; the environment's digest
IMAGES_APART = 1  # per 1,000 evaluated images, when the device type differs from the record's


class CertificateError(GoldenError):
    """A certificate cannot be read or written; the message names the file."""


def environment() -> dict[str, Any]:
    """Python, the platform and every installed package's version, with a digest of them."""
    packages = sorted(
        {
            (d.metadata["Name"] or "?").lower(): d.version
            for d in importlib.metadata.distributions()
        }.items()
    )
    env = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": dict(packages),
    }
    return {**env, "digest": environment_digest(env)}


def environment_digest(env: dict[str, Any]) -> str:
    """sha256 of the environment's Python, platform and package list (``verify`` re-derives it,
    since the machine that wrote a certificate is not the one that checks it)."""
    lines = [f"python {env['python']}", f"platform {env['platform']}"]
    lines += [f"{name}=={version}" for name, version in env["packages"].items()]
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def statistic_of(statistic: str, values: list[float]) -> float:
    """The cell's statistic of its seeds' values, as metrics.json and the papers compute it."""
    if len(values) == 1:
        return values[0]
    if statistic == "median":
        return statistics.median(values)
    return statistics.fmean(values)


def measured_on(metric: str, seed: dict[str, Any], folder: Path) -> tuple[int, str] | None:
    """The checkpoint epoch and split a seed's metric was measured on; None for a metric that
    is not an accuracy of one checkpoint (a duration)."""
    name, epoch = parse_metric(metric)
    if epoch is not None:
        return int(epoch), "valid" if name == "valid_acc" else "test"
    if METRICS.get(metric) is None:
        return None
    key, split = METRICS[metric]
    if key == "last_epoch":
        return TrainConfig.load(folder / "config.yaml").last_epoch, split
    return int(seed[key]), split


def run_record(folder: Path) -> dict[str, Any]:
    """A run folder's training provenance and its wall time."""
    segments = read_provenance(folder)
    config = TrainConfig.load(folder / "config.yaml")
    return {
        "folder": str(folder),
        "segments": segments,
        "deterministic": config.deterministic,
        "rehearsal": config.is_rehearsal,
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
        "rule_in_words": cell.rule_in_words,
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
            if (METRICS.get(cell.metric) or ("",))[0] == "chosen_epoch":
                # The choice itself: every validated checkpoint's accuracy, which verify
                # re-evaluates, and the rule (best validation, latest on ties) re-applied.
                entry["candidates"] = m.get("valid_acc")
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


def first_line(cells: list[dict], runs: dict[str, list[dict]]) -> str:
    """What a reader must know before any number: what kind of study this is."""
    flags = []
    if any(r["rehearsal"] for rs in runs.values() for r in rs):
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
    tables: list[Path], runs_dir: Path, metrics_dir: Path, *, path: Path
) -> dict[str, Any]:
    """The certificate of a pipeline's results: golden ``tables`` against the metrics in
    ``metrics_dir`` of the run folders in ``runs_dir``, every path relative to the current
    folder (the repository's top), to be written at ``path``."""
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
    certificate = {
        "status": first_line(cells, runs),
        "format": FORMAT,
        # Where the paths below start, from the certificate's own folder: verify finds them
        # wherever it is run from.
        "root": os.path.relpath(Path.cwd(), Path(path).resolve().parent),
        "runs_dir": str(runs_dir),
        "metrics_dir": str(metrics_dir),
        "tables": table_sha,
        "cells": cells,
        "runs": runs,
        "checkpoints": checkpoint_sha,
        "environment": environment(),
    }
    # As it will be read back: JSON has no tuples and no integer keys.
    return json.loads(json.dumps(certificate))


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
        f"(sha256 {env['digest'][:12]}), torch {env['packages'].get('torch', '?')}.",
        "",
    ]
    return "\n".join(lines)


# -- verify -------------------------------------------------------------------------------

# What a certificate must hold for verify to read it; every value is then re-derived.
FIELDS = {
    "status": str,
    "format": int,
    "root": str,
    "runs_dir": str,
    "metrics_dir": str,
    "tables": dict,
    "cells": list,
    "runs": dict,
    "checkpoints": dict,
    "environment": dict,
}


def read_certificate(path: Path) -> dict[str, Any]:
    """The certificate at ``path``, its fields of the expected kinds; CertificateError in one
    line otherwise."""
    again = "the pipeline's report stage writes results/certificate.json (dvc repro report)"
    try:
        certificate = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise CertificateError(f"{path}: not a readable certificate ({e}); {again}") from e
    if not isinstance(certificate, dict):
        kind = type(certificate).__name__
        raise CertificateError(f"{path}: not a certificate (a JSON {kind}); {again}")
    if certificate.get("format") != FORMAT:
        raise CertificateError(
            f"{path}: format {certificate.get('format')!r}, not {FORMAT} (another version of this "
            f"program wrote it); {again}"
        )
    wrong = [
        f"{k} (a {t.__name__})" for k, t in FIELDS.items() if type(certificate.get(k)) is not t
    ]
    if wrong:
        raise CertificateError(f"{path}: malformed certificate: {', '.join(wrong)}; {again}")
    return certificate


def images_apart_allowed(images: int) -> int:
    return max(1, math.floor(images * IMAGES_APART / 1000))


def verify(path: Path, *, device: str = "auto", say: Callable[[str], None] = print) -> list[str]:
    """Re-derive the certificate at ``path`` from the files it rests on (golden tables, metrics,
    run folders, checkpoints, data), from its repository's top wherever it is run, and re-
    evaluate every seed's checkpoint (and, for a chosen one, every candidate). One line per
    cell; returns what does not hold (``certificate`` for its own fields; empty: it holds)."""
    path = Path(path).resolve()
    certificate = read_certificate(path)
    root = (path.parent / certificate["root"]).resolve()
    if not root.is_dir():
        raise CertificateError(f"{path}: its repository {root} is not there")
    here = Path.cwd()
    os.chdir(root)  # the certificate's paths start at its repository's top
    try:
        return _verify(certificate, path, device, say)
    finally:
        os.chdir(here)


def _verify(
    certificate: dict[str, Any], path: Path, device: str, say: Callable[[str], None]
) -> list[str]:
    from resnet_repro.runtime import resolve_device

    try:
        fresh = build_certificate(
            list(map(Path, certificate["tables"])),
            Path(certificate["runs_dir"]),
            Path(certificate["metrics_dir"]),
            path=path,
        )
    except (GoldenError, ConfigError, RunFolderError, OSError) as e:
        raise CertificateError(f"{path}: cannot be re-derived from its files: {e}") from e
    evaluator = Evaluator(resolve_device(device))
    found = disagreements(certificate, fresh)
    # The tables the study compares with, as its params.yaml names them (the report stage's).
    if Path("params.yaml").is_file():
        named = str(load_params(Path("params.yaml")).get("compare", {}).get("golden", "")).split()
        if named != list(certificate["tables"]):
            found["certificate"].append(
                f"tables: params.yaml compares {named}, the certificate lists "
                f"{list(certificate['tables'])}"
            )
    for cell in fresh["cells"]:
        found[cell["cell"]] = found.get(cell["cell"], []) + evaluator.check(cell)
    for name, problems in found.items():
        if problems:
            say(f"FAIL {name}: {'; '.join(problems)}")
    for cell in fresh["cells"]:
        if not found[cell["cell"]]:
            say(
                f"ok   {cell['cell']}: {cell['statistic']} {cell['value']} over "
                f"{len(cell['seeds'])} seed(s), re-evaluated; verdict {cell['verdict']} re-derived"
            )
    return [name for name, problems in found.items() if problems]


def disagreements(certificate: dict[str, Any], fresh: dict[str, Any]) -> dict[str, list[str]]:
    """Where the certificate says otherwise than ``fresh``, the certificate re-derived from the
    files: its own fields under ``certificate``, then each cell's (the fresh certificate's cells,
    and any cell the golden tables do not have)."""
    found = {"certificate": differences(certificate, fresh)}
    stored = {c.get("cell"): c for c in certificate["cells"] if isinstance(c, dict)}
    for name in stored.keys() - {c["cell"] for c in fresh["cells"]}:
        found[str(name)] = [f"no such cell in the golden tables {', '.join(fresh['tables'])}"]
    for cell in fresh["cells"]:
        mine = stored.get(cell["cell"])
        if mine is None:
            found[cell["cell"]] = ["the golden table has this cell, the certificate does not"]
        else:
            found[cell["cell"]] = [first_difference(mine, cell, "cell")] if mine != cell else []
    return found


def differences(certificate: dict[str, Any], fresh: dict[str, Any]) -> list[str]:
    """What the certificate's own fields (all but its cells) say otherwise than the files."""
    problems = []
    for key in certificate.keys() - fresh.keys():
        problems.append(f"unexpected field {key!r}")
    for key in fresh:
        if key not in ("cells", "environment") and certificate.get(key) != fresh[key]:
            problems.append(first_difference(certificate.get(key), fresh[key], key))
    names = [c.get("cell") if isinstance(c, dict) else None for c in certificate["cells"]]
    if None in names or len(set(names)) != len(names):
        problems.append("cells: a cell without a name, or a name twice")
    env = certificate["environment"]
    try:
        digest = environment_digest(env)
    except (KeyError, TypeError, AttributeError):
        digest = None
    if set(env) != {"python", "platform", "packages", "digest"} or env["digest"] != digest:
        problems.append("environment: its digest is not that of its Python, platform and packages")
    return problems


def first_difference(stored: Any, derived: Any, where: str) -> str:
    """Where the certificate first departs from what the files give, and the two values."""
    if isinstance(stored, dict) and isinstance(derived, dict):
        for key in sorted(stored.keys() | derived.keys(), key=str):
            if key not in stored:
                return f"{where}.{key}: missing from the certificate"
            if key not in derived:
                return f"{where}.{key}: not something the files give"
            if stored[key] != derived[key]:
                return first_difference(stored[key], derived[key], f"{where}.{key}")
    if isinstance(stored, list) and isinstance(derived, list) and len(stored) == len(derived):
        for i, (a, b) in enumerate(zip(stored, derived, strict=True)):
            if a != b:
                return first_difference(a, b, f"{where}[{i}]")
    return f"{where}: the certificate says {short(stored)}, the files give {short(derived)}"


def short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 80 else text[:77] + "..."


class Evaluator:
    """Each seed's checkpoint re-evaluated on its split (each checkpoint and data set once)."""

    def __init__(self, device: Any) -> None:
        self.device = device
        self.data: dict[tuple[str, str], tuple[Any, str]] = {}
        self.accuracies: dict[tuple[str, str], float] = {}

    def accuracy(self, checkpoint: Path, split: str) -> tuple[float, int, str]:
        from resnet_repro.evaluate import load_eval_data, loss_and_accuracy

        folder = checkpoint.parent
        if (str(folder), split) not in self.data:
            data, md5 = load_eval_data(folder, None, self.device, (split,))
            self.data[(str(folder), split)] = (data[split], md5)
        (x, y), md5 = self.data[(str(folder), split)]
        key = (str(checkpoint), split)
        if key not in self.accuracies:
            expected = TrainConfig.load(folder / "config.yaml")
            self.accuracies[key] = loss_and_accuracy(checkpoint, x, y, expected=expected)[1]
        return self.accuracies[key], len(y), md5

    def check(self, cell: dict[str, Any]) -> list[str]:
        """What the files do not give of one cell as re-derived: a checkpoint that is missing,
        an accuracy its checkpoint does not give, a choice its candidates do not make, a
        statistic metrics.json does not state."""
        from resnet_repro.checkpoint import CheckpointError
        from resnet_repro.cifar import DataError

        problems = []
        for seed, s in cell["seeds"].items():
            if s["value"] is None:
                continue
            if "checkpoint" not in s:
                if "acc" in cell["metric"]:
                    problems.append(
                        f"seed {seed}: no run folder holds the checkpoint of {s['value']}"
                    )
                continue
            try:
                problems += self.check_seed(seed, s)
            except (DataError, CheckpointError, ConfigError, OSError, ValueError) as e:
                problems.append(f"seed {seed}: cannot re-evaluate {s['checkpoint']} ({e})")
        path = Path(cell["metrics"])
        metrics = load_metrics(path) if path.exists() else {}
        # What the comparison read: the statistic as metrics.json states it.
        median = cell["statistic"] == "median" and len(cell["seeds"]) > 1
        stated = (
            metrics.get(f"{cell['metric']}_median")
            if median
            else lookup(metrics, cell["metric"])[1]
        )
        if stated != cell["value"]:
            problems.append(
                f"{path} states {cell['statistic']} {stated}, the seeds give {cell['value']}"
            )
        return problems

    def check_seed(self, seed: str, s: dict[str, Any]) -> list[str]:
        checkpoint = Path(s["checkpoint"])
        if s["sha256"] is None:
            return [f"seed {seed}: {checkpoint} missing"]
        problems = []
        measured, images, md5 = self.accuracy(checkpoint, s["split"])
        if md5 != s["data_md5"]:
            return [f"seed {seed}: data md5 {md5} != the run's {s['data_md5']}"]
        apart = round(abs(measured - s["value"]) * images)
        same_device = s["device_type"] in (None, self.device.type)
        allowed = 0 if same_device else images_apart_allowed(images)
        if apart > allowed:
            problems.append(
                f"seed {seed}: {checkpoint} gives {measured:.6f} on {s['split']}, metrics.json "
                f"{s['value']:.6f} ({apart} images apart, {allowed} allowed)"
            )
        if "candidates" in s:
            problems += self.check_choice(seed, checkpoint, s["candidates"], allowed)
        return problems

    def check_choice(self, seed: str, chosen: Path, candidates: Any, allowed: int) -> list[str]:
        """The chosen checkpoint is the best validated one (latest on ties), every candidate's
        accuracy re-evaluated; without validation, the last one."""
        if not isinstance(candidates, dict) or not candidates:
            return [f"seed {seed}: metrics.json lists no validated checkpoints to choose from"]
        epochs = {int(e): a for e, a in candidates.items()}
        problems = []
        if None in epochs.values():
            best = max(epochs)
        else:
            for epoch, recorded in epochs.items():
                path = chosen.parent / f"model-{epoch}.ckpt"
                measured, images, _ = self.accuracy(path, "valid")
                if round(abs(measured - recorded) * images) > allowed:
                    problems.append(
                        f"seed {seed}: candidate {path} gives {measured:.6f} on valid, "
                        f"metrics.json {recorded:.6f}"
                    )
            best = max(epochs, key=lambda e: (epochs[e], e))
        if chosen.name != f"model-{best}.ckpt":
            problems.append(
                f"seed {seed}: the chosen checkpoint is {chosen.name}, its candidates "
                f"choose model-{best}.ckpt"
            )
        return problems
