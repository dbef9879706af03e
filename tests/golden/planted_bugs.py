"""Plant each bug the CPU golden table exists to catch, run the CPU-scale grid with it, and
report the table's verdict: the table has teeth only if every planted bug fails it.

    python tests/golden/planted_bugs.py --out tests/golden/planted-bugs.md     # nox -s planted

Each bug is planted in a fresh process (a patch of the installed code, never of the files),
which trains the four runs of pipeline/params-cpu.yaml on its fake archive and compares their
metrics with tests/golden/tables/cpu.yaml. ``none`` plants nothing and must pass.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TABLE = REPO / "tests" / "golden" / "tables" / "cpu.yaml"


def plant(bug: str) -> None:
    """Patch the package in this process so that it has ``bug``."""
    import torch

    from resnet_repro import data, image_utils, loader, runtime, schedule, train

    if bug == "flip off":
        real = image_utils.draw_crop_flip

        def no_flip(n, generator):
            offsets, flips = real(n, generator)
            return offsets, torch.zeros_like(flips)

        loader.draw_crop_flip = no_flip
    elif bug == "crop offsets 0-7":
        image_utils.NUM_OFFSETS = 8  # randint(0, 8): the offset 8 is never drawn
    elif bug == "BN momentum inverted":
        real_build = runtime.build_model

        def inverted(config, *, generator=None):
            config = type(config).from_dict(
                {**config.to_dict(), "bn_momentum": 1 - config.bn_momentum}
            )
            return real_build(config, generator=generator)

        train.build_model = inverted
    elif bug == "lr schedule one epoch ahead":
        real_get_lr = train.get_lr

        def ahead(config, step, total):
            per_epoch = schedule.steps_per_epoch(1200, config.batch_size)
            return real_get_lr(config, step + per_epoch, total)

        train.get_lr = ahead
    elif bug == "validation drawn from training images":
        real_split = data.train_valid_split

        def leaky(x, y, split_index=45_000, *, valid_fraction=None):
            x_tr, y_tr, x_va, y_va = real_split(x, y, split_index, valid_fraction=valid_fraction)
            return x_tr, y_tr, x_tr[: len(x_va)], y_tr[: len(y_va)]

        data.train_valid_split = leaky
    elif bug == "continued epochs on the training split only":
        real_init = train.Trainer.__init__

        def split_only(self, config, *args, **kwargs):
            real_init(self, config, *args, **kwargs)
            batches = self.loader
            batches.x_all, batches.y_all = batches.x_train, batches.y_train
            self.total_steps = schedule.total_steps(
                config, batches.n_train, n_continue=batches.n_train
            )

        train.Trainer.__init__ = split_only
    elif bug == "BN groups ignored":
        train.Trainer.bn_groups = lambda self, images: 1
    elif bug == "pixel mean subtracted after the crop":

        def crop_first(self, images, offsets, flips):
            return self(image_utils.crop_flip_unchecked(images, offsets, flips))

        image_utils.Normalization.train_input = crop_first
    elif bug != "none":
        raise SystemExit(f"unknown bug {bug!r}")


def run_grid(bug: str, workdir: Path, out: Path) -> dict:
    """Train and evaluate every run of the prepared CPU grid with ``bug`` planted."""
    plant(bug)
    from resnet_repro.config import load_params
    from resnet_repro.golden import compare
    from resnet_repro.pipeline import run_metrics, train_grid_run

    params = load_params(workdir / "params.yaml")
    for run, entry in params["runs"].items():
        train_grid_run(workdir / "params.yaml", run, out / "runs" / run)
        run_metrics(out / "runs" / run, entry["eval_checkpoints"], out / "metrics" / run)
    return compare([TABLE], out / "metrics")


BUGS = (
    "none",
    "flip off",
    "crop offsets 0-7",
    "BN momentum inverted",
    "lr schedule one epoch ahead",
    "validation drawn from training images",
    "continued epochs on the training split only",
    "BN groups ignored",
    "pixel mean subtracted after the crop",
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="write the verdicts as markdown here")
    parser.add_argument("--bug", help=argparse.SUPPRESS)  # the child process's bug
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bug is not None:
        import os

        os.chdir(args.workdir)  # the grid's data path is relative to the clone
        result = run_grid(args.bug, args.workdir, args.workdir / "out" / args.bug.replace(" ", "-"))
        print(json.dumps(result))
        return 0

    from resnet_repro.config import load_params
    from resnet_repro.fetch import fetch_cifar10
    from resnet_repro.kernels import portable_env
    from resnet_repro.study_clone import clone, prepare_cpu_workdir

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp) / "clone"
        clone(REPO, workdir)
        prepare_cpu_workdir(workdir)
        data = load_params(workdir / "params.yaml")["data"]
        fetch_cifar10(workdir / data["dest"], archive=workdir / data["source"], md5=data["md5"])
        for bug in BUGS:
            start = time.perf_counter()
            child = subprocess.run(
                [sys.executable, __file__, "--bug", bug, "--workdir", str(workdir)],
                capture_output=True,
                text=True,
                check=True,
                env=portable_env(),  # the kernels the table was pinned with
            )
            result = json.loads(child.stdout.strip().splitlines()[-1])
            failed = [r for r in result["rows"] if r["verdict"] != "pass"]
            worst = max(
                (abs(r["measured"] - r["golden"]) * 100 for r in result["rows"] if r["measured"]),
                default=0.0,
            )
            verdict = (
                "passes"
                if result["ok"]
                else f"FAILS ({len(failed)} of {len(result['rows'])} cells)"
            )
            rows.append((bug, verdict, worst, time.perf_counter() - start))
            print(f"{bug}: table {verdict}; largest deviation {worst:.1f} points", flush=True)
    caught = all((bug == "none") == verdict.startswith("passes") for bug, verdict, _, _ in rows)
    if args.out:
        lines = [
            "# Planted bugs against the CPU golden table",
            "",
            f"`python tests/golden/planted_bugs.py --out {args.out}` (nox -s planted), "
            f"{time.strftime('%Y-%m-%d')}, table `tests/golden/tables/cpu.yaml`.",
            "",
            "| planted bug | table | largest deviation (points) | seconds |",
            "|---|---|---|---|",
            *(f"| {b} | {v} | {w:.1f} | {s:.0f} |" for b, v, w, s in rows),
            "",
            "Every planted bug fails the table, and the unchanged code passes it."
            if caught
            else "NOT every planted bug fails the table: it lacks teeth there.",
            "",
        ]
        args.out.write_text("\n".join(lines))
    return 0 if caught else 1


if __name__ == "__main__":
    sys.exit(main())
