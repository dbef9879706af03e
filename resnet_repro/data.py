"""CIFAR-10 from disk into arrays: restricted unpickling of the batches, a decoded-array cache,
and the train/validation split.

Guarantees:

* Batches are Python-2 pickles. They are read by ``RestrictedUnpickler``, which resolves only
  the globals a numpy array needs, so a malicious batch raises ``DataError`` and runs nothing.
* The source (an archive, or a folder ``fetch`` extracted) is read through ``fetch``'s member
  checks, so links and unexpected names are refused here too.
* Every problem with the data raises ``DataError`` naming the file and what was wrong.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from resnet_repro.atomic import write_bytes_atomic
from resnet_repro.cifar import (
    BATCH_DIR,
    DATA_MEMBERS,
    NUM_CLASSES,
    OFFICIAL_COUNTS,
    OFFICIAL_MD5,
    OFFICIAL_MEMBER_MD5,
    RECORD_SIZE,
    TRAIN_BATCHES,
    DataError,
    md5_of,
)
from resnet_repro.config import ConfigError, TrainConfig
from resnet_repro.fetch import (
    SOURCE_FILE,
    check_member,
    open_tar,
    read_source,
    reading,
    tar_members,
)


class RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the globals a pickled numpy array needs; anything else is refused before
    it can run."""

    ALLOWED: ClassVar[frozenset[tuple[str, str]]] = frozenset(
        {
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
            ("_codecs", "encode"),
        }
    )

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR batch")
        if name == "_reconstruct":
            return _reconstruct()
        if module == "_codecs":
            import codecs

            return codecs.encode
        return getattr(np, name)


def _reconstruct() -> Any:
    try:
        from numpy._core.multiarray import _reconstruct as fn
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct as fn
    return fn


def load_batch(data: bytes, *, name: str, encoding: str = "bytes") -> dict[str, Any]:
    """Decode one batch file's bytes with ``RestrictedUnpickler``; keys come back as ``str``."""
    try:
        obj = RestrictedUnpickler(io.BytesIO(data), encoding=encoding).load()
    except Exception as e:  # a damaged pickle fails in many ways; all mean the same to us
        raise DataError(f"{name}: cannot be read as a CIFAR batch: {e}") from e
    if not isinstance(obj, dict):
        raise DataError(f"{name}: expected a dict, got {type(obj).__name__}")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _batch_arrays(batch: dict[str, Any], name: str) -> tuple[np.ndarray, np.ndarray]:
    for key in ("data", "labels"):
        if key not in batch:
            raise DataError(f"{name}: no {key!r} entry")
    x, labels = batch["data"], batch["labels"]
    if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 2:
        desc = f"{x.dtype} {list(x.shape)}" if isinstance(x, np.ndarray) else type(x).__name__
        raise DataError(f"{name}: data must be a uint8 array [N, {RECORD_SIZE}], got {desc}")
    if x.shape[1] != RECORD_SIZE:
        raise DataError(f"{name}: data must have {RECORD_SIZE} columns, got shape {list(x.shape)}")
    if x.shape[0] == 0:
        raise DataError(f"{name}: the batch is empty")
    try:
        y = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError) as e:
        raise DataError(f"{name}: labels are not integers ({e})") from e
    if y.shape != (x.shape[0],):
        raise DataError(f"{name}: {x.shape[0]} images but labels of shape {list(y.shape)}")
    bad = (y < 0) | (y >= NUM_CLASSES)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"{name}: label {y[i]} at index {i} is outside 0..{NUM_CLASSES - 1}")
    return x, y


