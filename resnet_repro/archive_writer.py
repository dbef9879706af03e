"""Writing archives in CIFAR-10's official format, byte-faithful: a gzip'd tar of Python-2
protocol-2 pickles, written opcode by opcode as Python 2's ``cPickle`` laid them out.

``pack`` writes real images with it; ``write_fake_cifar10`` writes fake archives for tests,
whose synthetic images (``fake_images``) are stripes whose period and direction encode the
class, so small networks learn them well above chance. Nothing here is read by training or
loading except through the archive bytes it writes.
"""

from __future__ import annotations

import gzip
import io
import os
import tarfile
from pathlib import Path
from typing import Any

import numpy as np

from resnet_repro.atomic import write_bytes_atomic
from resnet_repro.cifar import BATCH_DIR, LABEL_NAMES, NUM_CLASSES, RECORD_SIZE, DataError

_README = (
    b'<meta HTTP-EQUIV="REFRESH" content="0; url=http://www.cs.toronto.edu/~kriz/cifar.html">\n'
)
_MTIME = 1_244_000_000  # the official members' timestamp (2009-06-03)

# The protocol-2 opcodes the official batches use (names as in the standard library's
# ``pickletools``), so that each write below says what it puts on the unpickler's stack.
PROTO = b"\x80"  # protocol marker; the next byte is the protocol number
STOP = b"."  # end of the pickle: the top of the stack is the result
MARK = b"("  # push a mark: TUPLE/DICT/LIST collect everything above it
GLOBAL = b"c"  # push module.name, given as "module\nname\n"
REDUCE = b"R"  # pop args tuple and callable, push callable(*args)
BUILD = b"b"  # pop state, call obj.__setstate__(state) on the object below it
TUPLE = b"t"  # pop everything above the mark into a tuple
TUPLE1 = b"\x85"  # pop 1 item into a tuple
TUPLE3 = b"\x87"  # pop 3 items into a tuple
EMPTY_LIST = b"]"
APPENDS = b"e"  # pop items above the mark, append them to the list below
EMPTY_DICT = b"}"
SETITEMS = b"u"  # pop key/value pairs above the mark into the dict below
NONE = b"N"
NEWTRUE = b"\x88"
NEWFALSE = b"\x89"
BININT1 = b"K"  # 1-byte unsigned int follows
BININT2 = b"M"  # 2-byte little-endian unsigned int follows
BININT = b"J"  # 4-byte little-endian signed int follows
SHORT_BINSTRING = b"U"  # Python-2 str of < 256 bytes: 1-byte length, then the bytes
BINSTRING = b"T"  # Python-2 str: 4-byte length, then the bytes


def dump_py2_pickle(obj: Any) -> bytes:
    """Protocol-2 pickle of ``obj`` as Python 2's writer laid out the CIFAR batches: ``str``
    and ``bytes`` as Python-2 strings, numpy arrays through ``numpy.core.multiarray._reconstruct``
    with a Python-2 string payload, no memo."""
    out = io.BytesIO()
    out.write(PROTO + b"\x02")
    _write_py2(out, obj)
    out.write(STOP)
    return out.getvalue()


def _write_py2(out: io.BytesIO, obj: Any) -> None:
    if obj is True:
        out.write(NEWTRUE)
    elif obj is False:
        out.write(NEWFALSE)
    elif obj is None:
        out.write(NONE)
    elif isinstance(obj, (int, np.integer)):
        obj = int(obj)
        if 0 <= obj < 256:
            out.write(BININT1 + obj.to_bytes(1, "little"))
        elif 0 <= obj < 65536:
            out.write(BININT2 + obj.to_bytes(2, "little"))
        else:
            out.write(BININT + obj.to_bytes(4, "little", signed=True))
    elif isinstance(obj, (str, bytes)):
        data = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(data) < 256:
            out.write(SHORT_BINSTRING + len(data).to_bytes(1, "little") + data)
        else:
            out.write(BINSTRING + len(data).to_bytes(4, "little") + data)
    elif isinstance(obj, list):
        out.write(EMPTY_LIST + MARK)
        for item in obj:
            _write_py2(out, item)
        out.write(APPENDS)
    elif isinstance(obj, tuple):
        out.write(MARK)
        for item in obj:
            _write_py2(out, item)
        out.write(TUPLE)
    elif isinstance(obj, dict):
        out.write(EMPTY_DICT + MARK)
        for key, value in obj.items():
            _write_py2(out, key)
            _write_py2(out, value)
        out.write(SETITEMS)
    elif isinstance(obj, np.ndarray):
        _write_py2_array(out, obj)
    else:
        raise TypeError(f"dump_py2_pickle: cannot write {type(obj).__name__}")


