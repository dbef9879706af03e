"""The study as ``params.yaml`` lays it out, run with git and dvc, without torch: each run's
seeds and seed folders, several train stages at once, and the committed study in a git clone
under one override (load, override, dump), for the CPU-scale pipeline
(``pipeline/params-cpu.yaml``, compared with the pinned table) and for the rehearsal
(``pipeline/rehearsal.yaml``, amounts shrunk). Only the stage entry points (``pipeline.py``)
import the engine.

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
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

from resnet_repro.archive_writer import write_fake_cifar10
from resnet_repro.cifar import md5_of
from resnet_repro.config import ConfigError, load_params
from resnet_repro.kernels import can_pin, portable_env

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


def write_fake_data(workdir: Path, data: dict[str, Any]) -> str:
    """Write the fake archive an override's ``data`` describes (``source``, a path in the
    clone, and ``fake``, write_fake_cifar10's arguments); returns its md5."""
    fake, source = data.get("fake"), data.get("source")
    if not isinstance(fake, dict) or not isinstance(source, str):
        raise ConfigError("data needs 'source' (a path) and 'fake' (its contents)")
    return md5_of(write_fake_cifar10(workdir / source, **fake))


def repro_in_clone(
    repo: Path,
    workdir: Path,
    override: Callable[[Path], object],
    *,
    targets: tuple[str, ...] = (),
    echo: bool = True,
    env: dict[str, str] | None = None,
) -> float:
    """``git clone`` ``repo`` into ``workdir``, apply ``override`` to the clone (it rewrites
    params.yaml), run ``dvc repro`` there; returns its wall time in seconds. The repository's
    own params.yaml and dvc.lock are never touched."""
    clone(repo, workdir)
    override(workdir)
    start = time.perf_counter()
    out = None if echo else subprocess.DEVNULL
    subprocess.run(["dvc", "repro", *targets], check=True, cwd=workdir, stdout=out, env=env)
    return time.perf_counter() - start


def cpu_pipeline_seeds(seeds: list[int] | None) -> list[int] | None:
    """The seeds the CPU-scale pipeline trains: those asked for; else one (params-cpu.yaml's,
    compared with the pinned table) where this CPU runs the pinned kernels, and five (compared
    with the several-seed table) where it cannot."""
    if seeds is None and not can_pin():
        print("This CPU cannot run the pinned table's kernels (AVX2): comparing five seeds.")
        return [0, 1, 2, 3, 4]
    return seeds


def prepare_cpu_workdir(workdir: Path, *, seeds: list[int] | None = None) -> None:
    """Install the CPU-scale params (with the fake archive's md5 filled in, and ``seeds`` if
    given, compared with the several-seed table) as params.yaml and write the fake archive
    where they point."""
    params = load_params(workdir / CPU_PARAMS)
    params["data"]["md5"] = write_fake_data(workdir, params["data"])
    if seeds is not None:
        params["seeds"] = list(seeds)
        if len(seeds) > 1:  # the pinned table holds one seed's values; several seeds' mean
            params["compare"]["golden"] = CPU_SEEDS_TABLE
    (workdir / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False, width=100))
    (workdir / "dvc.lock").unlink(missing_ok=True)


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
    return repro_in_clone(
        repo,
        workdir,
        lambda clone: prepare_cpu_workdir(clone, seeds=seeds),
        targets=targets,
        echo=echo,
        env=portable_env(),
    )


# -- the rehearsal

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


def prepare_rehearsal(workdir: Path) -> dict[str, Any]:
    """In a clone at ``workdir``: write the fake archive and install the override into
    params.yaml; return the override as applied (recorded in ``workdir/rehearsal.json``)."""
    if not (workdir / OVERRIDE).is_file():
        raise ConfigError(
            f"the clone in {workdir} has no {OVERRIDE}: the repository is not this project's (give "
            "--repo its folder), or the override is not committed"
        )
    override = yaml.safe_load((workdir / OVERRIDE).read_text())
    try:
        md5 = write_fake_data(workdir, override.get("data") or {})
    except ConfigError as e:
        raise ConfigError(f"{OVERRIDE}: {e}") from e
    params = load_params(workdir / "params.yaml")
    rehearsed = rehearsal_params(params, override, md5)
    (workdir / "params.yaml").write_text(yaml.safe_dump(rehearsed, sort_keys=False, width=100))
    data = {**override["data"], "md5": rehearsed["data"]["md5"]}
    record = {"override": str(OVERRIDE), **override, "data": data}
    (workdir / "rehearsal.json").write_text(json.dumps(record, indent=2) + "\n")
    return record


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


def run_rehearsal(repo: Path, workdir: Path, *, echo: bool = True) -> float:
    """Clone ``repo`` into ``workdir``, install the override, run ``dvc repro`` and check its
    outputs; returns the wall time of ``dvc repro`` in seconds. Raises ConfigError naming what
    is incomplete (``subprocess.CalledProcessError`` when a stage fails)."""

    def override(clone: Path) -> None:
        prepare_rehearsal(clone)
        # The cache links its copies of the checkpoints instead of copying them: the
        # rehearsal's checkpoints are the study's, thousands of them; copies would double its disk.
        subprocess.run(
            ["dvc", "config", "--local", "cache.type", "hardlink"], check=True, cwd=clone
        )

    seconds = repro_in_clone(repo, workdir, override, echo=echo)
    out = None if echo else subprocess.DEVNULL
    problems = check_rehearsal(workdir)
    if problems:
        raise ConfigError("the rehearsal is incomplete: " + "; ".join(problems))
    # The reviewer's step after the study: every checkpoint re-evaluated, every verdict
    # re-derived from the certificate.
    subprocess.run(
        [sys.executable, "-m", "resnet_repro", "verify"], check=True, cwd=workdir, stdout=out
    )
    return seconds