def _read_members(source: Path) -> tuple[dict[str, bytes], str]:
    """The data members' bytes and the source's md5 (the archive's, as recorded by fetch for a
    folder, or computed over the batch files)."""
    if source.is_file():
        members: dict[str, bytes] = {}
        with open_tar(source) as tar:
            for member in tar_members(tar, source):
                base = check_member(member, source)
                if base in DATA_MEMBERS:
                    with reading(source), tar.extractfile(member) as f:
                        members[base] = f.read()
        source_md5 = md5_of(source)
    else:
        folder = source / BATCH_DIR if (source / BATCH_DIR).is_dir() else source
        members = {m: (folder / m).read_bytes() for m in DATA_MEMBERS if (folder / m).is_file()}
        recorded = read_source(folder.parent).get("archive_md5")
        digest = hashlib.md5(b"".join(hashlib.md5(members[m]).digest() for m in sorted(members)))
        source_md5 = recorded or digest.hexdigest()
    missing = [m for m in DATA_MEMBERS if m not in members]
    if missing:
        raise DataError(f"{source}: missing CIFAR-10 files {', '.join(missing)}")
    return members, source_md5


def _is_official(members: dict[str, bytes], source_md5: str) -> bool:
    if source_md5 == OFFICIAL_MD5:
        return True
    return all(hashlib.md5(members[m]).hexdigest() == h for m, h in OFFICIAL_MEMBER_MD5.items())


ARRAY_NAMES = ("x_train", "y_train", "x_test", "y_test")


