"""CIFAR preprocessing: the crop-and-flip augmentation, deterministic, in its batched tensor
form used by the training loop, and the two normalizations, each in its recipe's order.

Training augmentation: zero-pad 4 pixels on every side, crop a 32x32 window at an offset drawn
uniformly from {0..8}^2, flip horizontally with probability 1/2. The normalization
(``Normalization``, a recipe setting stored with each run) decides the order:

* ``per_image`` (the seed's Fig. 1): crop the zero-padded raw image, then standardize the crop
  per image and channel (mean over HxW, population std); a constant channel becomes zeros where
  the seed divided by zero.
* ``pixel_mean`` (He et al. 2015): pixel values scaled to [0, 1], minus the training set's
  per-pixel mean, then padded with zeros, cropped and flipped, as the authors' released
  pipeline (fb.resnet.torch ``datasets/cifar10.lua``: ColorNormalize, HorizontalFlip,
  RandomCrop(32, 4) padding with zeros): the border is the mean colour, and each pixel loses the
  mean of its own position. The papers give no scale; the BN after the first convolution makes
  the network insensitive to it (except through that layer's weight decay).

``crop_flip`` / ``augment_batch`` / ``standardize`` work on a batch ``[N, 3, 32, 32]`` as a
torch tensor on any device, random draws from a ``torch.Generator`` on that device; no Python
loop over images. (The tests hold them to a per-image numpy reference of the seed's Fig. 1,
``tests/numpy_reference.py``.)

No function here reads the global RNG.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

PAD = 4
SIZE = 32
NUM_OFFSETS = 2 * PAD + 1


def _check_batch(images: Tensor) -> None:
    if not isinstance(images, Tensor):
        raise ValueError(f"expected a tensor [N, 3, 32, 32], got {type(images).__name__}")
    if images.ndim != 4 or tuple(images.shape[1:]) != (3, SIZE, SIZE):
        raise ValueError(
            f"expected a batch of shape [N, 3, 32, 32], got shape {list(images.shape)}"
        )
    if images.dtype != torch.uint8 and not images.is_floating_point():
        raise ValueError(f"expected a uint8 or float batch, got dtype {images.dtype}")
    # uint8 (the training loop's case) needs no check, so the hot path never syncs a device.
    if images.is_floating_point() and not torch.isfinite(images).all():
        raise ValueError(f"batch of dtype {images.dtype} holds NaN or inf values")


def crop_flip(images: Tensor, offsets: Tensor, flips: Tensor) -> Tensor:
    """Image i is cropped at ``offsets[i]`` (row, column into the
    zero-padded image, each 0..8) and mirrored where ``flips[i]``. Keeps dtype and device."""
    _check_batch(images)
    n = images.shape[0]
    if offsets.shape != (n, 2) or offsets.dtype.is_floating_point or offsets.dtype == torch.bool:
        raise ValueError(
            f"offsets must be an integer tensor [{n}, 2], got {offsets.dtype} {list(offsets.shape)}"
        )
    if flips.shape != (n,) or flips.dtype != torch.bool:
        raise ValueError(
            f"flips must be a bool tensor [{n}], got {flips.dtype} {list(flips.shape)}"
        )
    if n and (offsets.min() < 0 or offsets.max() >= NUM_OFFSETS):
        raise ValueError(f"offsets must lie in 0..{NUM_OFFSETS - 1}")
    return crop_flip_unchecked(images, offsets, flips)


def crop_flip_unchecked(images: Tensor, offsets: Tensor, flips: Tensor) -> Tensor:
    """``crop_flip`` without validation, for the training loop, whose parameters come from
    ``draw_crop_flip``: validating them would make every step wait on the device."""
    n = images.shape[0]
    offsets = offsets.to(device=images.device, dtype=torch.long)
    flips = flips.to(images.device)
    padded = torch.nn.functional.pad(images, (PAD, PAD, PAD, PAD))
    # A view of every 32x32 window: [N, 3, 9, 9, 32, 32]. Indexing it with per-image offsets
    # copies each image's window once; the index tensors hold one entry per image.
    windows = padded.unfold(2, SIZE, 1).unfold(3, SIZE, 1)
    batch = torch.arange(n, device=images.device)
    out = windows[batch, :, offsets[:, 0], offsets[:, 1]]
    return torch.where(flips[:, None, None, None], out.flip(3), out)


def augment_batch(images: Tensor, generator: torch.Generator) -> Tensor:
    """Random crop + flip of every image of the batch, parameters drawn from ``generator``
    (which must live on the batch's device): offsets first, then flips."""
    _check_batch(images)
    if generator.device.type != images.device.type:
        raise ValueError(
            f"generator is on {generator.device}, images on {images.device}: they must match"
        )
    offsets, flips = draw_crop_flip(images.shape[0], generator)
    return crop_flip_unchecked(images, offsets, flips)


def draw_crop_flip(n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """The random parameters ``augment_batch`` draws for ``n`` images, on the generator's
    device: offsets ``[n, 2]`` in 0..8 first, then flips ``[n]``."""
    offsets = torch.randint(NUM_OFFSETS, (n, 2), generator=generator, device=generator.device)
    flips = torch.rand(n, generator=generator, device=generator.device) < 0.5
    return offsets, flips


def standardize(images: Tensor) -> Tensor:
    """Per-image, per-channel standardization of a batch ``[N, 3, 32, 32]``, as float32.

    A constant channel becomes zeros. uint8 input (the training loop's case) is computed in
    float32, where its mean and centred values are exact, in place to save passes over memory;
    float input in float64, so that tiny or near-constant channels neither underflow nor lose
    their spread to rounding.
    """
    _check_batch(images)
    if images.dtype == torch.uint8:
        x = images.to(torch.float32)
        x -= x.mean(dim=(2, 3), keepdim=True)
        std = torch.linalg.vector_norm(x, dim=(2, 3), keepdim=True) / SIZE
        return x.mul_(torch.where(std > 0, 1.0 / std, 0.0))
    x = images.to(torch.float64)
    centred = x - x.mean(dim=(2, 3), keepdim=True)
    std = centred.square().mean(dim=(2, 3), keepdim=True).sqrt()
    # A rounded mean leaves a constant float channel with a tiny non-zero std.
    flat = x.flatten(2)
    varies = (std > 0) & (flat.amax(dim=2) > flat.amin(dim=2))[..., None, None]
    return torch.where(varies, centred / torch.where(varies, std, 1.0), 0.0).to(torch.float32)


NORMALIZATIONS = ("per_image", "pixel_mean")


@dataclass(frozen=True)
class Normalization:
    """How uint8 images ``[N, 3, 32, 32]`` become network inputs. Training computes it from
    the training images only (``fit``) and stores it in every checkpoint (``state``), so
    evaluation and prediction apply the transform the network was trained with."""

    kind: str = "per_image"
    pixel_mean: Tensor | None = None  # float32 [3, 32, 32] in [0, 1], for "pixel_mean"

    @classmethod
    def fit(cls, kind: str, train_rows: np.ndarray) -> Normalization:
        """The normalization ``kind`` for training images given as uint8 rows ``[N, 3072]``."""
        if kind not in NORMALIZATIONS:
            raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {kind!r}")
        if kind == "per_image":
            return cls(kind)
        if len(train_rows) == 0:
            raise ValueError("pixel_mean normalization needs at least one training image")
        mean = np.mean(train_rows, axis=0) / 255.0  # float64, as numpy's mean of integers
        return cls(kind, torch.from_numpy(mean.astype(np.float32)).view(3, SIZE, SIZE))

    def to(self, device: torch.device) -> Normalization:
        if self.pixel_mean is None:
            return self
        return Normalization(self.kind, self.pixel_mean.to(device))

    def __call__(self, images: Tensor) -> Tensor:
        """The float32 network input for a batch of images."""
        if self.kind == "per_image":
            return standardize(images)
        _check_batch(images)
        assert self.pixel_mean is not None
        return images.to(torch.float32).div_(255.0).sub_(self.pixel_mean)

    def train_input(self, images: Tensor, offsets: Tensor, flips: Tensor) -> Tensor:
        """The network input for training images cropped at ``offsets`` and flipped where
        ``flips`` (as ``crop_flip_unchecked``), in this normalization's order (module
        docstring): ``per_image`` after the crop, ``pixel_mean`` before the zero padding."""
        if self.kind == "per_image":
            return self(crop_flip_unchecked(images, offsets, flips))
        return crop_flip_unchecked(self(images), offsets, flips)

    def state(self) -> dict[str, Any]:
        """Plain values and a CPU tensor, for a checkpoint."""
        mean = None if self.pixel_mean is None else self.pixel_mean.cpu()
        return {"kind": self.kind, "pixel_mean": mean}

    @classmethod
    def from_state(cls, state: dict[str, Any] | None) -> Normalization:
        """The normalization a checkpoint recorded; ``per_image`` for checkpoints written
        before the setting existed (all of which used it)."""
        if state is None:
            return cls()
        kind, mean = state.get("kind"), state.get("pixel_mean")
        if kind not in NORMALIZATIONS or (kind == "pixel_mean") != isinstance(mean, Tensor):
            raise ValueError(f"not a normalization record: kind {kind!r}")
        if mean is not None and tuple(mean.shape) != (3, SIZE, SIZE):
            raise ValueError(f"pixel mean of shape {list(mean.shape)}, expected [3, 32, 32]")
        return cls(kind, mean)
