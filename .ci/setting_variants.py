"""What each setting of the seed's and the papers' code does to the CPU-scale table.

    python .ci/setting_variants.py --workdir /tmp/variants      # about 4 minutes a variant

Each variant is pipeline/params-cpu.yaml with some runs' fields set back to the values before
the settings existed; the variants add the settings back one at a time, the last being the
committed grid. Each runs `dvc repro evaluate` in its own git clone under the portable CPU
kernels the pinned table was made with, and prints its runs' validation and test accuracies
(docs/measurements.md, "The code behind each table").
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

import yaml

from resnet_repro.kernels import portable_env
from resnet_repro.pipeline import clone, prepare_cpu_workdir

OLD_SEED = {
    "schedule": "cosine",
    "continue_epochs": 0,
    "drop_last": False,
    "start_output_bn_momentum": 0.1,
}
OLD_PAPER = {"bn_group_images": 64}
# Cumulative: each variant's overrides, per run; {} is the committed grid.
VARIANTS = {
    "before, in this code": {
        "seed-v1-n1": OLD_SEED,
        "seed-v2-n1": {**OLD_SEED, "v2_projection_bn": False},
        "paper-v1-n1": OLD_PAPER,
        "paper-v2-n1": {**OLD_PAPER, "bottleneck_stride": "3x3"},
    },
    "+ BN momentum scope": {
        "seed-v1-n1": {**OLD_SEED, "start_output_bn_momentum": 0.997},
        "seed-v2-n1": {**OLD_SEED, "start_output_bn_momentum": 0.997, "v2_projection_bn": False},
        "paper-v1-n1": OLD_PAPER,
        "paper-v2-n1": {**OLD_PAPER, "bottleneck_stride": "3x3"},
    },
    "+ v2 projection BN, first-1x1 stride": {
        "seed-v1-n1": {**OLD_SEED, "start_output_bn_momentum": 0.997},
        "seed-v2-n1": {**OLD_SEED, "start_output_bn_momentum": 0.997},
        "paper-v1-n1": OLD_PAPER,
        "paper-v2-n1": OLD_PAPER,
    },
    "+ the seed's protocol (constant lr, continued epochs)": {
        "seed-v1-n1": {"drop_last": False},
        "seed-v2-n1": {"drop_last": False},
        "paper-v1-n1": OLD_PAPER,
        "paper-v2-n1": OLD_PAPER,
    },
    "+ 2 BN groups per step": {
        "seed-v1-n1": {"drop_last": False},
        "seed-v2-n1": {"drop_last": False},
    },
    "+ drop_last (the committed grid)": {},
}


def run_variant(repo: Path, workdir: Path, overrides: dict) -> dict:
    clone(repo, workdir)
    prepare_cpu_workdir(workdir)
    params = yaml.safe_load((workdir / "params.yaml").read_text())
    for run, fields in overrides.items():
        params["runs"][run].update(fields)
    (workdir / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    subprocess.run(
        ["dvc", "repro", "evaluate"],
        cwd=workdir,
        check=True,
        stdout=subprocess.DEVNULL,
        env=portable_env(),
    )
    metrics = {}
    for path in sorted((workdir / "results" / "runs").glob("*/metrics.json")):
        m = json.loads(path.read_text())
        metrics[path.parent.name] = {
            k: m.get(k) for k in ("valid_acc_final", "test_acc_final", "test_acc_continued")
        }
    return metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, required=True, help="a new folder")
    parser.add_argument("--repo", type=Path, default=Path(__file__).resolve().parents[1])
    args = parser.parse_args()
    args.workdir.mkdir(parents=True)
    for i, (name, overrides) in enumerate(VARIANTS.items()):
        metrics = run_variant(args.repo, args.workdir / f"variant-{i}", overrides)
        print(json.dumps({"variant": name, "metrics": metrics}), flush=True)


if __name__ == "__main__":
    main()
