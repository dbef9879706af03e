"""The reproduction pipeline's steps that DVC runs: one run's config from ``params.yaml``, a
run's metrics for the comparison, and the CPU-scale pipeline in a git clone of the repo.

``params.yaml`` holds ``data`` (where the archive comes from), ``train_defaults`` (config
fields shared by every run), ``runs`` (one entry per run: config fields plus
``eval_checkpoints``) and ``compare`` (the golden tables). ``dvc.yaml`` fans out over ``runs``
so that a change to one run's entry re-runs that run and what depends on it, nothing else.
"""

from __future__ import annotations

import csv
import json
import os
import statistics
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

from resnet_repro.archive_writer import write_fake_cifar10
from resnet_repro.checkpoint import code_digest
from resnet_repro.cifar import md5_of
from resnet_repro.config import (
    DEFAULT_RECIPE,
    ConfigError,
    TrainConfig,
    load_params,
    make_config,
)
from resnet_repro.data import load_splits
from resnet_repro.evaluate import (
    checkpoint_paths,
    load_eval_data,
    loss_and_accuracy,
    parse_checkpoints,
)
from resnet_repro.golden import METRICS
from resnet_repro.kernels import PORTABLE_NAME, can_pin, portable_env
from resnet_repro.run_folder import RunFolder, decide_resume, read_history
from resnet_repro.runtime import resolve_device
from resnet_repro.train import Trainer

# Keys of a run entry that are the pipeline's, not TrainConfig fields.
PIPELINE_KEYS = ("eval_checkpoints", "seeds")
CPU_PARAMS = Path("pipeline") / "params-cpu.yaml"
CPU_SEEDS_TABLE = "tests/golden/tables/cpu-seeds.yaml"  # the mean of five seeds


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


def train_grid_run(params_path: str | Path, run: str, out: str | Path) -> None:
    """The train stage of ``run``: one folder per seed, ``out/seed-<s>``.

    The stage's output persists across ``dvc repro`` (``persist: true``), so that a killed
    pipeline continues where it stopped instead of restarting a 200-epoch run. A seed folder is
    continued only when its ``last.ckpt`` was written with the same config, the same code and
    the same data, which is exactly the case where DVC itself would have nothing new to train;
    otherwise DVC re-runs the stage because something changed, and the folder starts afresh, as
    DVC does for a stage whose output does not persist.
    """
    out = Path(out)
    params = load_params(params_path)
    seeds = run_seeds(params, params_path, run)
    configs = [run_config(params_path, run, seed) for seed in seeds]
    # Fail now, not after hundreds of epochs, if the evaluate stage could not read the entry.
    try:
        parse_checkpoints(params["runs"][run].get("eval_checkpoints"))
    except ConfigError as e:
        raise ConfigError(f"{params_path}: run {run}: eval_checkpoints: {e}") from e
    for seed, config in zip(seeds, configs, strict=True):
        folder = RunFolder.of_run(out / f"seed-{seed}", config)
        existed = folder.path.exists()
        with folder.locked():
            splits = load_splits(config)
            point = folder.resume_point()
            resume = decide_resume(point, config, splits.source_md5, code_digest(), exact=True)
            if resume.verb == "continue":
                epoch = point.state["epoch"]
                print(f"{folder.path}: continuing the interrupted run from epoch {epoch}")
            else:
                if existed:
                    folder.clear(resume.reason)
                point = None
            Trainer(config, folder, splits=splits).fit(point)


def train_stage_command(repo: Path, run: str) -> list[str]:
    """The train stage's command for ``run``, exactly as ``dvc.yaml`` gives it to DVC."""
    stage = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]["train"]["do"]
    return stage["cmd"].replace("${key}", run).split()


