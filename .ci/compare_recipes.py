"""Does the ``fast`` recipe earn its name? Train it and He et al.'s recipe on the same data and
the same split, v1 n=3 and n=18, three seeds each, and compare final validation accuracy and
wall time against the target: the fast recipe within 0.3 point of the paper recipe's mean
validation accuracy in at most a fifth of its wall time. Validation only: the test split is
never looked at here.

    python .ci/compare_recipes.py --archive cifar-10-python.tar.gz --out recipes --deadline 36000

Both recipes train on the first 45,000 training images and validate on the rest, so the archive
needs more than 45,000 training images. The shared JPEG copy (50,000 images) packed with the
default test fraction has 41,670; pack it with ``--test-fraction 0.02`` (49,000 train, 1,000
test), and the runs validate on 4,000 images:

    resnet-repro pack train jpeg-49k.tar.gz --test-fraction 0.02

Made for a GPU machine (hours: the paper recipe is 182 epochs per run); runs are skipped, and
reported as not run, once the deadline leaves no time for them. ``--epochs`` shortens every run
(a smoke run, not a measurement). Writes OUT/summary.md and OUT/summary.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

RECIPES = ("fast", "paper-valid")  # paper-valid: He et al.'s recipe on the 45k/5k split
TARGET_POINTS = 0.3
TARGET_TIME_RATIO = 5.0


def train_once(recipe, size, seed, args, out: Path) -> dict:
    cmd = [
        *(sys.executable, "-m", "resnet_repro", "train", "--recipe", recipe),
        *("--resnet-version", "1", "--resnet-size", str(size), "--seed", str(seed)),
        *("--data", str(args.archive), "--device", args.device, "--out", str(out)),
    ]
    if args.epochs:
        cmd += ["--epochs", str(args.epochs), "--max-iters", "0"]
    cmd += args.train_args.split()
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        return {"status": "failed", "error": (done.stderr or done.stdout)[-2000:]}
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    return {"status": "ran", "seconds": seconds, "valid_acc": history[-1]["valid_acc"]}


def summarize(results: dict) -> dict:
    """Per size: each recipe's mean validation accuracy and wall time, and the verdict."""
    sizes = {}
    for size in sorted({r["size"] for r in results.values()}):
        per = {}
        for recipe in RECIPES:
            runs = [r for r in results.values() if r["size"] == size and r["recipe"] == recipe]
            ran = [r for r in runs if r["status"] == "ran"]
            per[recipe] = {
                "seeds_run": len(ran),
                "valid_acc_mean": statistics.fmean(r["valid_acc"] for r in ran) if ran else None,
                "seconds_mean": statistics.fmean(r["seconds"] for r in ran) if ran else None,
            }
        fast, paper = per["fast"], per["paper-valid"]
        verdict = "not measured (a recipe has no finished run)"
        if fast["seeds_run"] and paper["seeds_run"]:
            gap = 100 * (paper["valid_acc_mean"] - fast["valid_acc_mean"])
            ratio = paper["seconds_mean"] / fast["seconds_mean"]
            met = gap <= TARGET_POINTS and ratio >= TARGET_TIME_RATIO
            verdict = (
                f"{'meets' if met else 'misses'} the target: {gap:+.2f} points below the paper "
                f"recipe, {ratio:.1f}x less wall time"
            )
        sizes[str(size)] = {**per, "verdict": verdict}
    return sizes


def markdown(summary: dict) -> str:
    env = summary["environment"]
    lines = [
        "# fast vs paper recipe",
        "",
        f"{env['device']}, torch {env['torch']}, CUDA {env['cuda']}, commit {env['commit']}, "
        f"{env['date']}, data "
        f"{env['archive']}"
        + (f", SMOKE RUN: {env['epochs']} epochs" if env["epochs"] else "")
        + (f", options {env['train_args']}" if env["train_args"] else ""),
        "",
        "| v1 n | recipe | seeds run | mean final validation accuracy | mean wall time (s) |",
        "|---|---|---|---|---|",
    ]
    for size, per in summary["sizes"].items():
        for recipe in RECIPES:
            r = per[recipe]
            acc = "—" if r["valid_acc_mean"] is None else f"{r['valid_acc_mean']:.4f}"
            sec = "—" if r["seconds_mean"] is None else f"{r['seconds_mean']:.0f}"
            lines.append(f"| {size} | {recipe} | {r['seeds_run']} | {acc} | {sec} |")
    lines += ["", *(f"- n={s}: {per['verdict']}" for s, per in summary["sizes"].items()), ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archive", type=Path, required=True, help="CIFAR-10 archive or folder")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--deadline", type=float, default=36_000, help="seconds for everything")
    parser.add_argument("--sizes", type=int, nargs="+", default=[3, 18])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--epochs", type=int, help="shorten every run (smoke run only)")
    parser.add_argument(
        "--train-args",
        default="",
        help="more options for every run, e.g. '--valid-fraction 0.2 --no-compile' (smoke run)",
    )
    args = parser.parse_args()
    from gpu_check import environment  # this script's folder: device, versions, commit

    start = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    results, spent = {}, {}
    for size in args.sizes:
        for seed in args.seeds:
            for recipe in RECIPES:
                key = f"{recipe}-n{size}-seed{seed}"
                left = args.deadline - (time.perf_counter() - start)
                # A run is started only if one like it has fitted in what is left.
                if left <= 0 or spent.get((recipe, size), 0) > left:
                    results[key] = {"status": "not run (deadline)"}
                else:
                    results[key] = train_once(recipe, size, seed, args, args.out / key)
                    spent[(recipe, size)] = results[key].get("seconds", 0)
                results[key] |= {"recipe": recipe, "size": size, "seed": seed}
                print(key, results[key]["status"], flush=True)
    summary = {
        "environment": {
            **environment(),
            "archive": args.archive.name,
            "epochs": args.epochs,
            "train_args": args.train_args,
        },
        "runs": results,
        "sizes": summarize(results),
    }
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (args.out / "summary.md").write_text(markdown(summary))
    print(markdown(summary))
    return 1 if any(r["status"] == "failed" for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
