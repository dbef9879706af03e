"""Several runs sharing one GPU: the aggregate training throughput of K = 1, 2 and 4 processes
of `resnet-repro train` started together, as `resnet-repro stage train-many --jobs K` starts them.

A small network at the papers' batch of 128 leaves most of a large GPU idle, so K runs at once
may finish the grid sooner than K runs one after another. Each process trains 3 epochs; its
throughput is the images of epochs 2 and 3 over their seconds (epoch 1 holds the start-up), and
the K processes' throughputs add up because they start together and do the same work, so their
measured epochs overlap. Ratios: aggregate of K processes / one process, in the same run.
"""

import json
import subprocess
import sys

import pytest

EPOCHS = 3


def throughput(run) -> float:
    """Images per second over a run's epochs after the first."""
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    later = history[1:]
    images = sum(h["images_per_s"] * h["train_seconds"] for h in later)
    return images / sum(h["seconds"] for h in later)


def aggregate(k, archive, device, folder) -> float:
    """Start ``k`` training processes together; the sum of their throughputs."""
    runs = [folder / f"k{k}-{i}" for i in range(k)]
    procs = [
        subprocess.Popen(
            [
                *(sys.executable, "-m", "resnet_repro", "train", "--recipe", "paper"),
                *("--version", "1", "--resnet-size", "3", "--epochs", str(EPOCHS)),
                *("--data", str(archive), "--valid-fraction", "0.1", "--device", device),
                *("--seed", str(i), "--out", str(run)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i, run in enumerate(runs)
    ]
    for proc in procs:
        _, err = proc.communicate()
        assert proc.returncode == 0, err[-2000:]
    return sum(throughput(run) for run in runs)


def test_concurrent_runs_share_one_gpu(benchmark, record_ratio, device, epoch_archive, tmp_path):
    if device != "cuda":
        pytest.skip("K runs on one GPU; on the CPU machine K processes only split its 2 cores")
    if not benchmark.enabled:
        aggregate(1, epoch_archive, device, tmp_path)  # smoke: one process runs
        return
    figures = {}

    def measure():
        for k in (1, 2, 4):
            figures[k] = aggregate(k, epoch_archive, device, tmp_path)

    benchmark.pedantic(measure, rounds=1, warmup_rounds=0, iterations=1)
    benchmark.extra_info.update(
        images_per_s=figures[4],
        reference_images_per_s=figures[1],
        ratio=figures[4] / figures[1],
        images_per_s_by_k={str(k): round(v) for k, v in figures.items()},
    )
    for k in (2, 4):
        record_ratio(f"concurrent_runs_k{k}", device, figures[k] / figures[1])
