"""CIFAR-10 from disk into arrays: restricted unpickling of the batches, a decoded-array cache,
and the train/validation split.

The cache (``cache_dir``; by default the platform's user cache folder, see ``default_cache_dir``)
keeps the decoded arrays under the digest of the data's content, so it cannot serve other data
than the source holds. A source is mapped to that digest through its files' fingerprint (name,
size, inode, modification and change times: extraction sets the change time, which no tool
can set back), so a source seen before is not read again. Nothing is written into the data's
own folder.

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
import logging
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
    LABEL_NAMES,
    NUM_CLASSES,
    OFFICIAL_COUNTS,
    OFFICIAL_MEMBER_MD5,
    RECORD_SIZE,
    TRAIN_BATCH_MEMBERS,
    DataError,
    md5_of,
    sha256_of,
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

log = logging.getLogger(__name__)


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


def _read_members(source: Path) -> tuple[dict[str, bytes], str, str]:
    """The data members' bytes, the source's md5 (the archive's; for a folder, the archive's
    recorded by fetch when the batches are still those it extracted, else a digest of the batch
    files) and the digest of the content (the archive's md5, or that of the batch files)."""
    if source.is_file():
        members: dict[str, bytes] = {}
        with open_tar(source) as tar:
            for member in tar_members(tar, source):
                base = check_member(member, source)
                if base in DATA_MEMBERS:
                    with reading(source), tar.extractfile(member) as f:
                        members[base] = f.read()
        source_md5 = content = md5_of(source)
    else:
        folder = source / BATCH_DIR if (source / BATCH_DIR).is_dir() else source
        members = {m: (folder / m).read_bytes() for m in DATA_MEMBERS if (folder / m).is_file()}
        member_md5 = {m: hashlib.md5(data).hexdigest() for m, data in members.items()}
        content = hashlib.md5("".join(member_md5[m] for m in sorted(members)).encode()).hexdigest()
        recorded = read_source(folder.parent)
        # fetch's record holds only while the data members are the ones it extracted (another
        # archive extracted over them by hand keeps the old record); the optional ones
        # (readme.html) say nothing of the data.
        extracted = recorded.get("member_md5")
        unchanged = isinstance(extracted, dict) and all(
            extracted.get(m) == member_md5.get(m) for m in DATA_MEMBERS
        )
        source_md5 = recorded.get("archive_md5") if unchanged else content
    missing = [m for m in DATA_MEMBERS if m not in members]
    if missing:
        raise DataError(f"{source}: missing CIFAR-10 files {', '.join(missing)}")
    return members, source_md5, content


def _is_official(members: dict[str, bytes]) -> bool:
    return all(hashlib.md5(members[m]).hexdigest() == h for m, h in OFFICIAL_MEMBER_MD5.items())


ARRAY_NAMES = ("x_train", "y_train", "x_test", "y_test")


def load_cifar10(
    source: str | os.PathLike, *, cache_dir: str | os.PathLike | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(x_train, y_train, x_test, y_test)``: uint8 ``[N, 3072]`` rows and int64 labels.

    ``source`` is a CIFAR archive file, a folder holding ``cifar-10-batches-py/``, or that
    folder itself. With ``cache_dir`` the decoded arrays are kept there as ``.npy`` files
    (returned memory-mapped, read-only) under the digest of the source's content (see the module
    docstring). For the official archive the exact counts are checked.
    """
    return load_source(source, cache_dir=cache_dir).arrays


@dataclass(frozen=True)
class Loaded:
    """A source's decoded arrays (``load_cifar10``'s), its md5 (the archive's, as recorded by
    fetch for a folder, or computed over the batch files) and its class names (batches.meta's
    ``label_names``)."""

    arrays: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
    source_md5: str
    label_names: tuple[str, ...]


def load_source(source: str | os.PathLike, *, cache_dir: str | os.PathLike | None = None) -> Loaded:
    """``load_cifar10``'s arrays with the source's md5 and class names."""
    source = Path(source)
    if not source.exists():
        raise DataError(f"{source}: no such file or folder")
    cache = Path(cache_dir) if cache_dir is not None else None
    fingerprint = _fingerprint(source)
    known = _known_source(cache, fingerprint) if cache is not None else None
    loaded = _cached_content(cache, *known) if known is not None else None
    if loaded is not None:
        return loaded
    members, source_md5, content = _read_members(source)
    # An entry the record pointed to has been checked (and warned about) once already.
    unchecked = cache is not None and (known is None or known[0] != content)
    loaded = _cached_content(cache, content, source_md5) if unchecked else None
    if loaded is None:
        arrays = _decode(source, members)
        names = label_names(members["batches.meta"], f"{source}:batches.meta")
        loaded = Loaded(arrays, source_md5, names)
        if cache is not None:
            _write_content(cache / content, loaded)
    if cache is not None:
        _write_source(cache, fingerprint, source_md5, content)
    return loaded


def check_batches(folder: Path, *, name: str) -> None:
    """DataError unless every batch file in ``folder`` decodes as CIFAR data (restricted
    unpickling: a pickle that would run code is refused, and runs nothing)."""
    members = {m: (folder / m).read_bytes() for m in DATA_MEMBERS}
    _decode(Path(name), members)
    label_names(members["batches.meta"], f"{name}:batches.meta")


def label_names(meta: bytes, name: str) -> tuple[str, ...]:
    """batches.meta's ``label_names`` (CIFAR-10's when it has none): what ``predict`` prints."""
    names = load_batch(meta, name=name).get("label_names")
    if names is None:
        return LABEL_NAMES
    names = [n.decode("utf-8", "replace") if isinstance(n, bytes) else n for n in names]
    if len(names) != NUM_CLASSES or not all(isinstance(n, str) and n for n in names):
        raise DataError(f"{name}: label_names must be {NUM_CLASSES} non-empty names, got {names!r}")
    return tuple(names)


def _decode(
    source: Path, members: dict[str, bytes]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    xs, ys = [], []
    for name in TRAIN_BATCH_MEMBERS:
        x, y = _batch_arrays(load_batch(members[name], name=f"{source}:{name}"), f"{source}:{name}")
        xs.append(x)
        ys.append(y)
    x_test, y_test = _batch_arrays(
        load_batch(members["test_batch"], name=f"{source}:test_batch"), f"{source}:test_batch"
    )
    arrays = (np.concatenate(xs), np.concatenate(ys), x_test, y_test)
    if _is_official(members):
        _check_official_counts(source, arrays)
    return arrays


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


def default_cache_dir() -> Path:
    """Where decoded arrays are kept unless a run names ``cache_dir``: $RESNET_REPRO_CACHE, else
    the platform's user cache folder (e.g. ~/.cache/resnet_repro on Linux)."""
    override = os.environ.get("RESNET_REPRO_CACHE")
    if override:
        return Path(override)
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("resnet_repro"))


