"""The study run with git and dvc, without torch: several train stages at once
(``train-many``), and the committed study in a git clone under one override (load, override,
dump), for the CPU-scale pipeline (``pipeline/params-cpu.yaml``, compared with the pinned
table) and for the rehearsal (``pipeline/rehearsal.yaml``, amounts shrunk; its rules are
``study.py``'s). Only the stage entry points (``pipeline.py``) import the engine.
"""

from __future__ import annotations

import json
import os
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
from resnet_repro.study import OVERRIDE, check_rehearsal, rehearsal_params

CPU_PARAMS = Path("pipeline") / "params-cpu.yaml"
CPU_SEEDS_TABLE = "tests/golden/tables/cpu-seeds.yaml"  # the mean of five seeds


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
