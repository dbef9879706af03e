"""How long the grid of a ``params.yaml`` will take on this machine, projected from measured
step times, before anyone commits hours of a GPU to it.

For each distinct network and speed setting of the grid, a ``Trainer`` on synthetic images
(the real loop: gather, augmentation, normalization, step) is timed over a few steps after
warm-up steps (which also absorb ``torch.compile``), and evaluation over one batch. A run's
projection is ``seeds x (total steps x step time + epochs x validation images x evaluation
time per image)``; compilation and data loading are not included.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from resnet_repro.cifar import OFFICIAL_COUNTS
from resnet_repro.config import TrainConfig, load_params, speed_fields
from resnet_repro.data import Splits
from resnet_repro.pipeline import run_config
from resnet_repro.schedule import epoch_steps, total_steps
from resnet_repro.step_graph import WARMUP_STEPS
from resnet_repro.study import run_seeds
from resnet_repro.train import Trainer

# Settings that change the time of a step; runs equal on these share one measurement.
SPEED_FIELDS = speed_fields()


@dataclass(frozen=True)
class Timing:
    step_s: float  # one training step
    eval_image_s: float  # one evaluated image


@dataclass(frozen=True)
class RunProjection:
    run: str
    seeds: int
    steps: int  # per seed
    epochs: int
    valid_images: int
    seconds: float  # all seeds


def image_counts(config: TrainConfig) -> tuple[int, int]:
    """Training images of the official training set under ``config``'s split, and validation
    images evaluated each epoch (a rehearsal's ``limit_eval_images`` at most)."""
    n = OFFICIAL_COUNTS["train"]
    if config.valid_fraction > 0:
        valid = round(config.valid_fraction * n)
        train = n - valid
    else:
        train = min(config.split_index, n)
        valid = n - train
    return train, min(valid, config.limit_eval_images or valid)


def synthetic_splits(config: TrainConfig) -> Splits:
    """Random images, two batches' worth: enough for the loop, nothing read from disk."""
    rng = np.random.default_rng(0)
    n = 2 * config.batch_size

    def images(count: int) -> np.ndarray:
        return rng.integers(0, 256, (count, 3 * 32 * 32), dtype=np.uint8)

    labels = np.arange(n) % config.num_classes
    return Splits(
        images(n),
        labels,
        images(config.eval_batch_size),
        np.zeros(config.eval_batch_size, int),
        images(0),
        np.zeros(0, int),
        "synthetic",
    )


def measure(config: TrainConfig, *, steps: int, warmup: int) -> Timing:
    """Seconds per training step (the loader's batch and the optimizer step) and per evaluated
    image of ``config`` on its device, after ``warmup`` untimed steps (with ``cuda_graph``, at
    least the eager steps and the capture)."""
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(config, Path(tmp), splits=synthetic_splits(config), progress=False)
        loader = trainer.loader
        sync = torch.cuda.synchronize if trainer.device.type == "cuda" else (lambda: None)
        if config.cuda_graph:
            warmup = max(warmup, WARMUP_STEPS + 1)

        def run_steps(count: int) -> None:
            # Epochs of 2 steps: the synthetic training set holds two batches.
            for _ in range(-(-count // 2)):
                for x, y, weight in loader.batches(1, 2):
                    trainer.train_step(x, y, weight)

        run_steps(warmup)
        sync()
        start = time.perf_counter()
        run_steps(steps)
        sync()
        step_s = (time.perf_counter() - start) / (2 * -(-steps // 2))
        trainer.evaluate(loader.x_valid, loader.y_valid)
        start = time.perf_counter()
        trainer.evaluate(loader.x_valid, loader.y_valid)
        eval_image_s = (time.perf_counter() - start) / len(loader.y_valid)
    return Timing(step_s, eval_image_s)


def project_grid(
    params_path: str | Path,
    *,
    runs: list[str] | None = None,
    device: str | None = None,
    steps: int = 6,
    warmup: int = 2,
    echo: bool = True,
) -> list[RunProjection]:
    """Each run's projected duration on this machine (``device`` overrides the grid's).

    Args:
        params_path: the grid (``params.yaml``).
        runs: the runs to project (default: all).
        device: the device to measure on (default: each run's setting).
        steps: timed training steps per distinct setting (rounded down to even).
        warmup: untimed steps before (compilation happens there).
        echo: print each measurement as it is made.
    """
    params = load_params(params_path)
    names = runs or list(params["runs"])
    timings: dict[tuple, Timing] = {}
    projections = []
    for name in names:
        seeds = run_seeds(params, params_path, name)
        config = run_config(params_path, name, seeds[0])
        if device is not None:
            config = dataclasses.replace(config, device=device)
        key = (config.device, *(getattr(config, f) for f in SPEED_FIELDS))
        if key not in timings:
            timings[key] = measure(config, steps=max(steps, 2), warmup=warmup)
            if echo:
                t = timings[key]
                print(
                    f"{name}: {1000 * t.step_s:.1f} ms per step of {config.batch_size} "
                    f"({config.batch_size / t.step_s:,.0f} images/s)",
                    flush=True,
                )
        timing = timings[key]
        n_train, n_valid = image_counts(config)
        run_steps = total_steps(config, n_train, n_continue=n_train + n_valid)
        # Validated epochs: those on the training split (continued epochs are not validated).
        validated = -(-total_steps(config, n_train) // epoch_steps(config, n_train))
        if config.continue_epochs:
            validated = config.epochs
        epochs = validated + config.continue_epochs
        per_seed = run_steps * timing.step_s + validated * n_valid * timing.eval_image_s
        projections.append(
            RunProjection(name, len(seeds), run_steps, epochs, n_valid, len(seeds) * per_seed)
        )
    return projections


def duration(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


def table(projections: list[RunProjection]) -> str:
    """A markdown table of the projections and their total."""
    lines = ["| run | seeds | steps per seed | epochs | projected |", "|---|---|---|---|---|"]
    for p in projections:
        lines.append(f"| {p.run} | {p.seeds} | {p.steps:,} | {p.epochs} | {duration(p.seconds)} |")
    total = sum(p.seconds for p in projections)
    return "\n".join(lines) + f"\n\nWhole grid, one run at a time: {duration(total)}\n"