def _fingerprint(source: Path) -> list:
    """What identifies the source's files without reading them: name, size, inode, and
    modification and change times of the archive or of the batch files and fetch's record."""
    if source.is_file():
        files = [source]
    else:
        folder = source / BATCH_DIR if (source / BATCH_DIR).is_dir() else source
        files = [folder / m for m in DATA_MEMBERS] + [folder.parent / SOURCE_FILE]
        files = [p for p in files if p.is_file()]
    stats = [(p.name, p.stat()) for p in files]
    return [[n, st.st_size, st.st_ino, st.st_mtime_ns, st.st_ctime_ns] for n, st in stats]


def _source_record(cache: Path, fingerprint: list) -> Path:
    key = hashlib.sha256(json.dumps(fingerprint).encode()).hexdigest()
    return cache / "sources" / f"{key}.json"


def _known_source(cache: Path, fingerprint: list) -> tuple[str, str] | None:
    """The content digest and md5 of a source whose files have not changed since it was
    cached, from its record."""
    try:
        record = json.loads(_source_record(cache, fingerprint).read_text())
    except (OSError, ValueError):
        return None
    known = (record.get("content"), record.get("source_md5"))
    if record.get("fingerprint") != fingerprint or not all(isinstance(v, str) for v in known):
        return None
    return known


