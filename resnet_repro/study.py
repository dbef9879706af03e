"""The study as ``params.yaml`` lays it out, and what a rehearsal of it may change and must
show: each run's seeds and seed folders (``runs/<run>/seed-<s>``, written and found here
alone); the rehearsal's override, which shrinks amounts only; and the checks of a finished
rehearsal's results. No subprocess and no torch: ``study_clone.py`` runs the study.

The rehearsal runs ``dvc repro`` of the committed ``dvc.yaml`` and ``params.yaml`` with an
override that shrinks amounts only: images per step, steps per epoch, images evaluated, and the
data (a fake archive of the official archive's 50,000 training images). Every run of the grid
keeps its recipe, network, depth, seeds, epochs, checkpoint epochs and validation branch, and
compare and report run over the real golden tables, so that every path a night of GPU training
ends in has run first, in minutes, on the machine at hand. It passes when ``dvc repro`` ran
every stage, the report has every cell filled, the certificate traces every cell to its
checkpoints and ``resnet-repro verify`` holds it; its accuracies mean nothing, and say so.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from resnet_repro.config import ConfigError, load_params


def run_seeds(
    params: dict[str, Any], where: str | Path = "params.yaml", run: str | None = None
) -> list[int]:
    """The seeds ``run`` is trained with: its entry's ``seeds`` if it has one (e.g. the five
    runs He et al. summarized for ResNet-110), else the grid's ``seeds`` ([0] when absent)."""
    seeds = params.get("seeds", [0])
    entry = params["runs"].get(run) if run is not None else None
    if isinstance(entry, dict) and "seeds" in entry:
        seeds, where = entry["seeds"], f"{where}: run {run}"
    if (
        not isinstance(seeds, list)
        or not seeds
        or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)
        or len(set(seeds)) != len(seeds)
    ):
        raise ConfigError(f"{where}: seeds must be a non-empty list of distinct integers")
    return seeds


def seed_folder(run_dir: Path, seed: int) -> Path:
    """Where the train stage writes ``seed``'s run of the run folder ``run_dir``."""
    return run_dir / f"seed-{seed}"


def seed_folders(run_dir: Path) -> dict[str, Path]:
    """Each seed's folder of a run folder, by seed; ``{"": run_dir}`` for a run trained
    without seed folders."""
    folders = sorted(run_dir.glob("seed-*"), key=lambda p: int(p.name.removeprefix("seed-")))
    if folders:
        return {p.name.removeprefix("seed-"): p for p in folders}
    return {"": run_dir}


OVERRIDE = Path("pipeline") / "rehearsal.yaml"
# What the override may change: amounts, never a setting that picks a code path.
AMOUNTS = ("batch_size", "limit_train_batches", "limit_eval_images")
DATA_KEYS = ("source", "fake")
# A report cell is "measured / golden": each an accuracy, or what a run or table has none of.
MEASURED = re.compile(r"\d\.\d{4}( \((mean|median) of \d+\))?|no validation split")
GOLDEN = re.compile(r"\d\.\d{4}|no reference")


def rehearsal_params(params: dict[str, Any], override: dict[str, Any], md5: str) -> dict[str, Any]:
    """``params`` with the override applied: the data source and its md5, and each amount in
    ``train_defaults`` and in every run entry that sets it itself (an entry wins over the
    defaults). Refuses an override of anything else."""
    where = str(OVERRIDE)
    if not isinstance(override, dict) or set(override) - {"data", "train_defaults"}:
        raise ConfigError(f"{where}: only 'data' and 'train_defaults' may be overridden")
    data, amounts = override.get("data") or {}, override.get("train_defaults") or {}
    bad = sorted(set(data) - set(DATA_KEYS)) + sorted(set(amounts) - set(AMOUNTS))
    if bad:
        raise ConfigError(
            f"{where}: {', '.join(bad)} cannot be overridden; a rehearsal shrinks only the data "
            f"({', '.join(DATA_KEYS)}) and the amounts {', '.join(AMOUNTS)}"
        )
    out = json.loads(json.dumps(params))  # a deep copy of plain YAML data
    out["data"] = {**out.get("data", {}), "source": data["source"], "md5": md5}
    out["train_defaults"] = {**(out.get("train_defaults") or {}), **amounts}
    for entry in out["runs"].values():
        if isinstance(entry, dict):
            entry.update({k: v for k, v in amounts.items() if k in entry})
    return out


def check_rehearsal(workdir: Path) -> list[str]:
    """What the finished rehearsal lacks: a run without metrics (or without every seed), a
    report table cell not filled, a report not marked as a rehearsal. Empty when complete."""
    params = load_params(workdir / "params.yaml")
    problems = []
    for run in params["runs"]:
        path = workdir / "results" / "runs" / run / "metrics.json"
        if not path.is_file():
            problems.append(f"{run}: no metrics.json")
            continue
        metrics = json.loads(path.read_text())
        seeds = run_seeds(params, "params.yaml", run)
        if len(seeds) > 1 and sorted(metrics.get("seeds", {}), key=int) != [str(s) for s in seeds]:
            problems.append(f"{run}: metrics of seeds {sorted(metrics.get('seeds', {}))}")
        if metrics.get("rehearsal") is not True:
            problems.append(f"{run}: metrics.json is not marked as a rehearsal")
        # Each seed's data is the archive the fetch stage verified, not a digest of its batches.
        for seed, m in (metrics.get("seeds") or {"": metrics}).items():
            if m.get("data_md5") != params["data"]["md5"]:
                who = f"{run} seed {seed}" if seed else run
                problems.append(
                    f"{who}: records data md5 {m.get('data_md5')}, the fetch stage verified "
                    f"{params['data']['md5']}"
                )
    problems += check_certificate(workdir / "results" / "certificate.json")
    report = workdir / "results" / "report" / "report.md"
    if not report.is_file():
        return [*problems, "no results/report/report.md"]
    text = report.read_text()
    if "REHEARSAL" not in text.splitlines()[0]:
        problems.append("report.md's first line does not say REHEARSAL")
    cells = re.findall(r"(?<=\| )([^|]+?) / ([^|]+?)(?= \|)", text)
    if not cells:
        problems.append("report.md has no table cells")
    for measured, golden in cells:
        if not (MEASURED.fullmatch(measured) and GOLDEN.fullmatch(golden)):
            problems.append(f"report.md has a cell '{measured} / {golden}'")
    return problems


def check_certificate(path: Path) -> list[str]:
    """What the certificate lacks: its REHEARSAL first line, or for a cell its seeds, their
    values or the sha256 of the checkpoints they were measured on."""
    if not path.is_file():
        return ["no results/certificate.json"]
    text = path.read_text()
    problems = [] if "REHEARSAL" in text.splitlines()[0] else ["certificate.json's first line"]
    for cell in json.loads(text)["cells"]:
        seeds = cell["seeds"].values()
        if not seeds or any(s["value"] is None or not s.get("sha256") for s in seeds):
            problems.append(f"certificate.json: {cell['cell']} lacks a seed's value or checkpoint")
    return problems