def train_runs_concurrently(
    repo: Path, runs: list[str], *, jobs: int, devices: list[str] | None = None
) -> dict[str, int]:
    """Run the train stages of ``runs``, ``jobs`` processes at a time, then record each one
    that succeeded with ``dvc commit``, so that DVC treats it as done (``dvc repro`` then
    evaluates it, and trains only what is left). Several processes share one GPU when one run
    cannot fill it; ``devices`` (e.g. ``["0", "1"]``) spreads them over GPUs round-robin
    through ``CUDA_VISIBLE_DEVICES``. Each run's output goes to ``logs/train-<run>.log``.
    Returns each run's exit status."""
    params = load_params(repo / "params.yaml")
    unknown = [r for r in runs if r not in params["runs"]]
    if unknown:
        raise ConfigError(f"{repo / 'params.yaml'}: no run {', '.join(unknown)}")
    logs = repo / "logs"
    logs.mkdir(exist_ok=True)

    def train_one(index: int, run: str) -> int:
        env = dict(os.environ)
        if devices:
            env["CUDA_VISIBLE_DEVICES"] = devices[index % len(devices)]
        print(f"{run}: training (log: logs/train-{run}.log)", flush=True)
        with open(logs / f"train-{run}.log", "w") as log:
            command = train_stage_command(repo, run)
            finished = subprocess.run(
                command, cwd=repo, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        print(f"{run}: {'done' if finished.returncode == 0 else 'FAILED'}", flush=True)
        return finished.returncode

    # Threads only wait on the training processes, which do the work.
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        status = dict(zip(runs, pool.map(train_one, range(len(runs)), runs), strict=True))
    done = [f"train@{r}" for r in runs if status[r] == 0]
    if done:
        subprocess.run(["dvc", "commit", "--force", *done], cwd=repo, check=True)
    return status


def run_config(params_path: str | Path, run: str, seed: int = 0) -> TrainConfig:
    """``train_defaults`` overlaid with ``runs[run]`` (pipeline-only keys removed), with the
    data folder of ``data.dest`` and ``seed``, through the run's recipe."""
    params = load_params(params_path)
    if run not in params["runs"]:
        raise ConfigError(f"{params_path}: no run {run!r}; runs are {sorted(params['runs'])}")
    defaults, entry = params.get("train_defaults") or {}, params["runs"][run]
    for name, value in (("train_defaults", defaults), (f"runs.{run}", entry)):
        if not isinstance(value, dict):
            raise ConfigError(
                f"{params_path}: {name} must be a mapping of settings (key: value lines), "
                f"got {type(value).__name__} {value!r}"
            )
    values = {**defaults, **entry}
    for key in PIPELINE_KEYS:
        values.pop(key, None)
    values["data"] = str(params.get("data", {}).get("dest", "data"))
    values["seed"] = seed
    recipe = values.pop("recipe", DEFAULT_RECIPE)
    try:
        return make_config(recipe, **values)
    except ConfigError as e:
        raise ConfigError(f"{params_path}: run {run}: {e}") from e


def seed_metrics(run: Path, epochs: list[int], device: str) -> dict[str, Any]:
    """One trained run directory: validation accuracy of each listed checkpoint, test accuracy
    of the chosen one (best validation, latest on ties) and of the final one. A run without a
    validation split (the papers' 50k-image runs) chooses the final checkpoint, as the papers
    reported it, and has no validation metrics (None).

    A run with ``continue_epochs`` (the seed's protocol) also has the test accuracy of the model
    it ends with, after those epochs on every training image (``test_acc_continued``: what the
    seed tested, its Figs. 10-11), and the medians over those epochs of their duration
    (``continued_epoch_seconds``: the seed's "Duration" lines) and of their last step's loss
    (``continued_last_batch_loss``: its "Loss" lines); None for other runs."""
    paths = dict(zip(epochs, checkpoint_paths(run, epochs), strict=True))
    expected = TrainConfig.load(run / "config.yaml")
    continued = None
    if expected.continue_epochs:
        (continued,) = checkpoint_paths(run, [expected.last_epoch])
    data, md5 = load_eval_data(run, None, resolve_device(device), ("valid", "test"))
    final = max(epochs)
    if len(data["valid"][1]):
        valid = {
            e: loss_and_accuracy(p, *data["valid"], expected=expected)[1] for e, p in paths.items()
        }
        chosen = max(epochs, key=lambda e: (valid[e], e))
    else:
        valid, chosen = {e: None for e in epochs}, final
    test_chosen = loss_and_accuracy(paths[chosen], *data["test"], expected=expected)[1]
    test_final = (
        test_chosen
        if final == chosen
        else loss_and_accuracy(paths[final], *data["test"], expected=expected)[1]
    )
    after = [h for h in read_history(run / "history.jsonl") if h["epoch"] > expected.epochs]
    continued_seconds = [h["train_seconds"] for h in after]
    # Histories written before it was recorded have no last step's loss.
    continued_losses = [h["last_batch_loss"] for h in after if "last_batch_loss" in h]
    return {
        "valid_acc_final": valid[final],
        "valid_acc_chosen": valid[chosen],
        "test_acc_chosen": test_chosen,
        "test_acc_final": test_final,
        "test_acc_continued": (
            None
            if continued is None
            else loss_and_accuracy(continued, *data["test"], expected=expected)[1]
        ),
        "continued_epoch_seconds": (
            statistics.median(continued_seconds) if continued_seconds else None
        ),
        "continued_last_batch_loss": (
            statistics.median(continued_losses) if continued_losses else None
        ),
        "chosen_epoch": chosen,
        "final_epoch": final,
        "valid_acc": {str(e): a for e, a in valid.items()},
        "data_md5": md5,
        "eval_device_type": resolve_device(device).type,  # verify re-evaluates exactly on it
        "rehearsal": expected.is_rehearsal,
    }


def run_metrics(
    run_dir: str | Path, checkpoints: str, out_dir: str | Path, *, device: str = "auto"
) -> dict[str, Any]:
    """Metrics of a run for the comparison, written to ``out_dir/metrics.json``, and its
    learning curves to ``out_dir/history.csv``.

    A run trained with several seeds holds one ``seed-<s>`` folder per seed: each summary
    metric is then the mean over seeds, with ``<metric>_std`` (sample standard deviation),
    ``<metric>_median`` and the per-seed values under ``seeds``; the curves are per-epoch
    means. A metric the run does not have (no validation split) is None.
    """
    run, out = Path(run_dir), Path(out_dir)
    epochs = parse_checkpoints(checkpoints)
    folders = sorted(run.glob("seed-*"), key=lambda p: int(p.name.removeprefix("seed-")))
    per_seed = {
        p.name.removeprefix("seed-"): seed_metrics(p, epochs, device) for p in folders or [run]
    }
    if not folders:
        metrics = per_seed.popitem()[1]
    else:
        metrics = {}
        for k in METRICS:
            values = [m[k] for m in per_seed.values()]
            if None in values:
                metrics[k] = None
                continue
            metrics[k] = statistics.fmean(values)
            if len(values) > 1:
                metrics[f"{k}_std"] = statistics.stdev(values)
                metrics[f"{k}_median"] = statistics.median(values)
        # Each validated checkpoint's accuracy, the mean over seeds (golden cells valid_acc@N).
        metrics["valid_acc"] = {
            epoch: mean_or_none([m["valid_acc"][epoch] for m in per_seed.values()])
            for epoch in next(iter(per_seed.values()))["valid_acc"]
        }
        metrics["seeds"] = per_seed
        metrics["rehearsal"] = any(m["rehearsal"] for m in per_seed.values())
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    histories = [read_history(p / "history.jsonl") for p in folders or [run]]
    if not all(histories):
        raise ConfigError(f"{run}: a seed has no training history (history.jsonl)")
    rows = [
        {k: mean_or_none([h[i][k] for h in histories]) for k in histories[0][i]}
        for i in range(min(len(h) for h in histories))
    ]
    with open(out / "history.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return metrics


def mean_or_none(values: list[float | None]) -> float | None:
    """The mean, or None where a value is missing (an epoch without validation)."""
    return None if None in values else statistics.fmean(values)


def run_cpu_pipeline(
    repo: Path,
    workdir: Path,
    *,
    echo: bool = True,
    targets: tuple[str, ...] = (),
    seeds: list[int] | None = None,
) -> float:
    """Run ``dvc repro`` at CPU scale in ``workdir``, a ``git clone`` of ``repo`` (its committed
    state, as a new user gets it) with ``pipeline/params-cpu.yaml`` as ``params.yaml``; the
    repository's own params.yaml and dvc.lock are never touched. Every stage runs on the
    portable CPU kernels the pinned table was made with (kernels.py); a CPU that cannot run
    them (no AVX2) is compared over five seeds with the several-seed table instead. Returns the
    wall time of ``dvc repro`` in seconds."""
    seeds = cpu_pipeline_seeds(seeds)
    clone(repo, workdir)
    prepare_cpu_workdir(workdir, seeds=seeds)
    start = time.perf_counter()
    out = None if echo else subprocess.DEVNULL
    subprocess.run(
        ["dvc", "repro", *targets], check=True, cwd=workdir, stdout=out, env=portable_env()
    )
    return time.perf_counter() - start


def cpu_pipeline_seeds(seeds: list[int] | None) -> list[int] | None:
    """The seeds the CPU-scale pipeline trains: those asked for; else one (params-cpu.yaml's,
    compared with the pinned table) where this CPU runs the pinned kernels, and five (compared
    with the several-seed table) where it cannot."""
    if seeds is None and not can_pin():
        print("This CPU cannot run the pinned table's kernels (AVX2): comparing five seeds.")
        return [0, 1, 2, 3, 4]
    return seeds


def clone(repo: Path, dest: Path) -> None:
    """``git clone`` of ``repo`` into ``dest``: what is committed, nothing else."""
    try:
        subprocess.run(
            ["git", "clone", "--quiet", str(repo), str(dest)],
            check=True,
            capture_output=True,
            text=True,
        )
    except FileNotFoundError as e:
        raise ConfigError("git is not installed; this command runs the study in a git clone") from e
    except subprocess.CalledProcessError as e:
        raise ConfigError(
            f"cannot git clone {repo}: {e.stderr.strip()} (this command runs the study in a git "
            "clone of the committed repository: give --repo its folder)"
        ) from e


def prepare_cpu_workdir(workdir: Path, *, seeds: list[int] | None = None) -> None:
    """Install the CPU-scale params (with the fake archive's md5 filled in, and ``seeds`` if
    given, compared with the several-seed table) as params.yaml and write the fake archive
    where they point."""
    params = load_params(workdir / CPU_PARAMS)
    fake = params["data"]["fake"]
    archive = write_fake_cifar10(
        workdir / params["data"]["source"],
        train_per_batch=fake["train_per_batch"],
        test_size=fake["test_size"],
        seed=fake["seed"],
        noise=fake["noise"],
    )
    params["data"]["md5"] = md5_of(archive)
    if seeds is not None:
        params["seeds"] = list(seeds)
        if len(seeds) > 1:  # the pinned table holds one seed's values; several seeds' mean
            params["compare"]["golden"] = CPU_SEEDS_TABLE
    (workdir / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False, width=100))
    (workdir / "dvc.lock").unlink(missing_ok=True)


def make_cpu_golden(repo: Path, workdir: Path, seeds: list[int], out: Path) -> dict[str, Any]:
    """Run the CPU-scale grid with ``seeds`` in a clone of ``repo`` and write its golden table
    (see ``cpu_golden_table``) to ``out``."""
    clone(repo, workdir)
    prepare_cpu_workdir(workdir, seeds=seeds)
    subprocess.run(
        ["dvc", "repro", "evaluate"],
        check=True,
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        env=portable_env(),
    )
    table = cpu_golden_table(workdir, seeds)
    out.write_text(yaml.safe_dump(table, sort_keys=False, width=100))
    return table


def cpu_golden_table(workdir: Path, seeds: list[int]) -> dict[str, Any]:
    """The golden table of a CPU-scale grid evaluated in ``workdir``.

    One seed gives the pinned table CI checks: each value as measured, within 0.5 point, for
    the torch this project pins (CPU training is bitwise deterministic, so the same torch gives
    the same numbers; a regression moves them). Several seeds give the table for other torch
    versions: the mean over the seeds, within 3 standard errors of that mean (at least 1
    point), to be compared with the mean of as many seeds."""
    import math

    import torch

    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=workdir, capture_output=True, text=True
    ).stdout.strip()
    cells = []
    for path in sorted((workdir / "results" / "runs").glob("*/metrics.json")):
        per_seed = json.loads(path.read_text())["seeds"]
        for metric in ("test_acc_final", "valid_acc_final", "test_acc_continued"):
            vals = [per_seed[str(s)][metric] for s in seeds]
            if None in vals:  # a run without continued epochs
                continue
            if len(vals) == 1:
                golden, points, statistic = vals[0], 0.5, "single"
            else:
                golden, statistic = statistics.fmean(vals), "mean"
                points = max(300 * statistics.stdev(vals) / math.sqrt(len(vals)), 1.0)
            cells.append(
                {
                    "run": path.parent.name,
                    "metric": metric,
                    "statistic": statistic,
                    "runs": len(vals),
                    "golden": round(golden, 4),
                    "tolerance": {"rule": "two_sided", "points": round(points, 2)},
                    "note": f"seeds {seeds}: " + ", ".join(f"{v:.4f}" for v in vals),
                }
            )
    return {
        "kernels": f"{PORTABLE_NAME} (resnet_repro/kernels.py): the same bits on every x86-64 "
        "CPU with AVX2",
        "source": f"this code's own CPU-scale runs (commit {commit}, torch {torch.__version__}, "
        f"{time.strftime('%Y-%m-%d')}): resnet-repro dev cpu-golden --seeds "
        + " ".join(map(str, seeds)),
        "recipe": "seed and paper at CPU scale (pipeline/params-cpu.yaml)",
        "split": "fake archive (noisy stripes), 1,500 training images: 1,200 train, 300 "
        "validate; 500 test",
        "metric": "valid_acc_final, test_acc_final and (seed recipe) test_acc_continued",
        "checkpoint": "the last validated epoch; test_acc_continued: the last continued one",
        "runs_per_cell": len(seeds),
        "cells": cells,
    }
