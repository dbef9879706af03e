"""Image files into CIFAR records: the one image reader (``read_image``, which ``predict`` uses
too) and the packing of a folder of class-named images into an archive in CIFAR-10's official
byte format.

The input is the ImageFolder layout, ``<root>/<class>/*.png|jpg|jpeg``, with ten classes of
32x32 images (the project's networks and loader are CIFAR-10's). Each class is split on its
own, with a generator seeded by ``seed``, into training and test images (a stratified split:
every class keeps the same test fraction); the training images fill ``data_batch_1`` … ``_5``
and the test images ``test_batch``, shuffled with the same generator, as the official archive
lays them out. The archive is then read back through ``load_cifar10``, the verified path every
archive takes, before it is moved under its final name, so a packed archive that the project
cannot load is never left behind.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from resnet_repro.archive_writer import dump_py2_pickle, write_tar_gz
from resnet_repro.cifar import BATCH_DIR, LABEL_NAMES, NUM_CLASSES, RECORD_SIZE, DataError, md5_of
from resnet_repro.data import load_cifar10

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
TRAIN_BATCH_COUNT = 5


@dataclass(frozen=True)
class Packed:
    """What ``pack_image_folder`` wrote: the archive, its md5 and the split's sizes."""

    path: Path
    md5: str
    classes: tuple[str, ...]
    train_images: int
    test_images: int


def class_folders(root: Path) -> list[Path]:
    """The class folders of ``root``, in CIFAR-10's label order when they carry its names,
    otherwise sorted by name."""
    if not root.is_dir():
        raise DataError(f"{root}: no such folder (expected <root>/<class>/*.png|jpg)")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(folders) != NUM_CLASSES:
        names = ", ".join(p.name for p in folders) or "none"
        raise DataError(
            f"{root}: expected {NUM_CLASSES} class folders (<root>/<class>/*.png|jpg), found "
            f"{len(folders)}: {names}"
        )
    if {p.name for p in folders} == set(LABEL_NAMES):
        return [root / name for name in LABEL_NAMES]
    return folders


# Modes whose values need more than 8 bits: the full range of each maps onto 0..255.
WIDE_MODES = {"I;16": 65535, "I;16B": 65535, "I;16L": 65535, "I;16N": 65535, "I": 2**31 - 1}
# Modes Pillow cannot turn into RGB faithfully by itself.
REFUSED_MODES = {"LAB": "CIE L*a*b*", "HSV": "HSV"}