def load_cifar10(
    source: str | os.PathLike, *, cache_dir: str | os.PathLike | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(x_train, y_train, x_test, y_test)``: uint8 ``[N, 3072]`` rows and int64 labels.

    ``source`` is a CIFAR archive file, a folder holding ``cifar-10-batches-py/``, or that
    folder itself. With ``cache_dir`` the decoded arrays are kept there as ``.npy`` files
    (returned memory-mapped, read-only) together with the source's md5; the cache is rebuilt
    when the source changes. For the official archive the exact counts are checked.
    """
    return load_cifar10_with_md5(source, cache_dir=cache_dir)[0]


def load_cifar10_with_md5(
    source: str | os.PathLike, *, cache_dir: str | os.PathLike | None = None
) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray], str]:
    """``load_cifar10``'s arrays and the md5 of their source (the archive's, as recorded by
    fetch for a folder, or computed over the batch files)."""
    source = Path(source)
    if not source.exists():
        raise DataError(f"{source}: no such file or folder")
    cache = Path(cache_dir) if cache_dir is not None else None
    if cache is not None:
        hit = _load_cache(cache, source)
        if hit is not None:
            return hit
    members, source_md5 = _read_members(source)
    xs, ys = [], []
    for name in TRAIN_BATCHES:
        x, y = _batch_arrays(load_batch(members[name], name=f"{source}:{name}"), f"{source}:{name}")
        xs.append(x)
        ys.append(y)
    x_test, y_test = _batch_arrays(
        load_batch(members["test_batch"], name=f"{source}:test_batch"), f"{source}:test_batch"
    )
    arrays = (np.concatenate(xs), np.concatenate(ys), x_test, y_test)
    if _is_official(members, source_md5):
        _check_official_counts(source, arrays)
    if cache is not None:
        _write_cache(cache, arrays, source_md5, _fingerprint(source))
    return arrays, source_md5


def _check_official_counts(source: Path, arrays: tuple[np.ndarray, ...]) -> None:
    x_train, y_train, x_test, y_test = arrays
    for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        expected = OFFICIAL_COUNTS[split]
        if len(x) != expected:
            raise DataError(
                f"{source}: {len(x)} {split} images, the official archive has {expected}"
            )
        counts = np.bincount(y, minlength=NUM_CLASSES)
        if not np.all(counts == expected // NUM_CLASSES):
            raise DataError(
                f"{source}: {split} images per class are {counts.tolist()}, "
                f"expected {expected // NUM_CLASSES} each"
            )


def _fingerprint(source: Path) -> dict:
    """What identifies the source cheaply: path, size and mtime of the archive or batch files."""
    if source.is_file():
        files = [source]
    else:
        folder = source / BATCH_DIR if (source / BATCH_DIR).is_dir() else source
        files = [folder / m for m in DATA_MEMBERS] + [folder.parent / SOURCE_FILE]
        files = [p for p in files if p.is_file()]
    return {
        "path": str(source.resolve()),
        "files": [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in files],
    }


def _load_cache(cache: Path, source: Path) -> tuple[tuple[np.ndarray, ...], str] | None:
    try:
        meta = json.loads((cache / "meta.json").read_text())
    except (OSError, ValueError):
        return None
    if meta.get("fingerprint") != _fingerprint(source):
        return None
    md5 = meta.get("source_md5", "")
    try:
        arrays = tuple(np.load(cache / f"{n}-{md5}.npy", mmap_mode="r") for n in ARRAY_NAMES)
    except (OSError, ValueError):
        return None
    return arrays, md5


def _write_cache(cache: Path, arrays: tuple[np.ndarray, ...], source_md5: str, fp: dict) -> None:
    """Array files named after the source's md5, then meta.json pointing at them, each written
    atomically: processes filling the same cache at once write identical files, and a reader
    sees either the old or the new meta, with the files it names."""
    cache.mkdir(parents=True, exist_ok=True)
    for name, array in zip(ARRAY_NAMES, arrays, strict=True):
        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(array))
        write_bytes_atomic(cache / f"{name}-{source_md5}.npy", buf.getvalue())
    meta = {"source_md5": source_md5, "fingerprint": fp}
    write_bytes_atomic(cache / "meta.json", json.dumps(meta, indent=2).encode())
    for stale in cache.glob("*.npy"):
        if not stale.name.endswith(f"-{source_md5}.npy"):
            stale.unlink(missing_ok=True)


def train_valid_split(
    x: np.ndarray,
    y: np.ndarray,
    split_index: int | None = 45_000,
    *,
    valid_fraction: float | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The seed's split: the first ``split_index`` examples train, the rest validate;
    ``split_index == N`` trains on all and validates on none (the papers' test-table runs).

    ``valid_fraction`` (0 < f < 1) instead keeps the last ``round(f * N)`` examples for
    validation, for data sets smaller than CIFAR-10's 50,000 training images.
    """
    n = len(x)
    if len(y) != n:
        raise ValueError(f"train_valid_split: {n} images but {len(y)} labels")
    if valid_fraction is not None:
        if not 0.0 < valid_fraction < 1.0:
            raise ValueError(
                f"train_valid_split: valid_fraction must be in (0, 1), got {valid_fraction}"
            )
        split_index = n - round(valid_fraction * n)
    if split_index is None or not 0 < split_index <= n:
        raise ValueError(
            f"train_valid_split: split_index {split_index} is outside 1..{n} (the number of "
            "training examples); use valid_fraction for a small data set"
        )
    return x[:split_index], y[:split_index], x[split_index:], y[split_index:]


@dataclass
class Splits:
    """uint8 images ``[N, 3072]`` and int64 labels of each split, and the source's md5."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_valid: np.ndarray
    y_valid: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source_md5: str


def load_splits(config: TrainConfig) -> Splits:
    """The data ``config.data`` names, split into train/validation as the config says (the
    seed: the first 45k training images train), with the test set. A folder source keeps its
    decoded-array cache beside the batches unless ``config.cache_dir`` names one."""
    source = Path(config.data)
    cache = config.cache_dir or None
    if cache is None and source.is_dir():
        root = source if (source / BATCH_DIR).is_dir() else source.parent
        cache = root / "npy-cache"
    (x, y, x_test, y_test), md5 = load_cifar10_with_md5(source, cache_dir=cache)
    if config.valid_fraction > 0:
        split = train_valid_split(x, y, None, valid_fraction=config.valid_fraction)
    else:
        if config.split_index > len(x):
            raise ConfigError(
                f"split_index {config.split_index} is beyond the {len(x)} training images of "
                f"{source}; set valid_fraction (e.g. 0.1) for a small data set"
            )
        split = train_valid_split(x, y, config.split_index)
    return Splits(*split, np.asarray(x_test), np.asarray(y_test), md5)
