"""How long a run is and how fast it learns at each step: steps per epoch, total steps, and
the learning-rate factor of every schedule (constant, multistep with warm-up, cosine,
one-cycle).

Steps are optimizer steps, counted from 0; ``lr_factor(config, s, total)`` multiplies
``config.lr`` for step ``s``.
"""

from __future__ import annotations

import math

from resnet_repro.config import TrainConfig

# One-cycle schedule: the learning rate ramps from ONECYCLE_START x lr to lr over the first
# ONECYCLE_RAMP of the steps, then falls linearly to 0.
ONECYCLE_START = 0.1
ONECYCLE_RAMP = 0.2


def lr_factor(config: TrainConfig, step: int, total_steps: int) -> float:
    """Multiplier on ``config.lr`` for the optimizer step ``step`` (0-based)."""
    if config.schedule == "constant":
        return 1.0
    if config.schedule == "multistep":
        if config.warms_up and step < config.warmup_iters:
            return config.warmup_lr / config.lr
        return config.lr_decay ** sum(step >= m for m in config.milestones)
    progress = step / max(total_steps, 1)
    if config.schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    if progress < ONECYCLE_RAMP:
        return ONECYCLE_START + (1.0 - ONECYCLE_START) * progress / ONECYCLE_RAMP
    return max(0.0, (1.0 - progress) / (1.0 - ONECYCLE_RAMP))


def get_lr(config: TrainConfig, step: int, total_steps: int) -> float:
    """The learning rate of optimizer step ``step`` (0-based): ``config.lr`` times the factor."""
    return config.lr * lr_factor(config, step, total_steps)


def steps_per_epoch(
    n_train: int, batch_size: int, world_size: int = 1, *, drop_last: bool = False
) -> int:
    """Full batches plus the remainder, unless ``drop_last`` or the remainder would leave a
    rank fewer than two images (BN cannot train on a batch of one)."""
    full, rest = divmod(n_train, batch_size)
    return full + (rest >= 2 * world_size and not drop_last)


def epoch_steps(config: TrainConfig, n_train: int, world_size: int = 1) -> int:
    """Optimizer steps of one epoch of the run: ``steps_per_epoch``, capped by a rehearsal's
    ``limit_train_batches``."""
    steps = steps_per_epoch(n_train, config.batch_size, world_size, drop_last=config.drop_last)
    return min(steps, config.limit_train_batches) if config.limit_train_batches else steps


def total_steps(
    config: TrainConfig, n_train: int, world_size: int = 1, *, n_continue: int = 0
) -> int:
    """Optimizer steps of the whole run: ``epochs`` epochs of ``n_train`` images, capped by
    ``max_iters`` if set, then ``continue_epochs`` epochs of ``n_continue`` images (all the
    training images, validation ones included)."""
    steps = config.epochs * epoch_steps(config, n_train, world_size)
    if config.max_iters:
        steps = min(steps, config.max_iters)
    if config.continue_epochs:
        steps += config.continue_epochs * epoch_steps(config, n_continue, world_size)
    return steps
