"""The reproduction pipeline's steps that DVC runs: one run's config from ``params.yaml``, a
run's metrics for the comparison, and the CPU-scale pipeline in a scratch copy of the repo.

``params.yaml`` holds ``data`` (where the archive comes from), ``train_defaults`` (config
fields shared by every run), ``runs`` (one entry per run: config fields plus
``eval_checkpoints``) and ``compare`` (the golden tables). ``dvc.yaml`` fans out over ``runs``
so that a change to one run's entry re-runs that run and what depends on it, nothing else.
"""

from __future__ import annotations

import csv
import json
import shutil
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

import yaml

from resnet_repro.config import ConfigError, TrainConfig, make_config
from resnet_repro.data import md5_of, write_fake_cifar10
from resnet_repro.evaluate import accuracy, checkpoint_paths, load_eval_data, parse_checkpoints
from resnet_repro.train import read_history, resolve_device

PIPELINE_KEYS = ("eval_checkpoints",)
CPU_PARAMS = Path("pipeline") / "params-cpu.yaml"


def load_params(path: str | Path) -> dict[str, Any]:
    try:
        params = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"{path}: cannot read params: {e}") from e
    if not isinstance(params, dict) or not isinstance(params.get("runs"), dict):
        raise ConfigError(f"{path}: expected a mapping with a 'runs' mapping")
    return params


def run_config(params_path: str | Path, run: str) -> TrainConfig:
    """``train_defaults`` overlaid with ``runs[run]`` (pipeline-only keys removed), with the
    data folder of ``data.dest``, through the run's recipe."""
    params = load_params(params_path)
    if run not in params["runs"]:
        raise ConfigError(f"{params_path}: no run {run!r}; runs are {sorted(params['runs'])}")
    values = {**params.get("train_defaults", {}), **params["runs"][run]}
    for key in PIPELINE_KEYS:
        values.pop(key, None)
    values["data"] = str(params.get("data", {}).get("dest", "data"))
    recipe = values.pop("recipe", "paper")
    try:
        return make_config(recipe, **values)
    except ConfigError as e:
        raise ConfigError(f"{params_path}: run {run}: {e}") from e