CACHE_FILES = (*(f"{n}.npy" for n in ARRAY_NAMES), "label_names.json")


def _cached_content(cache: Path, content: str, source_md5: str) -> Loaded | None:
    """The arrays cached under ``content``, each file's sha256 checked against the one its
    ``complete`` marker recorded when it was written; None (with a line saying why, for a
    damaged entry) when they must be decoded again."""
    folder = cache / content
    if not content or not (folder / "complete").is_file():
        return None
    try:
        recorded = json.loads((folder / "complete").read_text())
        damaged = [
            f
            for f in CACHE_FILES
            if not (folder / f).is_file() or sha256_of(folder / f) != recorded.get(f)
        ]
        if damaged:
            log.warning(
                "decoded-array cache %s: %s changed since it was written; decoding the data again",
                folder,
                ", ".join(damaged),
            )
            return None
        arrays = tuple(np.load(folder / f"{n}.npy", mmap_mode="r") for n in ARRAY_NAMES)
        names = tuple(json.loads((folder / "label_names.json").read_text()))
    except (OSError, ValueError, AttributeError) as e:
        log.warning("decoded-array cache %s unreadable (%s); decoding the data again", folder, e)
        return None
    return Loaded(arrays, source_md5, names)


def _write_content(folder: Path, loaded: Loaded) -> None:
    """The array files and the class names, each written atomically, then the ``complete``
    marker with each file's sha256: processes filling the same cache at once write identical
    files, and a reader uses the folder only once all of them are there and match their
    digests. A cache that cannot be written is skipped, with a line saying so."""
    files = {}
    for name, array in zip(ARRAY_NAMES, loaded.arrays, strict=True):
        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(array))
        files[f"{name}.npy"] = buf.getvalue()
    files["label_names.json"] = json.dumps(loaded.label_names).encode()
    digests = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            write_bytes_atomic(folder / name, data)
        write_bytes_atomic(folder / "complete", json.dumps(digests).encode())
    except OSError as e:
        log.warning(
            "decoded-array cache %s not written (%s); training goes on without it (choose "
            "another folder with --cache-dir or RESNET_REPRO_CACHE)",
            folder,
            e.strerror or e,
        )


def _write_source(cache: Path, fingerprint: list, source_md5: str, content: str) -> None:
    record = {"fingerprint": fingerprint, "source_md5": source_md5, "content": content}
    path = _source_record(cache, fingerprint)
    try:
        path.parent.mkdir(exist_ok=True)  # inside the cache folder _write_content made
        write_bytes_atomic(path, json.dumps(record).encode())
    except OSError:
        pass  # _write_content has warned already, or the arrays are cached: a re-read next time


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
    """uint8 images ``[N, 3072]`` and int64 labels of each split, the source's md5 and its
    class names."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_valid: np.ndarray
    y_valid: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source_md5: str
    label_names: tuple[str, ...] = LABEL_NAMES


def load_splits(config: TrainConfig) -> Splits:
    """The data ``config.data`` names, split into train/validation as the config says (the
    seed: the first 45k training images train), with the test set. Decoded arrays are cached
    in ``config.cache_dir``, or ``default_cache_dir()``."""
    source = Path(config.data)
    cache = Path(config.cache_dir) if config.cache_dir else default_cache_dir()
    loaded = load_source(source, cache_dir=cache)
    x, y, x_test, y_test = loaded.arrays
    if config.valid_fraction > 0:
        split = train_valid_split(x, y, valid_fraction=config.valid_fraction)
    else:
        if config.split_index > len(x):
            raise ConfigError(
                f"split_index {config.split_index} is beyond the {len(x)} training images of "
                f"{source}; set valid_fraction (e.g. 0.1) for a small data set"
            )
        split = train_valid_split(x, y, config.split_index)
    return Splits(
        *split, np.asarray(x_test), np.asarray(y_test), loaded.source_md5, loaded.label_names
    )
