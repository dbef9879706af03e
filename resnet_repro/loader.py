"""The training data on the device and the batches drawn from it: each epoch's order, the
crop-and-flip, the normalization, each process's share, the two seeded generators behind
them (whose states every checkpoint holds), and a step's geometry: global batch, each
process's share, its BN groups (``BatchGeometry``). The data's checks live here, where the
arrays are made.

As airbench's loader: the images stay on the device as uint8; a step gathers its batch,
augments and normalizes it there. No per-image Python, no worker processes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from resnet_repro.cifar import DataError
from resnet_repro.config import ConfigError, TrainConfig
from resnet_repro.data import Splits
from resnet_repro.distributed import Distributed
from resnet_repro.image_utils import Normalization, draw_crop_flip
from resnet_repro.runtime import to_device


def stream_seed(seed: int, stream: str) -> int:
    """An independent 63-bit seed per named random stream of a run."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{stream}".encode()).digest()[:8], "little") >> 1


@dataclass(frozen=True)
class BatchGeometry:
    """A step's images: ``batch_size`` in all, each of ``world_size`` processes a share, each
    share forwarded as BN groups of ``group_images`` (0: one group), one micro-batch each, with
    the gradients accumulated before the optimizer step. Every BN thus normalizes over one
    group, as on He et al.'s two GPUs of 64 images each, on any number of processes."""

    batch_size: int
    world_size: int
    group_images: int

    def check(self) -> None:
        """The global batch splits into whole groups over the processes."""
        group, world, batch = self.group_images, self.world_size, self.batch_size
        shard = batch // world
        if group and batch >= group and shard < group:
            raise ConfigError(
                f"bn_group_images {group}: {world} processes share batch_size {batch}, "
                f"{shard} images each, fewer than a group; run at most {batch // group} processes"
            )
        if group and shard > group and batch % (group * world):
            raise ConfigError(
                f"bn_group_images {group}: batch_size {batch} over {world} processes does not "
                f"split into whole groups of {group}; run {batch // group} processes or a "
                "divisor of it"
            )

    def groups(self, images: int) -> int:
        """How many BN groups a process's ``images`` of a step form: whole groups of
        ``group_images`` (a step's last, smaller batch: as many near-equal parts as a full
        one would have, as its images spread over that many devices)."""
        return max(1, -(-images // self.group_images)) if self.group_images else 1

    def micro_batch(self, images: int) -> int:
        """The images of one micro-batch of a process's ``images`` of a full step: what a
        compiled network is made for."""
        return images // self.groups(images)

    def micro_batches(
        self, x: Tensor, y: Tensor, weight: float = 1.0
    ) -> Iterator[tuple[Tensor, Tensor, float]]:
        """A process's share of a step as its micro-batches, each with its weight in the step's
        loss: its share of the process's images times ``weight``, the process's share of the
        global batch (so the accumulated gradient is the global batch's mean gradient)."""
        groups = self.groups(len(x))
        for xg, yg in zip(x.chunk(groups), y.chunk(groups), strict=True):
            yield xg, yg, weight * len(yg) / len(y)


class DeviceLoader:
    """Batches of one run's training images, on ``device``.

    An epoch up to ``config.epochs`` draws from the training split; a continued epoch
    (``continue_epochs``) from every training image: the training split, then the validation
    split, in the archive's order. The validation images evaluated each epoch are here too.
    """

    def __init__(
        self, splits: Splits, config: TrainConfig, device: torch.device, dist: Distributed
    ) -> None:
        self.config, self.device, self.dist = config, device, dist
        self.geometry = BatchGeometry(config.batch_size, dist.world_size, config.bn_group_images)
        self.geometry.check()
        check_data(splits, config)
        # From the training images only, as the papers' per-pixel mean; stored with the run.
        self.normalize = Normalization.fit(config.normalization, splits.x_train).to(device)
        self.order_gen = torch.Generator().manual_seed(stream_seed(config.seed, "order"))
        self.augment_gen = torch.Generator(device=device).manual_seed(
            stream_seed(config.seed, "augment")
        )
        self.x_train, self.y_train = to_device(splits.x_train, splits.y_train, device)
        self.x_all, self.y_all = self.x_train, self.y_train
        if config.continue_epochs and len(splits.y_valid):
            self.x_all, self.y_all = to_device(
                np.concatenate([splits.x_train, splits.x_valid]),
                np.concatenate([splits.y_train, splits.y_valid]),
                device,
            )
        evaluated = slice(config.limit_eval_images or None)
        self.x_valid, self.y_valid = to_device(
            splits.x_valid[evaluated], splits.y_valid[evaluated], device
        )

    @property
    def n_train(self) -> int:
        return len(self.y_train)

    @property
    def n_all(self) -> int:
        """The continued epochs' images (the training split alone when nothing continues)."""
        return len(self.y_all)

    def continued(self, epoch: int) -> bool:
        return epoch > self.config.epochs

    def images(self, epoch: int) -> int:
        return self.n_all if self.continued(epoch) else self.n_train

    def batches(self, epoch: int, steps: int) -> Iterator[tuple[Tensor, Tensor, float]]:
        """``steps`` batches of epoch ``epoch``, from a new permutation of its images: this
        process's share of each, augmented and normalized, and the share's weight in the
        global batch's mean loss (1 in one process)."""
        x_epoch, y_epoch = (
            (self.x_all, self.y_all) if self.continued(epoch) else (self.x_train, self.y_train)
        )
        # Drawn now, not at the first batch: the order is the epoch's, however it is consumed.
        order = torch.randperm(len(y_epoch), generator=self.order_gen).to(self.device)
        return self._shares(order, x_epoch, y_epoch, steps)

    def _shares(
        self, order: Tensor, x_epoch: Tensor, y_epoch: Tensor, steps: int
    ) -> Iterator[tuple[Tensor, Tensor, float]]:
        bs, world = self.config.batch_size, self.dist.world_size
        for b in range(steps):
            batch = order[b * bs : (b + 1) * bs]
            # Every rank draws the whole global batch's augmentation, so the draws do not
            # depend on the world size, and keeps its own slice.
            offsets, flips = draw_crop_flip(len(batch), self.augment_gen)
            shard = self.dist.shard(len(batch))
            idx = batch[shard]
            x = self.normalize.train_input(x_epoch[idx], offsets[shard], flips[shard])
            if self.config.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, y_epoch[idx], len(idx) * world / len(batch)

    def state(self) -> dict[str, Any]:
        return {"order": self.order_gen.get_state(), "augment": self.augment_gen.get_state().cpu()}

    def load_state(self, rng: dict[str, Any]) -> None:
        self.order_gen.set_state(rng["order"])
        # Every generator, a CUDA one included, takes its state as a CPU ByteTensor.
        self.augment_gen.set_state(rng["augment"].cpu())


def check_data(splits: Splits, config: TrainConfig) -> None:
    """A training set a step can be drawn from, and labels the network has outputs for."""
    if len(splits.y_train) == 0:
        raise DataError("the training set is empty")
    if config.batch_size > len(splits.y_train):
        raise ConfigError(
            f"batch_size {config.batch_size} is larger than the training set "
            f"({len(splits.y_train)} images)"
        )
    for name, y in (("train", splits.y_train), ("valid", splits.y_valid), ("test", splits.y_test)):
        if len(y) and (y.min() < 0 or y.max() >= config.num_classes):
            raise DataError(
                f"{name} labels span {y.min()}..{y.max()}, outside 0..{config.num_classes - 1}"
            )
