"""The whole GPU side in one command, within a deadline: the CUDA test tier, the CUDA benchmarks,
the rehearsal of the committed study and a short training run on real data, summarized in
OUT/summary.md and OUT/summary.json.

Made for a GPU machine that holds the project's checkout and a CUDA build of torch but has no
package access and no nox: it needs only python, torch, pytest, hypothesis and
pytest-benchmark (`nox -s gpu` runs it where nox is available); the rehearsal of params.yaml
runs where dvc and git are installed too (gpu_lease.sh installs dvc from carried wheels).

    python .ci/gpu_check.py --out gpu-check --archive cifar-10-python.tar.gz

Each step gets what is left of the deadline (default 480 s), the training run the last part of
it; a step the deadline cuts short is reported as such, never as passed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def environment() -> dict:
    import torch

    cuda = torch.cuda.is_available()
    return {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "device": torch.cuda.get_device_name() if cuda else "no CUDA device (CPU only)",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "commit": git_commit(),
    }


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"


def run_step(name: str, cmd: list[str], seconds: float, out: Path) -> dict:
    """Run ``cmd`` with a time limit; its output goes to OUT/<name>.log."""
    log = out / f"{name}.log"
    if seconds < 5:
        return {"status": "not run: deadline reached", "seconds": 0.0}
    start = time.monotonic()
    with open(log, "w") as f:
        try:
            proc = subprocess.run(
                cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT, timeout=seconds
            )
            status = {0: "ok", 5: "no test selected here"}.get(
                proc.returncode, f"failed (exit {proc.returncode})"
            )
        except subprocess.TimeoutExpired:
            status = f"cut short by the deadline after {seconds:.0f} s"
    return {"status": status, "seconds": round(time.monotonic() - start, 1), "log": log.name}


def junit_counts(path: Path) -> dict:
    if not path.is_file():
        return {}
    root = ET.parse(path).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    total, failures, errors, skipped = (
        int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")
    )
    return {
        "passed": total - failures - errors - skipped,
        "failed": failures + errors,
        "skipped": skipped,
    }


def benchmark_figures(path: Path) -> dict:
    """Each benchmark's extra figures (images/s, the same-run reference, the ratio, time to the
    first steps, ...), floats rounded."""
    # pytest-benchmark leaves an empty file when no benchmark ran (none selected here).
    if not path.is_file() or not path.read_text().strip():
        return {}
    figures = {}
    for bench in json.loads(path.read_text())["benchmarks"]:
        info = bench.get("extra_info", {})
        if "images_per_s" in info:
            figures[bench["name"]] = {
                k: round(v, 3) if isinstance(v, float) else v for k, v in info.items()
            }
    return figures


def training_figures(run: Path) -> dict:
    history = run / "history.jsonl"
    if not history.is_file():
        return {}
    lines = [json.loads(x) for x in history.read_text().splitlines() if x.strip()]
    if not lines:
        return {}
    return {
        "epochs": len(lines),
        "valid_acc_final": lines[-1]["valid_acc"],
        "images_per_s_last_epoch": round(lines[-1]["images_per_s"]),
        "seconds_per_epoch": [round(h["seconds"], 2) for h in lines],
    }


def markdown(summary: dict) -> str:
    env = summary["environment"]
    rows = [
        "# GPU check",
        "",
        f"{env['device']}; torch {env['torch']}, CUDA {env['cuda']}, cuDNN {env['cudnn']}; "
        f"commit {env['commit']}; {env['date']}",
        "",
        "| step | status | seconds | figures |",
        "|---|---|---|---|",
    ]
    for name, step in summary["steps"].items():
        figures = json.dumps(step.get("figures", {}))
        rows.append(f"| {name} | {step['status']} | {step['seconds']} | {figures} |")
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the summary and logs")
    parser.add_argument("--archive", type=Path, help="CIFAR-10 archive in the official format")
    parser.add_argument("--device", default="cuda", help="device of the training run (cuda)")
    parser.add_argument("--epochs", type=int, default=30, help="epochs of the training run (30)")
    parser.add_argument("--deadline", type=float, default=480.0, help="seconds in all (480)")
    parser.add_argument("--train-seconds", type=float, default=150.0, help="kept for training")
    parser.add_argument(
        "--cuda-graph", action="store_true", help="train with the whole step as a CUDA graph"
    )
    parser.add_argument(
        "--rehearse",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="rehearse the committed params.yaml (resnet-repro rehearse) on this device",
    )
    parser.add_argument(
        "--baselines-dir",
        type=Path,
        help="also store the benchmarks' ratios there as this machine class's baseline",
    )
    args = parser.parse_args(argv)
    start = time.monotonic()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)

    def left(keep: float = 0.0) -> float:
        return args.deadline - (time.monotonic() - start) - keep

    keep = args.train_seconds if args.archive else 0.0
    steps: dict[str, dict] = {}
    junit = out / "cuda-tier.xml"
    tier = [sys.executable, "-m", "pytest", "tests", "-m", "cuda", "-q", f"--junitxml={junit}"]
    steps["cuda tier (pytest -m cuda)"] = run_step("cuda-tier", tier, left(keep + 180), out)
    steps["cuda tier (pytest -m cuda)"]["figures"] = junit_counts(junit)

    # The benchmarks that compile nothing first (whole-step graphs, grouped BN's step); then
    # the rest, whose torch.compile of the deep nets takes minutes and may meet the deadline.
    first = "train_epoch_graph or grouped_bn"
    for slug, name, selection, reserve in (
        ("graphs", "cuda benchmarks, whole-step graphs and grouped BN", f"cuda and ({first})", 60),
        ("others", "other cuda benchmarks", f"cuda and not ({first})", 0),
    ):
        bench_json = out / f"benchmarks-{slug}.json"
        bench = [
            *(sys.executable, "-m", "pytest", "benchmarks", "-k", selection, "-q"),
            f"--benchmark-json={bench_json}",
        ]
        if args.baselines_dir:
            bench += ["--update-baselines", f"--baselines-dir={args.baselines_dir.resolve()}"]
        steps[name] = run_step(f"benchmarks-{slug}", bench, left(keep + reserve), out)
        steps[name]["figures"] = benchmark_figures(bench_json)

    # The rehearsal of the committed study (every stage, run and seed of params.yaml, amounts
    # shrunk) on this machine's device: the paths a night of GPU training ends in.
    name = "rehearsal of params.yaml (dvc repro)"
    if not args.rehearse:
        steps[name] = {"status": "not run: --no-rehearse", "seconds": 0.0}
    elif shutil.which("dvc") is None:
        steps[name] = {"status": "not run: dvc is not installed", "seconds": 0.0}
    else:
        rehearse = [sys.executable, "-m", "resnet_repro", "rehearse"]
        rehearse += ["--workdir", str(out / "rehearsal")]
        steps[name] = run_step("rehearsal", rehearse, left(keep + 5), out)

    if args.archive:
        run = out / "train-paper-v1-n3"
        train = [
            *(sys.executable, "-m", "resnet_repro", "train", "--recipe", "paper"),
            *("--resnet-version", "1", "--resnet-size", "3", "--epochs", str(args.epochs)),
            *("--device", args.device),
            *("--data", str(args.archive.resolve()), "--out", str(run)),
            *("--checkpoint-every", "10", "--valid-fraction", "0.1"),
            *(["--cuda-graph"] if args.cuda_graph else []),
        ]
        steps["training, paper v1 n=3"] = run_step("train", train, left(5), out)
        steps["training, paper v1 n=3"]["figures"] = training_figures(run)
    summary = {"environment": environment(), "steps": steps}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "summary.md").write_text(markdown(summary))
    print(markdown(summary))
    failed = [n for n, s in steps.items() if s["status"].startswith("failed")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