def run_metrics(
    run_dir: str | Path, checkpoints: str, out_dir: str | Path, *, device: str = "auto"
) -> dict[str, Any]:
    """Validation accuracy of each listed checkpoint, test accuracy of the chosen one (best
    validation, latest on ties) and of the final one; writes ``out_dir/metrics.json`` and the
    learning curves ``out_dir/history.csv``."""
    run, out = Path(run_dir), Path(out_dir)
    epochs = parse_checkpoints(checkpoints)
    paths = dict(zip(epochs, checkpoint_paths(run, epochs), strict=True))
    data, md5 = load_eval_data(run, None, resolve_device(device))
    valid = {e: accuracy(p, *data["valid"])[1] for e, p in paths.items()}
    chosen = max(epochs, key=lambda e: (valid[e], e))
    final = max(epochs)
    test_chosen = accuracy(paths[chosen], *data["test"])[1]
    test_final = test_chosen if final == chosen else accuracy(paths[final], *data["test"])[1]
    metrics = {
        "valid_acc_final": valid[final],
        "valid_acc_chosen": valid[chosen],
        "test_acc_chosen": test_chosen,
        "test_acc_final": test_final,
        "chosen_epoch": chosen,
        "final_epoch": final,
        "valid_acc": {str(e): a for e, a in valid.items()},
        "data_md5": md5,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    history = read_history(run / "history.jsonl")
    if not history:
        raise ConfigError(f"{run / 'history.jsonl'}: no training history")
    with open(out / "history.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)
    return metrics


def run_cpu_pipeline(
    repo: Path, workdir: Path, *, echo: bool = True, targets: tuple[str, ...] = ()
) -> float:
    """Run ``dvc repro`` at CPU scale in ``workdir``, a fresh copy of ``repo``'s tracked files
    with ``pipeline/params-cpu.yaml`` as ``params.yaml``; the repository's own params.yaml
    and dvc.lock are never touched. Returns the wall time of ``dvc repro`` in seconds."""
    copy_tracked(repo, workdir)
    prepare_cpu_workdir(workdir)
    start = time.perf_counter()
    out = None if echo else subprocess.DEVNULL
    subprocess.run(["dvc", "repro", *targets], check=True, cwd=workdir, stdout=out)
    return time.perf_counter() - start


def prepare_cpu_workdir(workdir: Path, *, seed: int | None = None) -> None:
    """Install the CPU-scale params (with the fake archive's md5 filled in, and ``seed`` if
    given) as params.yaml, write the fake archive and initialize DVC without git."""
    params = load_params(workdir / CPU_PARAMS)
    fake = params["data"]["fake"]
    archive = write_fake_cifar10(
        workdir / params["data"]["source"],
        train_per_batch=fake["train_per_batch"],
        test_size=fake["test_size"],
        seed=fake["seed"],
    )
    text = (workdir / CPU_PARAMS).read_text().replace("FAKE_MD5", md5_of(archive))
    if seed is not None:
        text = text.replace("  seed: 0\n", f"  seed: {seed}\n", 1)
    (workdir / "params.yaml").write_text(text)
    (workdir / "dvc.lock").unlink(missing_ok=True)
    subprocess.run(["dvc", "init", "--no-scm", "-q"], check=True, cwd=workdir)


def make_cpu_golden(repo: Path, scratch: Path, seeds: list[int], out: Path) -> dict[str, Any]:
    """Run the CPU-scale grid once per seed and write a golden table of the mean of each
    metric, with a two-sided tolerance of 3 standard deviations across seeds (at least 1
    point, which covers the sampling noise of a 300-image validation set)."""
    values: dict[tuple[str, str], list[float]] = {}
    for seed in seeds:
        workdir = scratch / f"seed-{seed}"
        copy_tracked(repo, workdir)
        prepare_cpu_workdir(workdir, seed=seed)
        subprocess.run(
            ["dvc", "repro", "evaluate"], check=True, cwd=workdir, stdout=subprocess.DEVNULL
        )
        for metrics in sorted((workdir / "results" / "runs").glob("*/metrics.json")):
            m = json.loads(metrics.read_text())
            for metric in ("valid_acc_final", "test_acc_final"):
                values.setdefault((metrics.parent.name, metric), []).append(m[metric])
    cells = []
    for (run, metric), vals in sorted(values.items()):
        spread = statistics.stdev(vals) if len(vals) > 1 else 0.0
        cells.append(
            {
                "run": run,
                "metric": metric,
                "golden": round(statistics.fmean(vals), 4),
                "tolerance": {"rule": "two_sided", "points": round(max(300 * spread, 1.0), 2)},
                "note": f"seeds {seeds}: " + ", ".join(f"{v:.4f}" for v in vals),
            }
        )
    table = {
        "source": "this code's own CPU-scale runs: resnet-repro cpu-golden --seeds "
        + " ".join(map(str, seeds)),
        "recipe": "seed and paper at CPU scale (pipeline/params-cpu.yaml)",
        "split": "fake archive, 1,500 training images: 1,200 train, 300 validate; 500 test",
        "metric": "valid_acc_final and test_acc_final",
        "checkpoint": "final (epoch 6)",
        "runs_per_cell": len(seeds),
        "cells": cells,
    }
    out.write_text(yaml.safe_dump(table, sort_keys=False, width=100))
    return table


def copy_tracked(repo: Path, dest: Path) -> None:
    """The files git tracks (or, outside git, the project's own folders) copied to ``dest``."""
    try:
        listed = (
            subprocess.run(["git", "ls-files", "-z"], cwd=repo, check=True, capture_output=True)
            .stdout.decode()
            .split("\0")
        )
        files = [f for f in listed if f and (repo / f).is_file()]
    except (OSError, subprocess.CalledProcessError):
        files = [
            str(p.relative_to(repo))
            for p in repo.rglob("*")
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(repo).parts)
        ]
    for name in files:
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(repo / name, target)
