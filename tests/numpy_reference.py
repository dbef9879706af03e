"""The seed's per-image augmentation (its Fig. 1) in numpy, one image at a time: the reference
the tests hold the batched torch path of ``resnet_repro.image_utils`` to. Random draws come
from a ``numpy.random.Generator``."""

import numpy as np

from resnet_repro.image_utils import NUM_OFFSETS, PAD, SIZE


def _check_image(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray):
        raise ValueError(f"expected a numpy array [32, 32, 3], got {type(image).__name__}")
    if image.shape != (SIZE, SIZE, 3):
        raise ValueError(f"expected an image of shape [32, 32, 3], got shape {list(image.shape)}")
    if image.dtype != np.uint8 and not np.issubdtype(image.dtype, np.floating):
        raise ValueError(f"expected a uint8 or float image, got dtype {image.dtype}")
    if image.dtype != np.uint8 and not np.isfinite(image).all():
        raise ValueError(f"image of dtype {image.dtype} holds NaN or inf values")


def crop_flip_image(image: np.ndarray, offset: tuple[int, int], flip: bool) -> np.ndarray:
    """The 32x32 window at ``offset`` (row, column) of the zero-padded ``[32, 32, 3]`` image,
    mirrored left-right if ``flip``."""
    row, col = offset
    if not (0 <= row < NUM_OFFSETS and 0 <= col < NUM_OFFSETS):
        raise ValueError(f"crop offset must lie in 0..{NUM_OFFSETS - 1}, got {offset}")
    padded = np.pad(image, ((PAD, PAD), (PAD, PAD), (0, 0)), mode="constant")
    window = padded[row : row + SIZE, col : col + SIZE, :]
    return window[:, ::-1, :] if flip else window


def standardize_image(image: np.ndarray) -> np.ndarray:
    """Per-channel ``(x - mean) / std`` over HxW of a ``[32, 32, 3]`` image, as float32.

    Statistics are computed in float64 on the centred values, so near-constant float channels
    stay accurate; a channel whose population std is 0 becomes zeros.
    """
    x = image.astype(np.float64)
    centred = x - x.mean(axis=(0, 1))
    std = np.sqrt((centred**2).mean(axis=(0, 1)))
    # A rounded mean leaves a constant float channel with a tiny non-zero std; test constancy
    # exactly instead.
    varies = (x.max(axis=(0, 1)) > x.min(axis=(0, 1))) & (std > 0)
    return np.where(varies, centred / np.where(varies, std, 1.0), 0.0).astype(np.float32)


def preprocess_image(image: np.ndarray, training: bool, rng: np.random.Generator) -> np.ndarray:
    """Augment (if ``training``) and standardize one ``[32, 32, 3]`` image; float32 result.

    Random draws, in this order: the offset ``rng.integers(0, 9, size=2)`` (row, column),
    then the flip ``rng.random() < 0.5``. Nothing is drawn when ``training`` is False.
    """
    _check_image(image)
    if training:
        row, col = rng.integers(0, NUM_OFFSETS, size=2)
        flip = bool(rng.random() < 0.5)
        image = crop_flip_image(image, (int(row), int(col)), flip)
    return standardize_image(image)


def parse_record(record: np.ndarray, training: bool, rng: np.random.Generator) -> np.ndarray:
    """A CIFAR row of 3072 values (R plane, G plane, B plane, each row-major 32x32) ->
    preprocessed ``[3, 32, 32]`` float32."""
    record = np.asarray(record)
    if record.shape != (3 * SIZE * SIZE,):
        raise ValueError(f"expected a CIFAR record of shape [3072], got shape {list(record.shape)}")
    image = record.reshape(3, SIZE, SIZE).transpose(1, 2, 0)
    return preprocess_image(image, training, rng).transpose(2, 0, 1)
