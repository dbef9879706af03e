"""CIFAR-10 on disk: fetch with integrity checks, safe extraction and loading, the seed's split,
a decoded-array cache, and a byte-faithful fake archive for tests.

Guarantees:

* Nothing corrupt ever sits under a final name: downloads and copies go to a ``.part`` file
  beside the destination, are md5-checked, then moved with ``os.replace``; extraction goes to a
  temporary folder that replaces the final one only when every member checked out.
* Extraction accepts only the expected member names, as regular files; links, devices,
  absolute paths and ``..`` are refused.
* Batches are Python-2 pickles. They are read by ``RestrictedUnpickler``, which resolves only
  the globals a numpy array needs, so a malicious batch raises ``DataError`` and runs nothing.
* Every problem with the data raises ``DataError`` naming the file and what was wrong.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import hashlib
import http.client
import io
import json
import logging
import os
import pickle
import shutil
import tarfile
import tempfile
import time
import urllib.parse
import urllib.request
import warnings
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar
from urllib.error import HTTPError, URLError

import numpy as np
from tqdm import tqdm

from resnet_repro.atomic import write_atomic

log = logging.getLogger(__name__)

OFFICIAL_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
OFFICIAL_MD5 = "c58f30108f718f92721af3b95e74349a"
OFFICIAL_SIZE = 170_498_071
BATCH_DIR = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
DATA_MEMBERS = (*TRAIN_BATCHES, "test_batch", "batches.meta")
OPTIONAL_MEMBERS = ("readme.html",)
OFFICIAL_MEMBER_MD5 = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
    "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
}
OFFICIAL_COUNTS = {"train": 50_000, "test": 10_000}
LABEL_NAMES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
NUM_CLASSES = len(LABEL_NAMES)
RECORD_SIZE = 3 * 32 * 32
SOURCE_FILE = f"{BATCH_DIR}.source.json"
CHUNK = 1 << 20


class DataError(Exception):
    """The data on disk or on the wire is not what it must be; the message says which file."""


def md5_of(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------
# Fetch


def fetch_cifar10(
    dest: str | os.PathLike,
    *,
    url: str = OFFICIAL_URL,
    md5: str = OFFICIAL_MD5,
    archive: str | os.PathLike | None = None,
    progress: bool = True,
    retries: int = 4,
    backoff: float = 1.0,
    timeout: float = 60.0,
) -> Path:
    """Put a verified, extracted CIFAR-10 under ``dest`` and return ``dest/cifar-10-batches-py``.

    The archive comes from ``url`` (http(s), resumed with Range requests and retried with
    exponential backoff, or ``file://``) or from a local ``archive`` copy. It must match ``md5``;
    an md5 other than the official one is allowed only when named explicitly and draws a
    warning. A second call with everything in place does no work.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    md5 = md5.lower()
    if md5 != OFFICIAL_MD5:
        warnings.warn(
            f"fetch_cifar10: md5 {md5} is not the official archive's ({OFFICIAL_MD5}); "
            "results on this data are not comparable with the published tables",
            stacklevel=2,
        )
    batches = dest / BATCH_DIR
    source = _read_source(dest)
    if source.get("archive_md5") == md5 and all((batches / m).is_file() for m in DATA_MEMBERS):
        log.info("CIFAR-10 already in place at %s (archive md5 %s): nothing to do", batches, md5)
        return batches

    if archive is None and url.startswith("file://"):
        archive = urllib.request.url2pathname(urllib.parse.urlparse(url).path)
    name = Path(archive).name if archive is not None else Path(urllib.parse.urlparse(url).path).name
    final = dest / (name or "cifar-10-python.tar.gz")
    if not (final.is_file() and md5_of(final) == md5):
        part = final.with_name(final.name + ".part")
        if archive is not None:
            _copy(Path(archive), part)
        else:
            _download(
                url, part, progress=progress, retries=retries, backoff=backoff, timeout=timeout
            )
        got = md5_of(part)
        if got != md5:
            part.unlink()
            raise DataError(
                f"{archive or url}: md5 is {got}, expected {md5}. The file is corrupt or another "
                "archive; for a mirror with a different md5 pass md5=... (--md5) explicitly"
            )
        os.replace(part, final)
    _extract(final, dest, official=md5 == OFFICIAL_MD5, archive_md5=md5)
    log.info("CIFAR-10 verified (md5 %s) and extracted to %s", md5, batches)
    return batches


def _copy(src: Path, part: Path) -> None:
    if not src.is_file():
        raise DataError(f"{src}: archive not found")
    try:
        shutil.copyfile(src, part)
    except BaseException:
        part.unlink(missing_ok=True)
        raise


def _download(
    url: str, part: Path, *, progress: bool, retries: int, backoff: float, timeout: float
) -> None:
    """Download ``url`` into ``part``, resuming what a previous attempt left there."""
    error: Exception | None = None
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(backoff * 2 ** (attempt - 1))
        have = part.stat().st_size if part.exists() else 0
        headers = {"Range": f"bytes={have}-"} if have else {}
        try:
            with urllib.request.urlopen(
                urllib.request.Request(url, headers=headers), timeout=timeout
            ) as resp:
                if have and resp.status != 206:
                    have = 0  # the server ignored the Range header: start over
                length = resp.headers.get("Content-Length")
                total = have + int(length) if length is not None else None
                with (
                    open(part, "ab" if have else "wb") as f,
                    tqdm(
                        total=total,
                        initial=have,
                        unit="B",
                        unit_scale=True,
                        disable=not progress,
                        desc=part.name.removesuffix(".part"),
                    ) as bar,
                ):
                    while chunk := resp.read(CHUNK):
                        f.write(chunk)
                        bar.update(len(chunk))
            if total is not None and part.stat().st_size != total:
                raise http.client.IncompleteRead(b"", total - part.stat().st_size)
            return
        except HTTPError as e:
            if e.code == 416:  # the part file is not a prefix of the resource: start over
                part.unlink(missing_ok=True)
                error = e
                continue
            if 400 <= e.code < 500 and e.code not in (408, 429):
                raise DataError(f"{url}: download failed: HTTP {e.code} {e.reason}") from e
            error = e
        except OSError as e:
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                raise DataError(f"{part}: disk full while downloading {url}") from e
            error = e
        except (http.client.HTTPException, URLError) as e:
            error = e
        log.warning(
            "download of %s interrupted (%s); attempt %d of %d",
            url,
            error,
            attempt + 1,
            retries + 1,
        )
    raise DataError(f"{url}: download failed after {retries + 1} attempts: {error}")


def _check_member(member: tarfile.TarInfo, archive: Path) -> str | None:
    """The member's file name if it is an expected regular file; None for the folder itself;
    DataError for anything else."""
    name = member.name.removeprefix("./")
    if name.rstrip("/") == BATCH_DIR and member.isdir():
        return None
    base = name.removeprefix(f"{BATCH_DIR}/")
    if name.startswith("/") or ".." in Path(name).parts:
        raise DataError(f"{archive}: member {member.name!r} points outside the extraction folder")
    if not member.isreg():
        raise DataError(f"{archive}: member {member.name!r} is not a regular file (link or device)")
    if not name.startswith(f"{BATCH_DIR}/") or base not in DATA_MEMBERS + OPTIONAL_MEMBERS:
        raise DataError(f"{archive}: unexpected member {member.name!r}")
    return base


def _extract(archive: Path, dest: Path, *, official: bool, archive_md5: str) -> None:
    """Check every member, extract into a temporary folder, then move it into place."""
    tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=dest))
    try:
        member_md5: dict[str, str] = {}
        with _open_tar(archive) as tar:
            for member in _tar_members(tar, archive):
                base = _check_member(member, archive)
                if base is None:
                    continue
                if base in member_md5:
                    raise DataError(f"{archive}: member {member.name!r} appears twice")
                tarfile.data_filter(member, str(tmp))  # the standard library's own check too
                digest = hashlib.md5()
                with (
                    _reading(archive),
                    tar.extractfile(member) as src,
                    open(tmp / base, "wb") as out,
                ):
                    while chunk := src.read(CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
                member_md5[base] = digest.hexdigest()
        missing = [m for m in DATA_MEMBERS if m not in member_md5]
        if missing:
            raise DataError(f"{archive}: missing members {', '.join(missing)}")
        if official:
            for name, expected in OFFICIAL_MEMBER_MD5.items():
                if member_md5[name] != expected:
                    raise DataError(
                        f"{archive}: member {name} has md5 {member_md5[name]}, expected {expected}"
                    )
        final = dest / BATCH_DIR
        (dest / SOURCE_FILE).unlink(missing_ok=True)
        if final.exists():
            stale = Path(tempfile.mkdtemp(prefix=".stale-", dir=dest))
            os.replace(final, stale / BATCH_DIR)
            shutil.rmtree(stale)
        os.chmod(tmp, 0o755)  # mkdtemp creates 0700
        os.replace(tmp, final)
        source = {
            "archive": archive.name,
            "archive_md5": archive_md5,
            "official": official,
            "member_md5": member_md5,
        }
        _write_atomic(dest / SOURCE_FILE, json.dumps(source, indent=2).encode())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def _reading(archive: Path) -> Iterator[None]:
    """Turn the many ways a damaged gzip/tar fails into one DataError."""
    try:
        yield
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise DataError(f"{archive}: archive is truncated or corrupt ({e})") from e


def _open_tar(archive: Path) -> tarfile.TarFile:
    with _reading(archive):
        return tarfile.open(archive, "r:*")


def _tar_members(tar: tarfile.TarFile, archive: Path) -> Iterator[tarfile.TarInfo]:
    with _reading(archive):
        yield from tar


def _read_source(dest: Path) -> dict:
    try:
        return json.loads((dest / SOURCE_FILE).read_text())
    except (OSError, ValueError):
        return {}


def _write_atomic(path: Path, data: bytes) -> None:
    write_atomic(path, lambda f: f.write(data))


# --------------------------------------------------------------------------------------------
# Load


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
        with _open_tar(source) as tar:
            for member in _tar_members(tar, source):
                base = _check_member(member, source)
                if base in DATA_MEMBERS:
                    with _reading(source), tar.extractfile(member) as f:
                        members[base] = f.read()
        source_md5 = md5_of(source)
    else:
        folder = source / BATCH_DIR if (source / BATCH_DIR).is_dir() else source
        members = {m: (folder / m).read_bytes() for m in DATA_MEMBERS if (folder / m).is_file()}
        recorded = _read_source(folder.parent).get("archive_md5")
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
        _write_atomic(cache / f"{name}-{source_md5}.npy", buf.getvalue())
    meta = {"source_md5": source_md5, "fingerprint": fp}
    _write_atomic(cache / "meta.json", json.dumps(meta, indent=2).encode())
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
    """The seed's split: the first ``split_index`` examples train, the rest validate.

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
    if split_index is None or not 0 < split_index < n:
        raise ValueError(
            f"train_valid_split: split_index {split_index} leaves no training or no validation "
            f"data among {n} examples; use valid_fraction for a small data set"
        )
    return x[:split_index], y[:split_index], x[split_index:], y[split_index:]


# --------------------------------------------------------------------------------------------
# Fake archive: Python-2 pickles written opcode by opcode, as the official files are.

_README = (
    b'<meta HTTP-EQUIV="REFRESH" content="0; url=http://www.cs.toronto.edu/~kriz/cifar.html">\n'
)
_MTIME = 1_244_000_000  # the official members' timestamp (2009-06-03)


def dump_py2_pickle(obj: Any) -> bytes:
    """Protocol-2 pickle of ``obj`` as Python 2's writer laid out the CIFAR batches: ``str``
    and ``bytes`` as Python-2 strings, numpy arrays through ``numpy.core.multiarray._reconstruct``
    with a Python-2 string payload, no memo."""
    out = io.BytesIO()
    out.write(b"\x80\x02")
    _write_py2(out, obj)
    out.write(b".")
    return out.getvalue()


def _write_py2(out: io.BytesIO, obj: Any) -> None:
    if isinstance(obj, bool) or obj is None:
        out.write({True: b"\x88", False: b"\x89", None: b"N"}[obj])
    elif isinstance(obj, (int, np.integer)):
        obj = int(obj)
        if 0 <= obj < 256:
            out.write(b"K" + obj.to_bytes(1, "little"))
        elif 0 <= obj < 65536:
            out.write(b"M" + obj.to_bytes(2, "little"))
        else:
            out.write(b"J" + obj.to_bytes(4, "little", signed=True))
    elif isinstance(obj, (str, bytes)):
        data = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(data) < 256:
            out.write(b"U" + len(data).to_bytes(1, "little") + data)
        else:
            out.write(b"T" + len(data).to_bytes(4, "little") + data)
    elif isinstance(obj, (list, tuple)):
        out.write(b"](" if isinstance(obj, list) else b"(")
        for item in obj:
            _write_py2(out, item)
        out.write(b"e" if isinstance(obj, list) else b"t")
    elif isinstance(obj, dict):
        out.write(b"}(")
        for key, value in obj.items():
            _write_py2(out, key)
            _write_py2(out, value)
        out.write(b"u")
    elif isinstance(obj, np.ndarray):
        _write_py2_array(out, obj)
    else:
        raise TypeError(f"dump_py2_pickle: cannot write {type(obj).__name__}")


def _write_py2_array(out: io.BytesIO, array: np.ndarray) -> None:
    array = np.ascontiguousarray(array)
    dtype = array.dtype
    order = "<" if dtype.byteorder == "=" else dtype.byteorder
    out.write(b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85U\x01b\x87R(K\x01")
    _write_py2(out, tuple(array.shape))
    out.write(b"cnumpy\ndtype\n")
    _write_py2(out, f"{dtype.kind}{dtype.itemsize}")
    out.write(b"\x89\x88\x87R(K\x03")
    _write_py2(out, order)
    out.write(b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89")
    _write_py2(out, array.tobytes())
    out.write(b"tb")


def write_tar_gz(path: str | os.PathLike, members: dict[str, bytes]) -> Path:
    """A gzip'd tar of regular files with fixed metadata, so equal input gives equal bytes;
    written under a temporary name and moved into place."""
    path = Path(path)
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0) as gz:
        with tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tar:
            for name, data in members.items():
                info = tarfile.TarInfo(name)
                info.size, info.mode, info.mtime = len(data), 0o644, _MTIME
                tar.addfile(info, io.BytesIO(data))
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_atomic(path, buf.getvalue())
    return path


def fake_images(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """uint8 CIFAR rows whose class is the period (5 choices) and direction (across or down)
    of stripes, under random colours, phases and noise: features that survive the per-image
    standardization, crops and flips, so a small network learns them well above chance."""
    n = len(labels)
    period = np.array([4.0, 6.0, 8.0, 11.0, 16.0])[labels % 5][:, None, None]
    yy, xx = np.mgrid[0:32, 0:32].astype(np.float64)
    coord = np.where((labels // 5 == 0)[:, None, None], xx[None], yy[None])
    phase = rng.uniform(0, 2 * np.pi, size=(n, 1, 1))
    stripes = np.sin(2 * np.pi * coord / period + phase)  # [n, 32, 32]
    background = rng.uniform(60, 196, size=(n, 3, 1, 1))
    gain = rng.uniform(20, 60, size=(n, 3, 1, 1))
    images = background + gain * stripes[:, None] + rng.normal(0, 30, (n, 3, 32, 32))
    return np.clip(images, 0, 255).astype(np.uint8).reshape(n, RECORD_SIZE)


def fake_batches(*, train_per_batch: int, test_size: int, seed: int) -> dict[str, bytes]:
    """The members of a fake ``cifar-10-python.tar.gz``: five training batches of
    ``train_per_batch`` images and a test batch of ``test_size``, labels balanced."""
    rng = np.random.default_rng(seed)
    members: dict[str, bytes] = {}
    names = [(f"data_batch_{i}", train_per_batch, f"training batch {i} of 5") for i in range(1, 6)]
    names.append(("test_batch", test_size, "testing batch 1 of 1"))
    for name, size, label in names:
        labels = rng.permutation(np.arange(size) % NUM_CLASSES)
        batch = {
            "batch_label": label,
            "labels": [int(c) for c in labels],
            "data": fake_images(labels, rng),
            "filenames": [f"{LABEL_NAMES[c]}_s_{i:06d}.png" for i, c in enumerate(labels)],
        }
        members[f"{BATCH_DIR}/{name}"] = dump_py2_pickle(batch)
    meta = {
        "num_cases_per_batch": train_per_batch,
        "label_names": list(LABEL_NAMES),
        "num_vis": RECORD_SIZE,
    }
    members[f"{BATCH_DIR}/batches.meta"] = dump_py2_pickle(meta)
    members[f"{BATCH_DIR}/readme.html"] = _README
    return members


def write_fake_cifar10(
    path: str | os.PathLike, *, train_per_batch: int = 100, test_size: int = 100, seed: int = 0
) -> Path:
    """Write a fake CIFAR-10 archive in the official format; the same arguments give the same
    bytes."""
    if train_per_batch < 0 or test_size < 0:
        raise ValueError("write_fake_cifar10: sizes must be >= 0")
    members = fake_batches(train_per_batch=train_per_batch, test_size=test_size, seed=seed)
    return write_tar_gz(path, members)
