"""What each of the seed's unknowns moves in the CPU-scale table.

    python .ci/setting_variants.py --workdir /tmp/variants      # about 2 minutes a variant

Each variant is pipeline/params-cpu.yaml with the seed runs' fields set to the other reading of
one assumption of the seed recipe (each marked ASSUMPTION in resnet_repro/config.py), the first
being the committed grid. Each runs `dvc repro` of the seed runs' evaluate stages in its own git
clone under the portable CPU kernels the pinned table was made with, and prints their
validation, test and continued-test accuracies (docs/measurements.md, "The seed's unknowns").
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

import yaml

from resnet_repro.kernels import portable_env
from resnet_repro.study_clone import clone, prepare_cpu_workdir

SEED_RUNS = ("seed-v1-n1", "seed-v2-n1")
# Each variant's overrides, per run; {} is the committed grid. The CPU grid's seed-v2-n1 takes
# lr 3e-3 (pipeline/params-cpu.yaml), so "x10" is 3e-2 there.
VARIANTS = {
    "the committed grid": {},
    "init he (He et al.'s code; the seed recipe's before it was a setting)": {
        run: {"init": "he"} for run in SEED_RUNS
    },
    "weight decay 2e-4 (the skeleton's --weight_decay, passed to Adam)": {
        run: {"weight_decay": 2e-4} for run in SEED_RUNS
    },
    "lr x10": {"seed-v1-n1": {"lr": 1e-2}, "seed-v2-n1": {"lr": 3e-2}},
    "bottleneck stride 1x1 (He et al.'s code)": {"seed-v2-n1": {"bottleneck_stride": "1x1"}},
    "v2 output BN momentum 0.1 (batch_norm_relu_layer read as v1's only)": {
        "seed-v2-n1": {"start_output_bn_momentum": 0.1}
    },
}


def run_variant(repo: Path, workdir: Path, overrides: dict) -> dict:
    clone(repo, workdir)
    prepare_cpu_workdir(workdir)
    params = yaml.safe_load((workdir / "params.yaml").read_text())
    for run, fields in overrides.items():
        params["runs"][run].update(fields)
    (workdir / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    subprocess.run(
        ["dvc", "repro", *(f"evaluate@{run}" for run in SEED_RUNS)],
        cwd=workdir,
        check=True,
        stdout=subprocess.DEVNULL,
        env=portable_env(),
    )
    metrics = {}
    for path in sorted((workdir / "results" / "runs").glob("*/metrics.json")):
        m = json.loads(path.read_text())
        metrics[path.parent.name] = {
            k: m.get(k) for k in ("valid_acc_final", "test_acc_chosen", "test_acc_continued")
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