def read_image(path: str | os.PathLike, *, resize: bool = False) -> np.ndarray:
    """One image file as uint8 ``[32, 32, 3]`` RGB: the one reader of ``pack`` and ``predict``.

    8-bit modes (1, L, P, RGB, CMYK, YCbCr) convert as Pillow converts them; transparency
    (RGBA, LA, PA, a palette's) is composited over white, as a viewer shows it; 16-bit and
    32-bit integer grey scale their type's range onto 0..255 (round(v * 255 / max));
    floating-point grey scales 0..1. Negative integers, floats outside 0..1 and colour spaces
    Pillow cannot convert (LAB, HSV) are refused with one line. An image other than 32x32 is
    refused, or with ``resize`` scaled to 32x32 (bilinear).
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as img:
            img.load()
            rgb = _rgb(img, path)
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as e:
        raise DataError(f"{path}: cannot be read as an image ({e})") from e
    if rgb.size != (32, 32):
        if not resize:
            raise DataError(f"{path}: image is {rgb.size[0]}x{rgb.size[1]}, expected 32x32")
        rgb = rgb.resize((32, 32), Image.Resampling.BILINEAR)
    return np.asarray(rgb, dtype=np.uint8)


def _rgb(img, path: Path):
    from PIL import Image

    if img.mode in REFUSED_MODES:
        raise DataError(
            f"{path}: {REFUSED_MODES[img.mode]} image; convert it to RGB (e.g. save it as an "
            "8-bit RGB PNG) first"
        )
    if img.mode in WIDE_MODES or img.mode == "F":
        values = np.asarray(img, dtype=np.float64)
        top = WIDE_MODES.get(img.mode, 1.0)
        low, high = (float(values.min()), float(values.max())) if values.size else (0, 0)
        if not (np.isfinite(values).all() and low >= 0 and high <= top):
            raise DataError(
                f"{path}: {img.mode} image with values {low:g}..{high:g}, outside 0..{top:g}; "
                "save it as an 8-bit image"
            )
        grey = np.round(values * (255 / top)).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")


def pack_image_folder(
    root: str | os.PathLike,
    out: str | os.PathLike,
    *,
    test_fraction: float = 1 / 6,
    seed: int = 0,
) -> Packed:
    """Pack ``root`` (``<class>/*.png|jpg``) into ``out``, an archive in the official format,
    with a seeded split of each class's images: ``test_fraction`` of them (rounded) go to the
    test batch, the rest to the five training batches.

    Args:
        root: the folder of class folders (ten classes of 32x32 images).
        out: the archive to write (e.g. ``cifar-10-python.tar.gz``); replaced atomically.
        test_fraction: share of each class held out for testing, in [0, 1).
        seed: seed of the split and of the order within the batches.
    """
    root, out = Path(root), Path(out)
    if out.is_dir():
        raise DataError(
            f"{out} is a folder; name the archive file to write, e.g. {out / 'archive.tar.gz'}"
        )
    if not 0 <= test_fraction < 1:
        raise DataError(f"test_fraction must be in [0, 1), got {test_fraction}")
    folders = class_folders(root)
    rng = np.random.default_rng(seed)
    train: list[tuple[Path, int]] = []
    test: list[tuple[Path, int]] = []
    for label, folder in enumerate(folders):
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if len(files) < 2:
            raise DataError(f"{folder}: {len(files)} images; each class needs at least 2")
        order = rng.permutation(len(files))
        n_test = round(len(files) * test_fraction)
        test += [(files[i], label) for i in order[:n_test]]
        train += [(files[i], label) for i in order[n_test:]]
    members: dict[str, bytes] = {}
    chunks = np.array_split(rng.permutation(len(train)), TRAIN_BATCH_COUNT)
    for i, chunk in enumerate(chunks, start=1):
        entries = [train[j] for j in chunk]
        members[f"{BATCH_DIR}/data_batch_{i}"] = batch_bytes(
            entries, root, f"training batch {i} of {TRAIN_BATCH_COUNT}"
        )
    test_order = rng.permutation(len(test))
    members[f"{BATCH_DIR}/test_batch"] = batch_bytes(
        [test[j] for j in test_order], root, "testing batch 1 of 1"
    )
    meta = {
        "num_cases_per_batch": len(chunks[0]),
        "label_names": [p.name for p in folders],
        "num_vis": RECORD_SIZE,
    }
    members[f"{BATCH_DIR}/batches.meta"] = dump_py2_pickle(meta)
    staged = out.with_name(f".{out.name}.packing")
    write_tar_gz(staged, members)
    try:
        load_cifar10(staged)
        os.replace(staged, out)
    finally:
        staged.unlink(missing_ok=True)
    return Packed(out, md5_of(out), tuple(p.name for p in folders), len(train), len(test))


def batch_bytes(entries: list[tuple[Path, int]], root: Path, label: str) -> bytes:
    if not entries:
        raise DataError(f"{root}: too few images to fill every batch ({label} is empty)")
    batch = {
        "batch_label": label,
        "labels": [label_ for _, label_ in entries],
        "data": np.stack(
            [read_image(path).transpose(2, 0, 1).reshape(RECORD_SIZE) for path, _ in entries]
        ),
        "filenames": [str(path.relative_to(root)) for path, _ in entries],
    }
    return dump_py2_pickle(batch)
