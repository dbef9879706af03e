"""Packing a folder of class-named images into an archive in CIFAR-10's official byte format.

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


def read_image(path: Path) -> np.ndarray:
    """One 32x32 image as a CIFAR row: the R plane, then G, then B, row-major."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            if img.size != (32, 32):
                raise DataError(f"{path}: image is {img.size[0]}x{img.size[1]}, expected 32x32")
            rgb = np.asarray(img.convert("RGB"), dtype=np.uint8)
    except DataError:
        raise
    except (OSError, Image.DecompressionBombError) as e:
        raise DataError(f"{path}: cannot be read as an image ({e})") from e
    return rgb.transpose(2, 0, 1).reshape(RECORD_SIZE)


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
        "data": np.stack([read_image(path) for path, _ in entries]),
        "filenames": [str(path.relative_to(root)) for path, _ in entries],
    }
    return dump_py2_pickle(batch)
