"""The developers' CPU-scale study tools (the package's users never need them):

    python .ci/cpu_study.py pipeline --workdir W [--seeds 0 1 2 3 4]   # nox -s pipeline
    python .ci/cpu_study.py golden --workdir W --seeds 0 [--table T]   # re-make the pinned table

`pipeline` runs `dvc repro` at CPU scale in a git clone of the repository (its committed state)
with pipeline/params-cpu.yaml as params.yaml and a fake archive, and fails when a golden cell
fails. `golden` runs that grid once per seed and writes its golden table.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

import yaml

from resnet_repro.kernels import PORTABLE_NAME, portable_env
from resnet_repro.study_clone import prepare_cpu_workdir, repro_in_clone, run_cpu_pipeline

COMMAND = "python .ci/cpu_study.py"


def golden_table(workdir: Path, seeds: list[int]) -> dict[str, Any]:
    """The golden table of a CPU-scale grid evaluated in ``workdir``.

    One seed gives the pinned table CI checks: each value as measured, within 0.5 point, for
    the torch this project pins (CPU training is bitwise deterministic, so the same torch gives
    the same numbers; a regression moves them). Several seeds give the table for other torch
    versions: the mean over the seeds, within 3 standard errors of that mean (at least 1
    point), to be compared with the mean of as many seeds."""
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
        "source": f"this code's own CPU-scale runs (commit {commit}, torch {version('torch')}, "
        f"{time.strftime('%Y-%m-%d')}): {COMMAND} golden --seeds " + " ".join(map(str, seeds)),
        "recipe": "seed and paper at CPU scale (pipeline/params-cpu.yaml)",
        "split": "fake archive (noisy stripes), 1,500 training images: 1,200 train, 300 "
        "validate; 500 test",
        "metric": "valid_acc_final, test_acc_final and (seed recipe) test_acc_continued",
        "checkpoint": "the last validated epoch; test_acc_continued: the last continued one",
        "runs_per_cell": len(seeds),
        "cells": cells,
    }


def empty_folder(text: str) -> Path:
    folder = Path(text)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise argparse.ArgumentTypeError(f"{folder} is not an empty or new folder")
    return folder


def main() -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.split("\n\n")[0])
    tools = parser.add_subparsers(dest="tool", required=True)
    pipeline = tools.add_parser("pipeline", help="dvc repro at CPU scale, compared")
    golden = tools.add_parser("golden", help="re-make the CPU-scale golden table")
    for tool in (pipeline, golden):
        tool.add_argument("--workdir", type=empty_folder, required=True)
        tool.add_argument("--repo", type=Path, default=Path("."), help="the repository (.)")
    pipeline.add_argument("--seeds", type=int, nargs="+", help="compared with cpu-seeds.yaml")
    golden.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    golden.add_argument("--table", type=Path, default=Path("tests/golden/tables/cpu.yaml"))
    args = parser.parse_args()

    if args.tool == "golden":
        repro_in_clone(
            args.repo.resolve(),
            args.workdir,
            lambda clone: prepare_cpu_workdir(clone, seeds=args.seeds),
            targets=("evaluate",),
            echo=False,
            env=portable_env(),
        )
        table = golden_table(args.workdir, args.seeds)
        args.table.write_text(yaml.safe_dump(table, sort_keys=False, width=100))
        print(f"golden table written to {args.table}")
    else:
        seconds = run_cpu_pipeline(args.repo.resolve(), args.workdir, seeds=args.seeds)
        print(f"dvc repro took {seconds:.1f} s; results in {args.workdir}/results")
        comparison = json.loads((args.workdir / "results" / "comparison.json").read_text())
        if not comparison["ok"]:
            print(f"golden cells failed: {', '.join(comparison['failed'])}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