def _write_py2_array(out: io.BytesIO, array: np.ndarray) -> None:
    """numpy's own pickling of an array under Python 2: build an empty array, then restore
    its shape, dtype and bytes with ``__setstate__``."""
    array = np.ascontiguousarray(array)
    dtype = array.dtype
    order = "<" if dtype.byteorder == "=" else dtype.byteorder
    # _reconstruct(ndarray, (0,), b"b"): an empty array to fill.
    out.write(GLOBAL + b"numpy.core.multiarray\n_reconstruct\n")
    out.write(GLOBAL + b"numpy\nndarray\n")  # the subtype
    out.write(BININT1 + b"\x00" + TUPLE1)  # the shape (0,)
    out.write(SHORT_BINSTRING + b"\x01b")  # the dtype code "b", replaced below
    out.write(TUPLE3 + REDUCE)
    # The array's state: (version 1, shape, dtype, fortran_order, raw bytes).
    out.write(MARK + BININT1 + b"\x01")  # state version 1
    _write_py2(out, tuple(array.shape))
    # dtype(kind+itemsize, align=False, copy=True), then its own state.
    out.write(GLOBAL + b"numpy\ndtype\n")
    _write_py2(out, f"{dtype.kind}{dtype.itemsize}")
    out.write(NEWFALSE + NEWTRUE + TUPLE3 + REDUCE)
    # dtype state: (version 3, byte order, subarray, names, fields, elsize, alignment, flags).
    out.write(MARK + BININT1 + b"\x03")
    _write_py2(out, order)
    out.write(NONE + NONE + NONE)  # no subarray, field names or fields
    out.write(BININT + b"\xff\xff\xff\xff")  # elsize -1: from the kind
    out.write(BININT + b"\xff\xff\xff\xff")  # alignment -1: from the kind
    out.write(BININT1 + b"\x00")  # flags: none
    out.write(TUPLE + BUILD)
    out.write(NEWFALSE)  # fortran_order: C order
    _write_py2(out, array.tobytes())  # the raw bytes, a Python-2 str
    out.write(TUPLE + BUILD)


def write_tar_gz(path: str | os.PathLike, members: dict[str, bytes]) -> Path:
    """A gzip'd tar of regular files with fixed metadata, so equal input gives equal bytes;
    written under a temporary name and moved into place."""
    path = Path(path)
    if path.is_dir():
        raise DataError(
            f"{path} is a folder; name the archive file to write, e.g. {path / 'archive.tar.gz'}"
        )
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0) as gz:
        with tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tar:
            for name, data in members.items():
                info = tarfile.TarInfo(name)
                info.size, info.mode, info.mtime = len(data), 0o644, _MTIME
                tar.addfile(info, io.BytesIO(data))
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, buf.getvalue())
    return path


def fake_images(labels: np.ndarray, rng: np.random.Generator, noise: float = 30.0) -> np.ndarray:
    """uint8 CIFAR rows whose class is the period (5 choices) and direction (across or down)
    of stripes, under random colours, phases and noise: features that survive the per-image
    standardization, crops and flips, so a small network learns them well above chance.
    ``noise`` is the standard deviation of the pixel noise: the higher, the harder to learn."""
    n = len(labels)
    period = np.array([4.0, 6.0, 8.0, 11.0, 16.0])[labels % 5][:, None, None]
    yy, xx = np.mgrid[0:32, 0:32].astype(np.float64)
    coord = np.where((labels // 5 == 0)[:, None, None], xx[None], yy[None])
    phase = rng.uniform(0, 2 * np.pi, size=(n, 1, 1))
    stripes = np.sin(2 * np.pi * coord / period + phase)  # [n, 32, 32]
    background = rng.uniform(60, 196, size=(n, 3, 1, 1))
    gain = rng.uniform(20, 60, size=(n, 3, 1, 1))
    images = background + gain * stripes[:, None] + rng.normal(0, noise, (n, 3, 32, 32))
    return np.clip(images, 0, 255).astype(np.uint8).reshape(n, RECORD_SIZE)


def fake_batches(
    *, train_per_batch: int, test_size: int, seed: int, noise: float = 30.0
) -> dict[str, bytes]:
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
            "data": fake_images(labels, rng, noise),
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
    path: str | os.PathLike,
    *,
    train_per_batch: int = 100,
    test_size: int = 100,
    seed: int = 0,
    noise: float = 30.0,
) -> Path:
    """Write a fake CIFAR-10 archive in the official format; the same arguments give the same
    bytes."""
    if train_per_batch < 0 or test_size < 0:
        raise ValueError("write_fake_cifar10: sizes must be >= 0")
    members = fake_batches(
        train_per_batch=train_per_batch, test_size=test_size, seed=seed, noise=noise
    )
    return write_tar_gz(path, members)
