"""Augmentation: batched ``augment_batch`` + ``standardize`` vs the seed's per-image numpy loop.

Target on CPU: >= 15x the per-image loop's images/s. The batched path runs in training-batch
sized chunks (512 images), as the training loop does, so each chunk's passes stay in cache.
"""

import numpy as np
import torch

from resnet_repro.image_utils import augment_batch, standardize

N = 10_000
CHUNK = 512


def seed_preprocess(image, rng):
    """The seed's Fig. 1 (with a seeded generator instead of the global RNG)."""
    pad = 4
    image = np.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode="constant")
    row, col = rng.integers(0, 2 * pad + 1, size=2)
    sub_image = image[row : row + 32, col : col + 32, :]
    image = np.fliplr(sub_image) if rng.random() > 0.5 else sub_image
    mean = np.mean(image, axis=(0, 1))
    std = np.std(image, axis=(0, 1))
    return (image - mean) / std


def test_augmentation_vs_per_image_loop(compare, device):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (N, 3, 32, 32), dtype=np.uint8)
    hwc = images.transpose(0, 2, 3, 1)
    batch = torch.from_numpy(images).to(device)
    gen = torch.Generator(device=device).manual_seed(0)

    def batched():
        for start in range(0, N, CHUNK):
            standardize(augment_batch(batch[start : start + CHUNK], gen))

    def per_image():
        with np.errstate(divide="ignore", invalid="ignore"):
            for image in hwc:
                seed_preprocess(image, rng)

    ratio = compare("augment", batched, per_image, device=device, images=N, rounds=3)
    if ratio is not None and device == "cpu":
        assert ratio >= 15, f"batched augmentation only {ratio:.1f}x the per-image loop"
